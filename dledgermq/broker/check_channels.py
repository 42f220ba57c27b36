"""How the broker reaches producers for transaction check-backs: their long polls.

A producer cannot be called by the broker (it has no address we could rely on), so each
live producer of a group keeps a long poll open (`GET /producers/{group}/checks`). A check
is offered to one live producer of the group (round robin), queued for it, and handed to
its held poll, or to its next one. A producer is live while it polls, and for `ttl_ms`
after its last poll ended; a producer that went away takes its queued checks with it
(they are asked again at the next interval, each ask counted in the log).

Pure and generic: `W` is whatever answers a held poll (the actor's reply), `P` a check.
Everything is bounded: producers, checks queued per producer, checks per answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from dledgermq.errors import Busy

W = TypeVar("W")
P = TypeVar("P")


@dataclass(slots=True)
class _Producer(Generic[W, P]):
    last_seen_ms: int
    queued: dict[int, P] = field(default_factory=dict)  # by half offset: asked once
    waiter: W | None = None
    deadline_ms: int = 0


@dataclass(frozen=True, slots=True)
class ChannelOptions:
    ttl_ms: int = 30_000
    queue_max: int = 1_024  # checks waiting for one producer
    answer_max: int = 64  # checks in one poll answer
    producers_max: int = 10_000  # across groups


class CheckChannels(Generic[W, P]):
    def __init__(self, options: ChannelOptions) -> None:
        self._options = options
        self._groups: dict[str, dict[str, _Producer[W, P]]] = {}
        self._turn: dict[str, int] = {}
        self._count = 0

    def poll(
        self, group: str, client_id: str, waiter: W, deadline_ms: int, now_ms: int
    ) -> list[tuple[W, list[P]]]:
        """A producer polls: what to answer now (this poll, if checks wait for it, and a
        poll of the same client it replaces).

        Raises:
            Busy: `producers_max` producers are known already.
        """
        producers = self._groups.setdefault(group, {})
        producer = producers.get(client_id)
        if producer is None:
            if self._count >= self._options.producers_max:
                if not producers:
                    del self._groups[group]
                raise Busy(f"{self._count} producers poll for checks already; retry later")
            producer = producers[client_id] = _Producer(now_ms)
            self._count += 1
        answers: list[tuple[W, list[P]]] = []
        if producer.waiter is not None:
            answers.append((producer.waiter, []))
        producer.last_seen_ms = now_ms
        producer.waiter, producer.deadline_ms = waiter, deadline_ms
        if producer.queued:
            answers.append(self._drain(producer, now_ms))
        return answers

    def offer(
        self, group: str, key: int, check: P, now_ms: int
    ) -> tuple[str | None, list[tuple[W, list[P]]]]:
        """Give a check to the group's next live producer: which one (None: no producer is
        live, or its queue is full) and what to answer now."""
        live = [
            (client_id, p)
            for client_id, p in self._groups.get(group, {}).items()
            if self._live(p, now_ms)
        ]
        if not live:
            return None, []
        turn = self._turn.get(group, 0)
        self._turn[group] = turn + 1
        client_id, producer = live[turn % len(live)]
        if key not in producer.queued and len(producer.queued) >= self._options.queue_max:
            return None, []
        producer.queued[key] = check
        if producer.waiter is None:
            return client_id, []
        return client_id, [self._drain(producer, now_ms)]

    def expire(self, now_ms: int) -> list[tuple[W, list[P]]]:
        """Answer polls whose wait is over (empty) and forget producers gone for `ttl_ms`."""
        answers: list[tuple[W, list[P]]] = []
        for group, producers in list(self._groups.items()):
            for client_id, producer in list(producers.items()):
                if producer.waiter is not None and producer.deadline_ms <= now_ms:
                    answers.append((producer.waiter, []))
                    producer.waiter, producer.last_seen_ms = None, now_ms
                elif not self._live(producer, now_ms):
                    del producers[client_id]
                    self._count -= 1
            if not producers:
                del self._groups[group]
                self._turn.pop(group, None)
        return answers

    def drop_all(self) -> list[W]:
        """Forget every producer (this node stopped being the writer); the held polls."""
        waiters = [
            p.waiter for ps in self._groups.values() for p in ps.values() if p.waiter is not None
        ]
        self._groups.clear()
        self._turn.clear()
        self._count = 0
        return waiters

    def live(self, group: str, now_ms: int) -> list[str]:
        """The group's live producers (client ids)."""
        producers = self._groups.get(group, {})
        return sorted(c for c, p in producers.items() if self._live(p, now_ms))

    def _live(self, producer: _Producer[W, P], now_ms: int) -> bool:
        return producer.waiter is not None or now_ms - producer.last_seen_ms <= self._options.ttl_ms

    def _drain(self, producer: _Producer[W, P], now_ms: int) -> tuple[W, list[P]]:
        assert producer.waiter is not None
        keys = list(producer.queued)[: self._options.answer_max]
        checks = [producer.queued.pop(k) for k in keys]
        waiter = producer.waiter
        producer.waiter, producer.last_seen_ms = None, now_ms
        return waiter, checks
