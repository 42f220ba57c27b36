"""When a writer-only job (delay delivery, transaction checks) may start its next round.

Only while this node takes writes; only once it has dispatched everything written before
it became the writer (so it acts on what its predecessor already did, never twice); one
round at a time (a round ends when its entry is answered); at most every `interval_ms`.
Pure: the actors pass the clock, their role and their watermarks.
"""

from __future__ import annotations


class WriterRounds:
    def __init__(self, interval_ms: int) -> None:
        self._interval_ms = interval_ms
        self._barrier: int | None = None  # written offset when this node became the writer
        self._busy = False
        self._last_ms: int | None = None

    def start(self, now_ms: int, *, writable: bool, written: int, dispatched: int) -> bool:
        """Whether a round starts now (then it is busy until `done`)."""
        if not writable:
            self._barrier = None
            return False
        if self._barrier is None:
            self._barrier = written
        if dispatched < self._barrier or self._busy:
            return False
        if self._last_ms is not None and now_ms - self._last_ms < self._interval_ms:
            return False
        self._last_ms = now_ms
        self._busy = True
        return True

    def done(self) -> None:
        self._busy = False
