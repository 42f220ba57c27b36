"""In-test fakes for the client: a tiny in-memory broker and a cluster around the REAL NameServer.

The fake broker follows the broker rows of docs/API.md closely enough for the client (it
shares `dledgermq.wire` with the real apps) and can be told to answer BUSY a few times.
Everything runs on aiohttp test servers bound to 127.0.0.1 inside the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from dledgermq.errors import (
    Busy,
    MessageNotFound,
    OffsetOutOfRange,
    TopicExists,
    TopicNotFound,
    Unavailable,
)
from dledgermq.namesrv.registry import BrokerRegistration, RouteRegistry, TopicQueues
from dledgermq.wire import error_middleware, read_body, respond


def broker_hash(name: str) -> str:
    return f"{zlib.crc32(name.encode()) & 0xFFFFFFFF:08X}"


@dataclass
class FakeBroker:
    """One broker group's master, in memory."""

    name: str
    busy_answers: int = 0
    topics: dict[str, dict[str, Any]] = field(default_factory=dict)
    queues: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    min_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    offsets: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    send_requests: int = 0
    heartbeats: list[str] = field(default_factory=list)
    released: list[dict[str, Any]] = field(default_factory=list)
    sent_back: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    send_back_failures: int = 0  # Answer this many send-backs UNAVAILABLE first.
    commitlog_offset: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    server: TestServer | None = None

    @property
    def addr(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.port}"

    def add_topic(self, topic: str, queues: int = 2, perm: int = 6) -> None:
        self.topics[topic] = {
            "topic": topic,
            "read_queues": queues,
            "write_queues": queues,
            "perm": perm,
        }
        for qid in range(queues):
            self.queues.setdefault((topic, qid), [])

    def registration(self) -> BrokerRegistration:
        topics = tuple(
            TopicQueues(t["topic"], t["read_queues"], t["write_queues"], t["perm"])
            for t in self.topics.values()
        )
        return BrokerRegistration("c1", self.name, 0, self.addr, topics)

    def store(self, topic: str, qid: int, msg: dict[str, Any]) -> dict[str, Any]:
        queue = self.queues[topic, qid]
        size = len(msg["body"])
        msg_id = f"{broker_hash(self.name)}{self.commitlog_offset:016X}{size:08X}"
        now = int(time.time() * 1000)
        stored = {
            "msg_id": msg_id,
            "unique_key": msg.get("properties", {}).get("UNIQ_KEY", ""),
            "topic": topic,
            "queue_id": qid,
            "queue_offset": self.min_offsets.get((topic, qid), 0) + len(queue),
            "commitlog_offset": self.commitlog_offset,
            "body": msg["body"],
            "tags": msg.get("tags"),
            "keys": msg.get("keys", []),
            "properties": msg.get("properties", {}),
            "born_timestamp_ms": now,
            "store_timestamp_ms": now,
            "reconsume_times": 0,
        }
        self.commitlog_offset += 100 + size
        queue.append(stored)
        return stored

    def queue_range(self, topic: str, qid: int) -> tuple[int, int]:
        low = self.min_offsets.get((topic, qid), 0)
        return low, low + len(self.queues[topic, qid])

    def app(self) -> web.Application:
        app = web.Application(middlewares=[error_middleware])
        app.router.add_post("/topics", self.create_topic)
        app.router.add_get("/topics/{topic}", self.get_topic)
        app.router.add_delete("/topics/{topic}", self.delete_topic)
        app.router.add_post("/topics/{topic}/messages", self.send)
        app.router.add_get("/topics/{topic}/queues/{qid}/messages", self.pull)
        app.router.add_post("/groups/{group}/offsets", self.commit)
        app.router.add_get("/groups/{group}/offsets", self.get_offsets)
        app.router.add_post("/groups/{group}/heartbeat", self.heartbeat)
        app.router.add_post("/groups/{group}/release", self.release)
        app.router.add_post("/groups/{group}/leave", self.release)
        app.router.add_post("/groups/{group}/send-back", self.send_back)
        app.router.add_get("/messages/{msg_id}", self.by_id)
        app.router.add_get("/messages", self.by_key)
        app.router.add_get("/status", self.status)
        return app

    async def create_topic(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        if body["topic"] in self.topics:
            raise TopicExists(f"{body['topic']} exists")
        self.add_topic(body["topic"], body.get("read_queues", 8), body.get("perm", 6))
        return respond(request, self.topics[body["topic"]], status=201)

    async def get_topic(self, request: web.Request) -> web.Response:
        topic = self._topic(request)
        queues = []
        for qid in range(self.topics[topic]["read_queues"]):
            lo, hi = self.queue_range(topic, qid)
            queues.append({"queue_id": qid, "min_offset": lo, "max_offset": hi})
        return respond(request, {**self.topics[topic], "queues": queues})

    async def delete_topic(self, request: web.Request) -> web.Response:
        topic = self._topic(request)
        del self.topics[topic]
        return respond(request, {"deleted": topic})

    async def send(self, request: web.Request) -> web.Response:
        self.send_requests += 1
        topic = self._topic(request)
        if self.busy_answers > 0:
            self.busy_answers -= 1
            raise Busy("too many appends in flight")
        body = await read_body(request)
        qid = body.get("queue_id", 0)
        fields = ("msg_id", "unique_key", "queue_id", "queue_offset", "commitlog_offset")
        results = []
        for msg in body["messages"]:
            stored = self.store(topic, qid, msg)
            results.append({k: stored[k] for k in fields} | {"status": "SEND_OK"})
        self.arrived.set()
        return respond(request, {"results": results})

    async def pull(self, request: web.Request) -> web.Response:
        topic, qid = self._topic(request), int(request.match_info["qid"])
        offset = int(request.query["offset"])
        limit = int(request.query.get("max", 32))
        wait_ms = int(request.query.get("wait_ms", 0))
        lo, hi = self.queue_range(topic, qid)
        if not lo <= offset <= hi:
            raise OffsetOutOfRange("offset moved", min_offset=lo, max_offset=hi)
        if offset == hi and wait_ms:
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), wait_ms / 1000)
            lo, hi = self.queue_range(topic, qid)
        found = self.queues[topic, qid][offset - lo : offset - lo + limit]
        answer = {"messages": found, "next_offset": offset + len(found)}
        return respond(request, answer | {"min_offset": lo, "max_offset": hi})

    async def commit(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        key = (request.match_info["group"], body["topic"])
        self.offsets.setdefault(key, {}).update(body["offsets"])
        return respond(request, {})

    async def heartbeat(self, request: web.Request) -> web.Response:
        """A group of one: every readable queue of each subscribed topic is granted."""
        body = await read_body(request)
        self.heartbeats.append(body["client_id"])
        assignment = {
            topic: list(range(self.topics[topic]["read_queues"]))
            for topic in body["subscriptions"]
            if topic in self.topics
        }
        return respond(request, {"assignment": assignment, "lease_ms": 20_000})

    async def release(self, request: web.Request) -> web.Response:
        self.released.append(await read_body(request))
        return respond(request, {})

    async def send_back(self, request: web.Request) -> web.Response:
        """Records what was sent back (the fake keeps no retry topic)."""
        body = await read_body(request)
        if self.send_back_failures > 0:
            self.send_back_failures -= 1
            raise Unavailable("send-back refused by the test")
        self.sent_back.append((request.match_info["group"], body))
        results = [{"msg_id": i, "status": "RETRY"} for i in body["msg_ids"]]
        return respond(request, {"results": results})

    async def get_offsets(self, request: web.Request) -> web.Response:
        key = (request.match_info["group"], request.query["topic"])
        return respond(request, {"offsets": self.offsets.get(key, {})})

    async def by_id(self, request: web.Request) -> web.Response:
        wanted = request.match_info["msg_id"]
        for queue in self.queues.values():
            for msg in queue:
                if wanted in (msg["msg_id"], msg["unique_key"]):
                    return respond(request, msg)
        raise MessageNotFound(f"no message {wanted}")

    async def by_key(self, request: web.Request) -> web.Response:
        key, topic = request.query["key"], request.query["topic"]
        found = [
            m
            for (t, _), queue in self.queues.items()
            if t == topic
            for m in queue
            if key in m["keys"]
        ]
        return respond(request, {"messages": found[::-1]})

    async def status(self, request: web.Request) -> web.Response:
        return respond(request, {"broker_name": self.name, "role": "master"})

    def _topic(self, request: web.Request) -> str:
        topic = request.match_info["topic"]
        if topic not in self.topics:
            raise TopicNotFound(f"no topic {topic}")
        return topic


@dataclass
class Cluster:
    """A real NameServer plus fake brokers registered in it."""

    namesrv: TestServer
    registry: RouteRegistry
    brokers: dict[str, FakeBroker] = field(default_factory=dict)

    @property
    def namesrv_addr(self) -> str:
        return f"127.0.0.1:{self.namesrv.port}"

    async def add_broker(self, name: str, topics: dict[str, int] | None = None) -> FakeBroker:
        broker = FakeBroker(name)
        for topic, queues in (topics or {}).items():
            broker.add_topic(topic, queues)
        broker.server = TestServer(broker.app())
        await broker.server.start_server()
        self.brokers[name] = broker
        self.heartbeat()
        return broker

    def heartbeat(self) -> None:
        """Every broker re-registers, as its periodic heartbeat would."""
        now = int(time.time() * 1000)
        for broker in self.brokers.values():
            self.registry.register(broker.registration(), now)


async def wait_until(predicate, timeout_s: float = 5.0, what: str = "condition") -> None:
    """Await `predicate()` becoming true, polling, failing after `timeout_s`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)
