"""The only source of time for actors: a thread that tells `Tick(now_ms)` periodically.

pykka has no timers; actors count ticks instead of reading clocks, and tests drive a
manual ticker. `now_ms` is monotonic milliseconds.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pykka

from dledgermq.actors.supervisor import tell
from dledgermq.clock import SYSTEM_CLOCK, Clock


@dataclass(frozen=True, slots=True)
class Tick:
    now_ms: int


class Ticker:
    def __init__(
        self,
        targets: Sequence[pykka.ActorRef[Any]],
        interval_ms: int,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        assert interval_ms > 0
        self._targets = targets
        self._clock = clock
        self._interval_s = interval_ms / 1000
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ticker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # Never started when tests tick by hand.
            self._thread.join(timeout=5)

    def tick_once(self, now_ms: int | None = None) -> None:
        """Tell every target one tick (tests call this by hand with their own clock)."""
        tick = Tick(self._clock.monotonic_ms() if now_ms is None else now_ms)
        for target in self._targets:
            tell(target, tick)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.tick_once()
