"""Pulls held open until their queue grows or their deadline passes (RocketMQ long polling).

Pure bookkeeping; the ReputActor answers the waiters it gets back. Bounded: beyond
`waiters_max` a pull is answered at once instead of held.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

W = TypeVar("W")


class LongPolls(Generic[W]):
    def __init__(self, waiters_max: int) -> None:
        assert waiters_max > 0
        self._waiters_max = waiters_max
        self._by_key: dict[Hashable, list[tuple[int, W]]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def hold(self, key: Hashable, waiter: W, deadline_ms: int) -> bool:
        """Keep `waiter` until `key` changes or `deadline_ms`; False when full."""
        if self._count >= self._waiters_max:
            return False
        self._by_key.setdefault(key, []).append((deadline_ms, waiter))
        self._count += 1
        return True

    def take(self, keys: Iterable[Hashable]) -> list[W]:
        """Remove and return every waiter of the changed keys."""
        woken: list[W] = []
        for key in keys:
            held = self._by_key.pop(key, None)
            if held:
                woken.extend(w for _, w in held)
        self._count -= len(woken)
        return woken

    def expire(self, now_ms: int) -> list[W]:
        """Remove and return every waiter whose deadline has passed."""
        expired: list[W] = []
        for key in list(self._by_key):
            held = self._by_key[key]
            keep = [(d, w) for d, w in held if d > now_ms]
            expired.extend(w for d, w in held if d <= now_ms)
            if keep:
                self._by_key[key] = keep
            else:
                del self._by_key[key]
        self._count -= len(expired)
        return expired
