"""The one clock of a process, injected at composition (node/), never read directly.

Two readings: wall time for what is stored or compared with other machines' times
(record store timestamps, delay due times, transaction check times), and monotonic time
for deadlines and ticks within this process. A test passes a clock it moves by hand.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def wall_ms(self) -> int:
        """Milliseconds since the epoch (may jump: never use it for a deadline)."""

    def monotonic_ms(self) -> int:
        """Milliseconds on a clock that never goes back (deadlines, ticks)."""


class SystemClock:
    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000


SYSTEM_CLOCK: Clock = SystemClock()
