"""Administration: topics on every broker group, status, and message queries.

Owns: fanning a request out to broker groups (topic changes go to each group's master,
reads to the master else a slave), merging the answers (query results newest first), and
reporting partial failures (a fan-out that fails somewhere raises the first error with
`details["succeeded"]` and `details["failed"]` saying where it landed).

Must not: cache routes (an admin wants the NameServer's current view) or retry.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from dledgermq.client import dead_letters
from dledgermq.client.http import HttpSession
from dledgermq.client.message import Message
from dledgermq.client.routes import NameServerClient
from dledgermq.client.topic_route import BrokerData, broker_for_msg_id
from dledgermq.errors import (
    BrokerNotFound,
    MessageNotFound,
    MQError,
    Timeout,
    TopicNotFound,
    Unavailable,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_QUERY_MESSAGES = 64
TRANSFER_POLL_S = 0.1


def _q(text: str) -> str:
    return quote(text, safe="")


def merge_newest_first(batches: Sequence[Sequence[Message]], limit: int) -> list[Message]:
    """One list from many brokers' answers: no duplicates, newest stored first."""
    unique = {m.msg_id: m for batch in batches for m in batch}
    ordered = sorted(
        unique.values(), key=lambda m: (m.store_timestamp_ms, m.commitlog_offset), reverse=True
    )
    return ordered[:limit]


def _raise_partial(results: Mapping[str, object]) -> None:
    """Raise the first failure, annotated with where the fan-out succeeded and failed."""
    failed = {name: r for name, r in results.items() if isinstance(r, BaseException)}
    if not failed:
        return
    first = next(iter(failed.values()))
    if not isinstance(first, MQError):
        raise first
    first.details["succeeded"] = sorted(n for n in results if n not in failed)
    first.details["failed"] = {n: getattr(e, "code", repr(e)) for n, e in sorted(failed.items())}
    raise first


class Admin:
    """Topic management and inspection over all broker groups of the NameServers."""

    def __init__(
        self,
        namesrv_addrs: Sequence[str],
        *,
        request_timeout_s: float = 5.0,
        http: HttpSession | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._http = http or HttpSession(timeout_s=request_timeout_s)
        self._nameserver = NameServerClient(namesrv_addrs, http=self._http, rng=rng)

    async def start(self) -> None:
        """Nothing to connect up front; kept for symmetry with the other clients."""

    async def close(self) -> None:
        await self._http.close()

    async def __aenter__(self) -> Admin:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def brokers(self) -> list[dict[str, Any]]:
        """Live broker groups: `{cluster, broker_name, addrs, last_seen_ms}` each."""
        return await self._nameserver.brokers()

    async def broker_status(self, addr: str) -> dict[str, Any]:
        """One broker's `GET /status`."""
        return await self._http.request("GET", addr, "/status")

    async def transfer_leadership(
        self, broker_name: str, to: str, *, wait_s: float = 10.0
    ) -> dict[str, Any]:
        """Move a Raft group's leadership to node `to`; returns once `to` leads.

        Raises:
            BrokerNotFound: no such live group. Timeout: `to` did not take over in time.
        """
        addr = (await self._groups([broker_name]))[broker_name]
        if addr is None:
            raise Unavailable(f"broker group {broker_name!r} has no leader now")
        started = await self._http.request("POST", addr, "/admin/leader-transfer", body={"to": to})
        deadline = time.monotonic() + wait_s
        while started.get("started"):
            groups = {g.broker_name: g for g in await self._nameserver.broker_groups()}
            master = groups.get(broker_name)
            if master is not None and master.master_addr is not None:
                status = await self.broker_status(master.master_addr)
                if status.get("node_id") == to and status.get("role") == "leader":
                    return status
            if time.monotonic() > deadline:
                raise Timeout(f"{to} did not become the leader of {broker_name} in {wait_s:.0f}s")
            await asyncio.sleep(TRANSFER_POLL_S)  # Polling the cluster; nothing to await on.
        return await self.broker_status(addr)

    async def set_write_permission(self, broker_name: str, *, writable: bool) -> dict[str, Any]:
        """Disable (maintenance) or enable sends to a broker group; reads go on. Stored in
        the group's log, so it holds across failovers and restarts.

        Returns:
            `{broker_name, perm, writable}` as the group's writer now has it.
        """
        addr = (await self._groups([broker_name]))[broker_name]
        if addr is None:
            raise Unavailable(f"broker group {broker_name!r} has no leader now")
        body = {"writable": writable}
        return await self._http.request("PUT", addr, "/admin/write-permission", body=body)

    async def list_topics(self) -> list[str]:
        return await self._nameserver.topics()

    async def create_topic(
        self,
        topic: str,
        *,
        queues: int = 8,
        read_queues: int | None = None,
        write_queues: int | None = None,
        perm: int = 6,
        broker_names: Sequence[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Create the topic on each group's master; returns TopicConfig by broker name."""
        body = {
            "topic": topic,
            "read_queues": queues if read_queues is None else read_queues,
            "write_queues": queues if write_queues is None else write_queues,
            "perm": perm,
        }
        groups = await self._groups(broker_names)
        results = await self._fan_out(groups, lambda addr: self._post_topic(addr, body))
        _raise_partial(results)
        return {name: r for name, r in results.items() if isinstance(r, dict)}

    async def update_topic(
        self,
        topic: str,
        *,
        read_queues: int | None = None,
        write_queues: int | None = None,
        perm: int | None = None,
        broker_names: Sequence[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Change queue counts or permission on every group that has the topic."""
        fields = {"read_queues": read_queues, "write_queues": write_queues, "perm": perm}
        body = {k: v for k, v in fields.items() if v is not None}
        path = f"/topics/{_q(topic)}"
        results = await self._on_topic_groups(
            topic, broker_names, lambda addr: self._http.request("PUT", addr, path, body=body)
        )
        return {name: r for name, r in results.items() if isinstance(r, dict)}

    async def delete_topic(
        self, topic: str, *, broker_names: Sequence[str] | None = None
    ) -> list[str]:
        """Delete the topic on every group that has it; returns those groups' names."""
        path = f"/topics/{_q(topic)}"
        results = await self._on_topic_groups(
            topic, broker_names, lambda addr: self._http.request("DELETE", addr, path)
        )
        return sorted(results)

    async def topic_status(self, topic: str) -> dict[str, Any]:
        """The route plus each queue's offsets; unreachable groups are listed in `errors`."""
        route = await self._nameserver.get(f"/routes/{_q(topic)}")
        groups = [BrokerData.from_wire(b) for b in route.get("brokers", [])]
        path = f"/topics/{_q(topic)}"
        results = await self._fan_out(
            {g.broker_name: g.read_addr for g in groups},
            lambda addr: self._http.request("GET", addr, path),
        )
        queues, errors = [], {}
        for name, result in sorted(results.items()):
            if isinstance(result, BaseException):
                errors[name] = getattr(result, "message", repr(result))
                continue
            queues += [{"broker_name": name, **q} for q in result.get("queues", [])]
        return {"topic": topic, "route": route, "queues": queues, "errors": errors}

    async def query_by_key(
        self,
        key: str,
        *,
        topic: str | None = None,
        begin_ms: int | None = None,
        end_ms: int | None = None,
        max_messages: int = 32,
    ) -> list[Message]:
        """Messages with `key` (in `topic` if given) from every broker group, newest first."""
        if topic is None:
            groups = await self._nameserver.broker_groups()
        else:
            route = await self._nameserver.get(f"/routes/{_q(topic)}")
            groups = [BrokerData.from_wire(b) for b in route.get("brokers", [])]
        params = {
            "topic": topic,
            "key": key,
            "begin_ms": begin_ms,
            "end_ms": end_ms,
            "max": max_messages,
        }
        params = {name: value for name, value in params.items() if value is not None}
        results = await self._fan_out(
            {g.broker_name: g.read_addr for g in groups},
            lambda addr: self._http.request("GET", addr, "/messages", params=params),
        )
        found = [r for r in results.values() if not isinstance(r, BaseException)]
        if not found:
            _raise_partial(results)
        batches = [[Message.from_wire(m) for m in r.get("messages", [])] for r in found]
        return merge_newest_first(batches, max_messages)

    async def query_by_id(self, msg_id: str) -> Message:
        """The message by msg_id (its prefix names the group) or by unique key (ask all).

        Raises:
            MessageNotFound: no broker group has it.
        """
        groups = {g.broker_name: g for g in await self._nameserver.broker_groups()}
        path = f"/messages/{_q(msg_id)}"
        owner = broker_for_msg_id(msg_id, groups)
        owner_addr = groups[owner].read_addr if owner is not None else None
        if owner_addr is not None:
            try:
                answer = await self._http.request("GET", owner_addr, path)
                return Message.from_wire(answer)
            except MessageNotFound:
                pass  # A unique key is also 32 hex digits; ask the other groups.
        others = {n: g.read_addr for n, g in groups.items() if n != owner}
        results = await self._fan_out(others, lambda addr: self._http.request("GET", addr, path))
        for result in results.values():
            if isinstance(result, dict):
                return Message.from_wire(result)
        raise MessageNotFound(f"no broker group has message {msg_id!r}", msg_id=msg_id)

    async def dead_letters(
        self,
        group: str,
        *,
        offset: int | None = None,
        max_messages: int = 32,
        broker_names: Sequence[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """A page of `group`'s dead letters per broker group holding them, oldest first:
        `{broker_name: {messages: [Message], next_offset, min_offset, max_offset,
        resend_offset}}` (`offset` applies to each group: name one to page through it).
        A letter's original topic is its `properties["RETRY_TOPIC"]`."""
        brokers = await dead_letters.dlq_brokers(self._nameserver, group, broker_names)
        results = await self._fan_out(
            {name: name for name in brokers},
            lambda name: dead_letters.list_page(
                self._http, brokers[name], group, offset, max_messages
            ),
        )
        _raise_partial(results)
        return {name: r for name, r in sorted(results.items()) if isinstance(r, dict)}

    async def resend_dead_letters(
        self,
        group: str,
        *,
        msg_ids: Sequence[str] | None = None,
        resend_all: bool = False,
        broker_names: Sequence[str] | None = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """Resend dead letters of `group` to their original topics (fresh messages with
        the same unique key and `reconsume_times` 0): the ones named by their DLQ msg_id,
        or with `resend_all` every one not resent by an earlier "all" (each broker group
        keeps that mark in its log). Returns `{resent: [...], skipped: [...]}`; a letter
        whose topic is gone or read-only is skipped (and stays in the DLQ).
        """
        if (msg_ids is None) != resend_all:
            raise ValueError("give msg_ids or resend_all=True, not both")
        brokers = await dead_letters.dlq_brokers(self._nameserver, group, broker_names)
        if msg_ids is not None and not msg_ids:
            raise ValueError("msg_ids is empty")
        return await dead_letters.resend(self._http, brokers, group, msg_ids)

    async def transactions(
        self,
        *,
        state: str = "all",
        producer_group: str | None = None,
        max_items: int = 100,
        broker_names: Sequence[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Per broker group: its pending half messages (oldest first) and remembered
        outcomes (newest first), as `GET /transactions` answers them."""
        params = {"state": state, "producer_group": producer_group, "max": max_items}
        results = await self._fan_out(
            await self._groups(broker_names),
            lambda addr: self._http.request("GET", addr, "/transactions", params=params),
        )
        _raise_partial(results)
        return {name: r for name, r in sorted(results.items()) if isinstance(r, dict)}

    async def end_transaction(
        self,
        broker_name: str,
        transaction_id: str,
        *,
        producer_group: str,
        commitlog_offset: int,
        outcome: str,
    ) -> dict[str, Any]:
        """Commit or roll back a pending transaction by hand (an operator's end: the same
        request a producer sends, bound to id, offset and group)."""
        [addr] = (await self._groups([broker_name])).values()
        if addr is None:
            raise Unavailable(f"broker group {broker_name!r} has no writer now")
        body = {
            "producer_group": producer_group,
            "commitlog_offset": commitlog_offset,
            "outcome": outcome,
        }
        return await self._http.request(
            "POST", addr, f"/transactions/{_q(transaction_id)}/end", body=body
        )

    async def _post_topic(self, addr: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._http.request("POST", addr, "/topics", body=body)

    async def _groups(self, broker_names: Sequence[str] | None) -> dict[str, str | None]:
        """Master address by broker name: the named groups, else every live group."""
        groups = {g.broker_name: g.master_addr for g in await self._nameserver.broker_groups()}
        if broker_names is None:
            if not groups:
                raise BrokerNotFound("the NameServers know no broker group")
            return groups
        unknown = sorted(set(broker_names) - set(groups))
        if unknown:
            raise BrokerNotFound(f"unknown broker group(s): {unknown}", broker_names=unknown)
        return {name: groups[name] for name in broker_names}

    async def _on_topic_groups(
        self,
        topic: str,
        broker_names: Sequence[str] | None,
        call: Callable[[str], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        """Run `call` on the groups' masters; groups lacking the topic are left out.

        Unnamed groups are all live groups, so a topic the NameServer has not heard of
        yet (heartbeats lag) is still reached.
        """
        results = await self._fan_out(await self._groups(broker_names), call)
        if broker_names is None:
            results = {n: r for n, r in results.items() if not isinstance(r, TopicNotFound)}
            if not results:
                raise TopicNotFound(f"no broker group has topic {topic!r}", topic=topic)
        _raise_partial(results)
        return results

    async def _fan_out(
        self,
        addrs: Mapping[str, str | None],
        call: Callable[[str], Awaitable[T]],
    ) -> dict[str, T | BaseException]:
        """Call every group concurrently; a group without an address fails Unavailable."""

        async def one(name: str, addr: str | None) -> T:
            if addr is None:
                raise Unavailable(f"broker group {name!r} has no reachable broker")
            return await call(addr)

        names = list(addrs)
        outcomes = await asyncio.gather(*(one(n, addrs[n]) for n in names), return_exceptions=True)
        return dict(zip(names, outcomes, strict=True))
