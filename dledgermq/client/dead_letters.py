"""Dead letters of a consumer group: list them and resend them (the `Admin` methods).

Owns: finding the broker groups that hold a group's dead-letter topic (its route at the
NameServer), listing a page from each (reads: the master, else a replica), and resending
through each group's writer: named letters to the group whose hash prefixes their msg_id,
or "all" in rounds until the group's resend mark reaches the end of its dead-letter queue.

Must not: cache routes or retry a failed request (a resend that failed may be repeated:
"all" goes on from the mark, which moves in the same entry as the resent messages).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from dledgermq.client.http import HttpSession
from dledgermq.client.message import Message
from dledgermq.client.retry import dlq_topic
from dledgermq.client.routes import NameServerClient
from dledgermq.client.topic_route import BrokerData, broker_for_msg_id
from dledgermq.errors import BrokerNotFound, MessageNotFound, NoRoute, Unavailable

# "Resend all" answers how many letters remain; this bounds the rounds per broker group
# (each resends up to the broker's batch limit, 256 by default).
RESEND_ROUNDS_MAX = 10_000


def _q(text: str) -> str:
    return quote(text, safe="")


async def dlq_brokers(
    nameserver: NameServerClient, group: str, broker_names: Sequence[str] | None
) -> dict[str, BrokerData]:
    """The broker groups holding `group`'s dead-letter topic (none: no dead letter yet).

    Raises:
        BrokerNotFound: a named broker group holds no dead letter of `group`.
    """
    try:
        route = await nameserver.get(f"/routes/{_q(dlq_topic(group))}")
    except NoRoute:
        route = {}
    groups = {b["broker_name"]: BrokerData.from_wire(b) for b in route.get("brokers", [])}
    if broker_names is None:
        return groups
    unknown = sorted(set(broker_names) - set(groups))
    if unknown:
        raise BrokerNotFound(
            f"broker group(s) {unknown} hold no dead letter of {group!r}", broker_names=unknown
        )
    return {name: groups[name] for name in broker_names}


async def list_page(
    http: HttpSession, broker: BrokerData, group: str, offset: int | None, max_messages: int
) -> dict[str, Any]:
    """One broker group's page: `{messages: [Message], next_offset, min_offset,
    max_offset, resend_offset}`."""
    addr = broker.read_addr
    if addr is None:
        raise Unavailable(f"broker group {broker.broker_name!r} has no reachable broker")
    params: dict[str, Any] = {"max": max_messages}
    if offset is not None:
        params["offset"] = offset
    page = await http.request("GET", addr, f"/groups/{_q(group)}/dlq", params=params)
    return {**page, "messages": [Message.from_wire(m) for m in page.get("messages", [])]}


async def resend(
    http: HttpSession,
    brokers: dict[str, BrokerData],
    group: str,
    msg_ids: Sequence[str] | None,
) -> dict[str, list[dict[str, Any]]]:
    """Resend the named letters (or, with `msg_ids` None, every letter after each broker
    group's resend mark); `{resent: [...], skipped: [...]}`, each naming its broker.

    Raises:
        MessageNotFound: a msg_id names no broker group holding the group's DLQ.
    """
    resent: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    path = f"/groups/{_q(group)}/dlq/resend"
    if msg_ids is None:
        batches: dict[str, list[str] | None] = dict.fromkeys(sorted(brokers))
    else:
        batches = dict(_by_broker(msg_ids, brokers, group))
    for name, ids in batches.items():
        addr = brokers[name].master_addr
        if addr is None:
            raise Unavailable(f"broker group {name!r} has no writer now")
        body: dict[str, Any] = {"all": True} if ids is None else {"msg_ids": ids}
        for _ in range(RESEND_ROUNDS_MAX):
            answer = await http.request("POST", addr, path, body=body)
            resent += [{"broker_name": name, **r} for r in answer["resent"]]
            skipped += [{"broker_name": name, **s} for s in answer["skipped"]]
            if ids is not None or not answer.get("remaining"):
                break
    return {"resent": resent, "skipped": skipped}


def _by_broker(
    msg_ids: Sequence[str], brokers: dict[str, BrokerData], group: str
) -> dict[str, list[str]]:
    by_broker: dict[str, list[str]] = defaultdict(list)
    for msg_id in msg_ids:
        name = broker_for_msg_id(msg_id, brokers)
        if name is None:
            raise MessageNotFound(
                f"{msg_id!r} is no dead letter of {group!r} (no broker group holding its "
                "dead letters stored it); `dlq list` shows their ids",
                msg_id=msg_id,
            )
        by_broker[name].append(msg_id)
    return dict(sorted(by_broker.items()))
