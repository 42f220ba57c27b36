"""What a broker tells the NameServers about itself (API.md, `POST /brokers`), and how that went.

Owns the registration body: identity, role (broker_id 0 takes writes), zone, the broker
group's permission (6, or 4 while write-disabled for maintenance; the NameServer masks
every topic's perm with it, as RocketMQ's broker does with `brokerPermission`), whether
it creates unknown topics on a send (producers then send a topic without a route there,
RocketMQ's TBW102 idea) and the topic table. A table of more than `PAGE_TOPICS_MAX` topics
goes in pages of one round (RocketMQ 4's split registration; docs/ARCHITECTURE.md), so
no body outgrows the NameServer's bound however many topics the broker has.

Also owns `RegistrationHealth`: per NameServer, the last outcome (accepted, refused with
a status, unreachable), the body size and when registration last succeeded, shown in the
broker's `/status` as `registration`, and when a failure is worth an error-level log line
(the first of a streak, then once a minute), so a refused broker is loud, not silently
expired.

Pure: reads only what the actors publish and what node.py reports; sends nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dledgermq.api.context import BrokerContext

# About 190 bytes a topic at most (127-character name, 4-digit queue counts): a page is
# under 400 KB, well below even an older NameServer's 1 MiB body bound.
PAGE_TOPICS_MAX = 2_000
# A refused or failed registration is logged at error level at most this often per
# NameServer (the first failure of a streak always is).
FAILURE_LOG_INTERVAL_MS = 60_000


def registration(context: BrokerContext) -> dict[str, Any]:
    """The whole registration body, every topic in it."""
    identity = context.identity
    topics = context.published.topics.value
    body: dict[str, Any] = {
        "cluster": identity.cluster,
        "broker_name": identity.broker_name,
        "broker_id": context.role.value.broker_id,
        "addr": identity.addr,
        "perm": context.published.broker_perm.value,
        "auto_create_topic": context.limits.auto_create_topic,
        "topics": [topics[name].to_wire() for name in sorted(topics)],
    }
    if identity.zone is not None:
        body["zone"] = identity.zone
    return body


def paginate(
    body: dict[str, Any], round_id: str, page_topics: int = PAGE_TOPICS_MAX
) -> list[dict[str, Any]]:
    """`body` as the pages of one registration round (itself alone when it fits one page).

    Every page repeats the identity; its `page` says `{round, index, count}`. A body that
    fits one page is sent unchanged, so NameServers without paging still understand it.
    """
    assert page_topics > 0, page_topics
    topics: list[Any] = body["topics"]
    if len(topics) <= page_topics:
        return [body]
    slices = [topics[at : at + page_topics] for at in range(0, len(topics), page_topics)]
    return [
        {**body, "topics": part, "page": {"round": round_id, "index": i, "count": len(slices)}}
        for i, part in enumerate(slices)
    ]


def encode_body(page: dict[str, Any]) -> bytes:
    """`page` as the JSON body sent (its length goes to logs and /status)."""
    return json.dumps(page, separators=(",", ":")).encode()


def body_bytes(page: dict[str, Any]) -> int:
    return len(encode_body(page))


@dataclass(slots=True)
class NamesrvOutcome:
    """How the last registration round with one NameServer went."""

    addr: str
    ok: bool | None = None  # None: not tried yet.
    status: int | None = None  # The refusing HTTP status; None when accepted or unreachable.
    error: str | None = None
    body_bytes: int = 0  # The largest page of the round.
    pages: int = 0
    last_attempt_ms: int | None = None
    last_ok_ms: int | None = None
    failures: int = 0  # Consecutive failed rounds.
    last_logged_ms: int | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "addr": self.addr,
            "ok": self.ok,
            "status": self.status,
            "error": self.error,
            "body_bytes": self.body_bytes,
            "pages": self.pages,
            "last_attempt_ms": self.last_attempt_ms,
            "last_ok_ms": self.last_ok_ms,
            "failures": self.failures,
        }


class RegistrationHealth:
    """Per NameServer, how registration is going; read by `/status`, written by node.py."""

    def __init__(self, addrs: list[str]) -> None:
        self._outcomes = {addr: NamesrvOutcome(addr) for addr in addrs}

    def outcome(self, addr: str) -> NamesrvOutcome:
        return self._outcomes.setdefault(addr, NamesrvOutcome(addr))

    def accepted(self, addr: str, now_ms: int, *, largest_bytes: int, pages: int) -> None:
        outcome = self.outcome(addr)
        outcome.ok, outcome.status, outcome.error = True, None, None
        outcome.body_bytes, outcome.pages = largest_bytes, pages
        outcome.last_attempt_ms = outcome.last_ok_ms = now_ms
        outcome.failures = 0
        outcome.last_logged_ms = None

    def failed(
        self,
        addr: str,
        now_ms: int,
        *,
        status: int | None,
        error: str,
        largest_bytes: int,
        pages: int,
    ) -> bool:
        """Record a failed round; True when it should be logged at error level now."""
        outcome = self.outcome(addr)
        outcome.ok, outcome.status, outcome.error = False, status, error
        outcome.body_bytes, outcome.pages = largest_bytes, pages
        outcome.last_attempt_ms = now_ms
        outcome.failures += 1
        last = outcome.last_logged_ms
        if last is not None and now_ms - last < FAILURE_LOG_INTERVAL_MS:
            return False
        outcome.last_logged_ms = now_ms
        return True

    def to_wire(self) -> dict[str, Any]:
        outcomes = list(self._outcomes.values())
        return {
            "ok": all(o.ok for o in outcomes),
            "namesrvs": [o.to_wire() for o in outcomes],
        }
