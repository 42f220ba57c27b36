"""Local retries: what an orderly consumer (and a broadcasting one) does when the callback
fails, instead of sending the message back through the broker's retry topic.

RocketMQ's orderly consumer suspends the queue for `suspendCurrentQueueTimeMillis` (1 s)
and consumes the same message again, so nothing behind it overtakes it; after
`max_reconsume_times` retries it gives up on the message (our orderly consumer then
moves it to the group's DLQ; a broadcasting consumer logs and skips it, as RocketMQ's
broadcasting mode has no retry) and goes on with the next one.

No clock reads and no I/O of its own: the caller passes the attempt, the pause and the
check that it may still go on (the queue's lease).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

SUSPEND_S = 1.0  # RocketMQ's suspendCurrentQueueTimeMillis.


@dataclass(frozen=True, slots=True)
class Consumed:
    """The callback succeeded (after `failures` failed attempts)."""

    failures: int = 0


@dataclass(frozen=True, slots=True)
class GaveUp:
    """Every allowed attempt failed: `failures` = 1 + max_reconsume_times."""

    failures: int


@dataclass(frozen=True, slots=True)
class Interrupted:
    """Stopped between attempts (the lease ran out or the queue is being stopped); the
    message is not consumed and must stay where it is."""


Outcome = Consumed | GaveUp | Interrupted


def gives_up(failures: int, max_reconsume_times: int) -> bool:
    """Whether `failures` failed attempts used up the first try and every retry."""
    assert failures >= 0, failures
    assert max_reconsume_times >= 0, max_reconsume_times
    return failures > max_reconsume_times


async def retry_locally(
    attempt: Callable[[int], Awaitable[bool]],
    *,
    max_reconsume_times: int,
    may_go_on: Callable[[], bool],
    suspend_s: float = SUSPEND_S,
) -> Outcome:
    """Call `attempt(failures so far)` until it returns True or retries are used up,
    pausing `suspend_s` between attempts and checking `may_go_on` after each pause."""
    failures = 0
    while True:
        if await attempt(failures):
            return Consumed(failures)
        failures += 1
        if gives_up(failures, max_reconsume_times):
            return GaveUp(failures)
        await asyncio.sleep(suspend_s)
        if not may_go_on():
            return Interrupted()
