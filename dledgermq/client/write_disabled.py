"""Broker groups that just refused a send because they are write-disabled (maintenance).

The NameServer route says so too (the group's perm masks its queues), but a cached route
can be up to `route_refresh_s` old; between a group's switch and the producer's next
refresh, its answer NO_PERMISSION (`broker_writable: false`) is the first news. The
producer then keeps the group out of its queue choice for `hold_s` and sends elsewhere,
instead of paying a refused attempt for every message (RocketMQ's producer isolates a
failing broker the same way, for a while).

Must not: do I/O; the clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dledgermq.errors import NoPermission

WRITE_DISABLED_HOLD_S = 10.0


def is_write_disabled(exc: BaseException) -> bool:
    """A broker group's refusal as a whole (not a read-only topic)."""
    return isinstance(exc, NoPermission) and exc.details.get("broker_writable") is False


class WriteDisabledGroups:
    """Broker names and until when a send should avoid them."""

    def __init__(
        self, hold_s: float = WRITE_DISABLED_HOLD_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        assert hold_s > 0, hold_s
        self._hold_s = hold_s
        self._clock = clock
        self._until: dict[str, float] = {}

    def mark(self, broker_name: str) -> None:
        self._until[broker_name] = self._clock() + self._hold_s

    def current(self) -> frozenset[str]:
        """The groups still held out (expired marks are dropped)."""
        now = self._clock()
        self._until = {name: until for name, until in self._until.items() if until > now}
        return frozenset(self._until)
