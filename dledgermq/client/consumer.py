"""The pull consumer: queue discovery, pulls by offset, and the group's stored offsets.

Owns: addressing each call to the right broker group (reads to the master, else a slave;
offset commits to the master), invalidating the cached route when a broker is unreachable,
and the pull's timeout (the long-poll hold plus the request timeout, so it is bounded).
`OFFSET_MOVED` answers surface as `errors.OffsetOutOfRange` with `min_offset`/`max_offset`
in `details`.

Must not: loop, schedule or retry on its own; `push_consumer.py` does that on top.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from dledgermq.client.http import HttpSession
from dledgermq.client.message import Message, MessageQueue, PullResult
from dledgermq.client.retry import MAX_RECONSUME_TIMES_DEFAULT, send_back_chunks
from dledgermq.client.routes import DEFAULT_ROUTE_REFRESH_S, NameServerClient, RouteCache
from dledgermq.client.topic_route import broker_for_msg_id
from dledgermq.errors import MQError, NoRoute, NotLeader, QueueNotFound, Timeout, Unavailable

DEFAULT_REQUEST_TIMEOUT_S = 5.0
MAX_PULL_MESSAGES = 256
MAX_WAIT_MS = 15_000
# Errors that mean "this broker address may be wrong now": ask the NameServer again.
_ROUTE_ERRORS = (Unavailable, Timeout, NotLeader, NoRoute)


def _q(text: str) -> str:
    return quote(text, safe="")


class PullConsumer:
    """Explicit pulls: the caller picks queues and offsets and commits progress."""

    def __init__(
        self,
        namesrv_addrs: Sequence[str],
        group: str,
        *,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        route_refresh_s: float = DEFAULT_ROUTE_REFRESH_S,
        http: HttpSession | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.group = group
        self.request_timeout_s = request_timeout_s
        self._http = http or HttpSession(timeout_s=request_timeout_s)
        self._nameserver = NameServerClient(namesrv_addrs, http=self._http, rng=rng)
        self._routes = RouteCache(self._nameserver, refresh_s=route_refresh_s)

    async def start(self) -> None:
        """Nothing to connect up front; kept for the RocketMQ lifecycle shape."""

    async def close(self) -> None:
        await self._http.close()

    async def __aenter__(self) -> PullConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def fetch_queues(self, topic: str) -> list[MessageQueue]:
        """The topic's readable queues in route order (broker name, then queue id)."""
        return (await self._routes.get(topic)).readable_queues()

    async def pull(
        self,
        mq: MessageQueue,
        offset: int,
        *,
        max_messages: int = 32,
        tags: str = "*",
        wait_ms: int = 0,
    ) -> PullResult:
        """Messages from `offset` on; with `wait_ms` the broker holds an empty pull open.

        Raises:
            OffsetOutOfRange: `offset` is outside the queue; `details` has the valid range.
        """
        if not 1 <= max_messages <= MAX_PULL_MESSAGES:
            raise ValueError(f"max_messages must be within 1..{MAX_PULL_MESSAGES}")
        if not 0 <= wait_ms <= MAX_WAIT_MS:
            raise ValueError(f"wait_ms must be within 0..{MAX_WAIT_MS}")
        params = {"offset": offset, "max": max_messages, "tags": tags, "wait_ms": wait_ms}
        path = f"/topics/{_q(mq.topic)}/queues/{mq.queue_id}/messages"
        timeout_s = self.request_timeout_s + wait_ms / 1000
        answer = await self._call(mq, "GET", path, params=params, timeout_s=timeout_s)
        return PullResult.from_wire(answer)

    async def commit_offset(self, mq: MessageQueue, offset: int) -> None:
        """Store the group's next offset to consume in `mq` (through the broker's log)."""
        await self.commit_offsets({mq: offset})

    async def commit_offsets(self, offsets: Mapping[MessageQueue, int]) -> None:
        """Store several queues' offsets, one request per (topic, broker group)."""
        batches: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        for mq, offset in offsets.items():
            batches[mq.topic, mq.broker_name][str(mq.queue_id)] = offset
        for (topic, broker_name), batch in batches.items():
            mq = MessageQueue(topic, broker_name, 0)
            body = {"topic": topic, "offsets": batch}
            await self._call(mq, "POST", f"/groups/{_q(self.group)}/offsets", body=body, write=True)

    async def fetch_offsets(self, topic: str, broker_name: str) -> dict[int, int]:
        """The group's committed offsets on one broker group, by queue id."""
        mq = MessageQueue(topic, broker_name, 0)
        path = f"/groups/{_q(self.group)}/offsets"
        answer = await self._call(mq, "GET", path, params={"topic": topic})
        return {int(qid): offset for qid, offset in answer.get("offsets", {}).items()}

    async def fetch_offset(self, mq: MessageQueue) -> int | None:
        """The group's committed offset in `mq`, or None if it never committed one."""
        return (await self.fetch_offsets(mq.topic, mq.broker_name)).get(mq.queue_id)

    async def heartbeat(
        self,
        topic: str,
        broker_name: str,
        *,
        client_id: str,
        tags: str,
        strategy: str,
        zone: str | None = None,
    ) -> tuple[list[int], int]:
        """Tell one broker group's writer this member is alive and subscribes to `topic`.

        Returns:
            The queue ids of that broker group it may consume now, and their lease (ms):
            stop consuming them if no heartbeat succeeds within the lease.
        """
        assignment, lease_ms = await self.heartbeat_topics(
            topic, broker_name, {topic: tags}, client_id=client_id, strategy=strategy, zone=zone
        )
        return assignment.get(topic, []), lease_ms

    async def heartbeat_topics(  # noqa: PLR0913 - keyword-only heartbeat fields
        self,
        route_topic: str,
        broker_name: str,
        subscriptions: Mapping[str, str],
        *,
        client_id: str,
        strategy: str,
        zone: str | None = None,
        held: Mapping[str, Sequence[int]] | None = None,
    ) -> tuple[dict[str, list[int]], int]:
        """A heartbeat naming every topic this member subscribes to (topic -> tag
        expression), sent to the writer of `broker_name` found through `route_topic`.

        Args:
            held: for an orderly member (None: a concurrent one), the queue ids per topic
                it holds under a lease it still considers valid; a new writer lets it keep
                them through its grace period (docs/ARCHITECTURE.md, orderly consumers).

        Returns:
            Per topic, the queue ids of that broker group it may consume now; their lease.
        """
        body: dict[str, Any] = {
            "client_id": client_id,
            "subscriptions": dict(subscriptions),
            "strategy": strategy,
        }
        if zone is not None:
            body["zone"] = zone
        if held is not None:
            body["orderly"] = True
            body["held"] = {topic: sorted(qids) for topic, qids in held.items() if qids}
        mq = MessageQueue(route_topic, broker_name, 0)
        path = f"/groups/{_q(self.group)}/heartbeat"
        answer = await self._call(mq, "POST", path, body=body, write=True)
        assignment = {
            str(topic): [int(q) for q in queue_ids]
            for topic, queue_ids in answer["assignment"].items()
        }
        return assignment, int(answer["lease_ms"])

    async def send_back(
        self,
        messages: Message | Sequence[Message],
        *,
        broker_name: str | None = None,
        max_reconsume_times: int = MAX_RECONSUME_TIMES_DEFAULT,
        dead_letter_times: int | None = None,
    ) -> list[dict[str, Any]]:
        """Hand messages this group failed to consume back to the broker group they were
        pulled from (RocketMQ's sendMessageBack): each comes again through the group's
        retry topic after a growing delay, or goes to its dead-letter topic once it was
        retried `max_reconsume_times` times. Pass the messages as pulled.

        Args:
            messages: pulled messages (their `msg_id` names where they are stored).
            broker_name: the broker group they came from; by default the one whose hash
                prefixes each `msg_id`.
            max_reconsume_times: retries before the dead-letter topic (0: at once).
            dead_letter_times: straight to the dead-letter topic, recording this many
                (local) reconsumes: what an orderly consumer does after its local retries.

        Returns:
            Per message: `{msg_id, status: RETRY|DLQ, topic, reconsume_times,
            deliver_at_ms, dead_letter_id}`.

        Raises:
            MQError: the broker refused or could not be reached; nothing of that request
                was stored (each request is one entry), so sending back again is safe.
        """
        batch = [messages] if isinstance(messages, Message) else list(messages)
        by_broker: dict[tuple[str, str], list[Message]] = defaultdict(list)
        for message in batch:
            broker = broker_name or await self._broker_of(message)
            by_broker[message.topic, broker].append(message)
        results: list[dict[str, Any]] = []
        path = f"/groups/{_q(self.group)}/send-back"
        for (topic, broker), grouped in by_broker.items():
            mq = MessageQueue(topic, broker, 0)
            for chunk in send_back_chunks(grouped):
                body: dict[str, Any] = {
                    "msg_ids": [m.msg_id for m in chunk],
                    "max_reconsume_times": max_reconsume_times,
                }
                if dead_letter_times is not None:
                    body |= {"dead_letter": True, "reconsume_times": dead_letter_times}
                answer = await self._call(mq, "POST", path, body=body, write=True)
                results += answer["results"]
        return results

    async def _broker_of(self, message: Message) -> str:
        route = await self._routes.get(message.topic)
        broker = broker_for_msg_id(message.msg_id, route.brokers)
        if broker is None:
            raise NoRoute(
                f"no broker group of {message.topic!r} stored message {message.msg_id!r}",
                msg_id=message.msg_id,
            )
        return broker

    async def release(self, client_id: str, queues: Sequence[MessageQueue]) -> None:
        """Free the leases of queues this member stopped consuming (committed first)."""
        by_broker: dict[tuple[str, str], list[int]] = defaultdict(list)
        for mq in queues:
            by_broker[mq.topic, mq.broker_name].append(mq.queue_id)
        for (topic, broker_name), queue_ids in sorted(by_broker.items()):
            body = {"client_id": client_id, "topic": topic, "queue_ids": sorted(queue_ids)}
            mq = MessageQueue(topic, broker_name, 0)
            path = f"/groups/{_q(self.group)}/release"
            await self._call(mq, "POST", path, body=body, write=True)

    async def members(self, topic: str, broker_name: str) -> dict[str, Any]:
        """The group's live members on one broker group of `topic`, its strategy and who
        holds each queue's lease (the broker's view, from its writer)."""
        mq = MessageQueue(topic, broker_name, 0)
        path = f"/groups/{_q(self.group)}/members"
        return await self._call(mq, "GET", path, write=True)

    async def progress(self, topic: str) -> list[dict[str, Any]]:
        """Per queue of `topic`: the broker's range, the group's committed offset, the lag
        (messages not yet consumed), when the last consumed message was stored
        (`last_consumed_ms`) and the member holding the queue's lease (None when no
        writer answered: a replica does not know the leases)."""
        rows = []
        queues = await self.fetch_queues(topic)
        for broker in sorted({mq.broker_name for mq in queues}):
            mq = MessageQueue(topic, broker, 0)
            path = f"/groups/{_q(self.group)}/progress"
            answer = await self._call(mq, "GET", path, params={"topic": topic})
            rows += [{"broker_name": broker} | row for row in answer["queues"]]
        return rows

    async def leave(self, topic: str, broker_name: str, client_id: str) -> None:
        """This member shuts down: the broker group frees its leases at once."""
        mq = MessageQueue(topic, broker_name, 0)
        path = f"/groups/{_q(self.group)}/leave"
        await self._call(mq, "POST", path, body={"client_id": client_id}, write=True)

    async def offset_by_time(self, mq: MessageQueue, ts_ms: int) -> int:
        """The first queue offset stored at or after `ts_ms`."""
        path = f"/topics/{_q(mq.topic)}/queues/{mq.queue_id}/offset-by-time"
        return int((await self._call(mq, "GET", path, params={"timestamp_ms": ts_ms}))["offset"])

    async def initial_offset(self, mq: MessageQueue, start: str | int) -> int:
        """Where to begin in a queue the group has no offset for: "first" (the oldest
        kept), "last" (only what comes next), or a timestamp in ms (the first message
        stored at or after it; the end if none is)."""
        if isinstance(start, int):
            return await self.offset_by_time(mq, start)
        low, high = await self.queue_range(mq)
        return low if start == "first" else high

    async def queue_range(self, mq: MessageQueue) -> tuple[int, int]:
        """The queue's (min_offset, max_offset); max is the next offset to be written."""
        answer = await self._call(mq, "GET", f"/topics/{_q(mq.topic)}")
        for queue in answer.get("queues", []):
            if queue["queue_id"] == mq.queue_id:
                return int(queue["min_offset"]), int(queue["max_offset"])
        raise QueueNotFound(f"{mq} is not served by {mq.broker_name}", queue_id=mq.queue_id)

    async def _call(  # noqa: PLR0913 - one place that addresses every broker call
        self,
        mq: MessageQueue,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        write: bool = False,
    ) -> dict[str, Any]:
        route = await self._routes.get(mq.topic)
        if write:
            master = route.master_addr(mq.broker_name)
            addrs = [master] if master is not None else []
        else:  # A read goes on to the group's replicas while its writer is unreachable.
            addrs = route.read_addrs(mq.broker_name)
        if not addrs:
            self._routes.invalidate(mq.topic)
            raise NoRoute(f"no broker of group {mq.broker_name!r} serves {mq.topic!r}")
        for position, addr in enumerate(addrs, start=1):
            try:
                return await self._http.request(
                    method, addr, path, params=params, body=body, timeout_s=timeout_s
                )
            except MQError as err:
                if isinstance(err, _ROUTE_ERRORS):
                    self._routes.invalidate(mq.topic)
                if not isinstance(err, Unavailable) or position == len(addrs):
                    raise
        raise AssertionError("unreachable: the last address raises")
