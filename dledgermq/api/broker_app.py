"""The broker's client HTTP API (docs/API.md, served as /openapi.json).

Handlers validate and parse on the loop thread, then *tell* the owning actor through the
bridge and await its reply with a timeout. Nothing here blocks the loop or touches the
store directly; the topic table is read from what the ReputActor publishes.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pykka
from aiohttp import web

from dledgermq import bridge
from dledgermq.actors.published import Published, ReplicaRole
from dledgermq.actors.raft_node import RaftStatus, Status, TransferLeadership
from dledgermq.actors.rebalancer import GroupView, Heartbeat, Leave, Release
from dledgermq.actors.repair import RepairStats
from dledgermq.actors.reput import Pull, PullRequest, Read, ReputPublished
from dledgermq.actors.ticker import monotonic_ms
from dledgermq.api.convert import message_to_wire, send_result_to_wire
from dledgermq.api.lock_fields import orderly_fields
from dledgermq.api.openapi import build_openapi
from dledgermq.api.params import check_known, int_param, path_int, str_param, text_field
from dledgermq.bridge import ReplyTo
from dledgermq.broker.dispatch import DispatchedMessage, Dispatcher, PullResult
from dledgermq.broker.filter import parse_tag_expression
from dledgermq.broker.produce import (
    MAX_INT64,
    ProduceLimits,
    SendPolicy,
    build_drafts,
    check_queue_id,
    topic_for_send,
)
from dledgermq.broker.progress import group_progress
from dledgermq.broker.rebalance import AVERAGE
from dledgermq.broker.retry import DEFAULT_LEVELS, DelayLevels
from dledgermq.broker.state import (
    broker_perm_draft,
    offset_commit_draft,
    topic_create_draft,
    topic_delete_draft,
    topic_put_draft,
)
from dledgermq.broker.topics import (
    MAX_QUEUES,
    PERM_READ,
    PERM_READ_WRITE,
    PERM_WRITE,
    SYSTEM_PREFIX,
    TopicConfig,
    check_client_topic,
    check_group_name,
    check_topic_name,
    make_topic_config,
)
from dledgermq.config import LimitsConfig, TransactionConfig
from dledgermq.errors import (
    BadRequest,
    Busy,
    NotLeader,
    OffsetOutOfRange,
    TopicExists,
    TopicNotFound,
)
from dledgermq.replication.master_slave import HAStatus
from dledgermq.store.record import MessageDraft
from dledgermq.wire import (
    BODY_READ_TIMEOUT_S,
    error_middleware,
    read_body,
    respond,
    wants_msgpack,
)

READ_TIMEOUT_S = 10.0
MAX_QUERY_MESSAGES = 64
MAX_SUBSCRIPTIONS = 1_024  # Topics one consumer subscribes to in one heartbeat.
MAX_WAIT_PARAM_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class BrokerIdentity:
    cluster: str
    broker_name: str
    addr: str
    node_id: str
    zone: str | None = None  # Registered with the NameServer; zone-aware rebalancing.


# Hands one entry (a producer batch) to whoever appends in this mode, with the producer's
# reply: the CommitLogWriter (standalone) or the Raft node (leader of a Raft group).
SubmitEntry = Callable[[tuple[MessageDraft, ...], ReplyTo[Any]], None]


@dataclass(slots=True)
class BrokerContext:
    identity: BrokerIdentity
    writer: pykka.ActorRef[Any]
    reput: pykka.ActorRef[Any]
    published: ReputPublished
    limits: LimitsConfig
    flush: str
    submit: SubmitEntry
    role: Published[ReplicaRole]
    raft: pykka.ActorRef[Any] | None = None
    raft_ids: dict[str, int] = field(default_factory=dict)  # Node id -> Raft id (the group).
    ha_status: Published[HAStatus] | None = None  # master/slave groups: replication state.
    repair: Published[RepairStats] | None = None  # Raft groups: damaged records and repairs.
    rebalancer: pykka.ActorRef[Any] | None = None  # Consumer-group membership and leases.
    delay_levels: DelayLevels = DEFAULT_LEVELS
    transaction_checker: pykka.ActorRef[Any] | None = None  # Check-backs (the writer's).
    transactions: TransactionConfig = field(default_factory=TransactionConfig)
    # How registering with the NameServers goes (node.py, which registers, sets it).
    registration_status: Callable[[], dict[str, Any]] | None = None
    appends_in_flight: int = 0
    round_robin: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def produce_limits(self) -> ProduceLimits:
        return ProduceLimits(
            self.limits.max_message_bytes,
            self.limits.max_batch_messages,
            self.limits.max_batch_bytes,
        )

    @property
    def send_policy(self) -> SendPolicy:
        limits = self.limits
        return SendPolicy(
            self.identity.broker_name,
            self.published.broker_perm.value,
            limits.auto_create_topic_queues if limits.auto_create_topic else None,
        )


BROKER = web.AppKey("broker", BrokerContext)


def make_broker_app(context: BrokerContext) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=context.limits.max_batch_bytes * 2 + 1024 * 1024,
    )
    app[BROKER] = context
    app[BODY_READ_TIMEOUT_S] = context.limits.body_read_timeout_ms / 1000
    app.add_routes(
        [
            web.get("/status", status),
            web.get("/openapi.json", openapi),
            web.get("/topics", list_topics),
            web.post("/topics", create_topic),
            web.get("/topics/{topic}", get_topic),
            web.put("/topics/{topic}", update_topic),
            web.delete("/topics/{topic}", delete_topic),
            web.post("/topics/{topic}/messages", send),
            web.get("/topics/{topic}/queues/{queue_id}/messages", pull),
            web.get("/topics/{topic}/queues/{queue_id}/offset-by-time", offset_by_time),
            web.post("/groups/{group}/offsets", commit_offsets),
            web.get("/groups/{group}/offsets", get_offsets),
            web.get("/groups/{group}/progress", get_progress),
            web.get("/messages/{msg_id}", get_message),
            web.get("/messages", query_messages),
            web.post("/groups/{group}/heartbeat", group_heartbeat),
            web.post("/groups/{group}/release", group_release),
            web.post("/groups/{group}/leave", group_leave),
            web.get("/groups/{group}/members", group_members),
            web.post("/admin/leader-transfer", leader_transfer),
            web.get("/admin/write-permission", get_write_permission),
            web.put("/admin/write-permission", put_write_permission),
        ]
    )
    from dledgermq.api.retry_handlers import add_retry_routes  # It builds on this module.

    add_retry_routes(app)
    from dledgermq.api.transaction_handlers import add_transaction_routes

    add_transaction_routes(app)
    return app


# -- plumbing ---------------------------------------------------------------------------------


def not_leader(ctx: BrokerContext) -> NotLeader:
    """NOT_LEADER naming the group's writer as far as this node knows (None: electing)."""
    role = ctx.role.value
    return NotLeader(
        f"node {ctx.identity.node_id} is a {role.role} of {ctx.identity.broker_name}; "
        f"the leader is {role.leader_node or 'being elected'}",
        leader=role.leader_node,
        leader_addr=role.leader_addr,
        term=role.term,
    )


def check_admissible(ctx: BrokerContext) -> None:
    """The cheap refusals of an append, to run before its body is read: NOT_LEADER on a
    node that cannot take writes, 503 BUSY when `appends_in_flight_max` are in flight."""
    if not ctx.role.value.writable:
        raise not_leader(ctx)
    if ctx.appends_in_flight >= ctx.limits.appends_in_flight_max:
        raise Busy(f"{ctx.appends_in_flight} appends in flight; retry later")


@contextlib.contextmanager
def admitted(ctx: BrokerContext) -> Iterator[None]:
    """Admission control for appends: at most `appends_in_flight_max` entries are being
    stored at once (`check_admissible` refusals beyond).

    Take it only after the request body is read and checked (probe D9): a slot held
    across a body read lets clients that stall their bodies refuse every send. Bodies
    being read are bounded by the connection cap and `body_read_timeout_ms` instead;
    call `check_admissible` before the read to refuse cheaply."""
    check_admissible(ctx)  # Again: the role or the load may have changed meanwhile.
    ctx.appends_in_flight += 1
    try:
        yield
    finally:
        ctx.appends_in_flight -= 1


async def append(ctx: BrokerContext, drafts: list[MessageDraft]) -> tuple[DispatchedMessage, ...]:
    """Append one entry and wait until it is durable and dispatched (call it admitted).

    Raises:
        TopicNotFound: the topic was deleted (or its queue removed) between validation and
            dispatch; the entry is in the log but can never be consumed.
    """
    entry = tuple(drafts)
    try:
        dispatched: tuple[DispatchedMessage, ...] = await bridge.call(
            lambda reply: ctx.submit(entry, reply),
            timeout_s=ctx.limits.send_timeout_ms / 1000,
            what="append",
        )
    except NotLeader:
        raise not_leader(ctx) from None  # with the leader's address, not its Raft id
    user_messages = sum(not d.topic.startswith(SYSTEM_PREFIX) for d in drafts)
    if len(dispatched) != user_messages:
        raise TopicNotFound(
            f"topic {drafts[0].topic!r} or its queue {drafts[0].queue_id} was removed "
            "while the message was being stored; it will not be delivered",
            topic=drafts[0].topic,
        )
    return dispatched


async def read(ctx: BrokerContext, query: Any) -> Any:
    return await bridge.call(
        lambda reply: ctx.reput.tell(Read(query, reply)), timeout_s=READ_TIMEOUT_S, what="read"
    )


def topic_of(request: web.Request) -> str:
    return check_topic_name(request.match_info["topic"])


def existing_topic(ctx: BrokerContext, topic: str) -> TopicConfig:
    config = ctx.published.topics.value.get(topic)
    if config is None:
        raise TopicNotFound(f"topic {topic!r} does not exist on this broker", topic=topic)
    return config


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- status and topics --------------------------------------------------------------------------


async def status(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    identity = ctx.identity
    role = ctx.role.value
    raft: dict[str, Any] | None = None
    if ctx.raft is not None:
        node = ctx.raft
        state: RaftStatus = await bridge.call(
            lambda reply: node.tell(Status(reply)), timeout_s=READ_TIMEOUT_S, what="raft status"
        )
        raft = {
            "raft_id": state.node_id,
            "commit_index": state.commit_index,
            "last_index": state.last_index,
            "persisted_index": state.persisted_index,
            "pending_proposals": state.pending_proposals,
            "match_index": {str(peer): index for peer, index in state.match_index.items()},
        }
    # Committed records dispatch passed over (broker/unreadable.py): never fatal, shown.
    unreadable = await read(ctx, lambda dispatcher: dispatcher.unreadable.to_wire())
    # Master/slave: a master's slaves (acknowledged offset, lag), a slave's master.
    ha = ctx.ha_status.value.to_wire(ctx.published.marks.written.value) if ctx.ha_status else None
    return respond(
        request,
        {
            "cluster": identity.cluster,
            "broker_name": identity.broker_name,
            "broker_id": role.broker_id,
            "node_id": identity.node_id,
            "addr": identity.addr,
            "role": role.role,
            "mode": role.mode,
            "term": role.term,
            "leader": role.leader_node,
            "leader_addr": role.leader_addr,
            "raft": raft,
            "ha": ha,
            "repair": ctx.repair.value.to_wire() if ctx.repair is not None else None,
            "flush": ctx.flush,
            "write_offset": ctx.published.marks.written.value,
            "flushed_offset": ctx.published.marks.durable,
            "dispatched_offset": ctx.published.marks.dispatched.value,
            "confirm_offset": ctx.published.marks.dispatched.value,
            "topics": len(ctx.published.topics.value),
            "appends_in_flight": ctx.appends_in_flight,
            "unreadable_records": unreadable,
            "registration": ctx.registration_status() if ctx.registration_status else None,
            "zone": identity.zone,
            "perm": ctx.published.broker_perm.value,
            "writable": bool(ctx.published.broker_perm.value & PERM_WRITE),
        },
    )


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_openapi())


async def list_topics(request: web.Request) -> web.Response:
    topics = request.app[BROKER].published.topics.value
    return respond(request, {"topics": [c.to_wire() for c in sorted_topics(topics)]})


def sorted_topics(topics: dict[str, TopicConfig]) -> list[TopicConfig]:
    return [topics[name] for name in sorted(topics)]


async def create_topic(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    body = await read_body(request)
    topic = check_client_topic(body.get("topic"))
    config = make_topic_config(topic, body, default_queues=ctx.limits.default_queues)
    if topic in ctx.published.topics.value:
        raise TopicExists(f"topic {topic!r} already exists", topic=topic)
    with admitted(ctx):
        await append(ctx, [topic_put_draft(config, now_ms())])
    return respond(request, config.to_wire(), status=201)


async def update_topic(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    topic = topic_of(request)
    current = existing_topic(ctx, topic)
    body = await read_body(request)
    if body.get("topic", topic) != topic:
        raise BadRequest("the topic name cannot be changed")
    config = make_topic_config(topic, body, default_queues=ctx.limits.default_queues, base=current)
    with admitted(ctx):
        await append(ctx, [topic_put_draft(config, now_ms())])
    return respond(request, config.to_wire())


async def delete_topic(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    topic = topic_of(request)
    existing_topic(ctx, topic)
    with admitted(ctx):
        await append(ctx, [topic_delete_draft(topic, now_ms())])
    return respond(request, {"deleted": topic})


async def get_topic(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    config = existing_topic(ctx, topic_of(request))

    def ranges(dispatcher: Dispatcher) -> list[dict[str, int]]:
        queues = []
        for queue_id in range(config.queue_count):
            low, high = dispatcher.queue_range(config.topic, queue_id)
            queues.append({"queue_id": queue_id, "min_offset": low, "max_offset": high})
        return queues

    return respond(request, {**config.to_wire(), "queues": await read(ctx, ranges)})


# -- produce and consume ------------------------------------------------------------------------


async def send(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    topic = topic_of(request)
    # Refused before the body is read: not the writer, busy, write-disabled, unknown topic.
    check_admissible(ctx)
    config, create = topic_for_send(ctx.published.topics.value, topic, ctx.send_policy)
    body = await read_body(request)  # Without a slot: a stalled body holds none (D9).
    unknown = sorted(set(body) - {"messages", "queue_id"})
    if unknown:
        raise BadRequest(f"unknown field(s): {unknown}")
    queue_id = body.get("queue_id")
    if queue_id is None:
        queue_id = next(ctx.round_robin) % config.write_queues
    queue_id = check_queue_id(config, queue_id)
    drafts = build_drafts(
        config,
        queue_id,
        body.get("messages"),
        limits=ctx.produce_limits,
        now_ms=now_ms(),
        born_host=f"{request.remote or '127.0.0.1'}:0",
        delay_levels=ctx.delay_levels,
    )
    if create:  # One entry: the topic exists before its first message is dispatched.
        drafts.insert(0, topic_create_draft(config, now_ms()))
    with admitted(ctx):
        results = await append(ctx, drafts)
    return respond(request, {"results": [send_result_to_wire(m) for m in results]})


async def pull(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    check_known(request, {"offset", "max", "tags", "wait_ms"})
    topic = topic_of(request)
    queue_id = path_int(request, "queue_id")
    offset = int_param(request, "offset", None, low=0, high=2**62)
    max_messages = int_param(request, "max", 32, low=1, high=ctx.limits.max_pull_messages)
    # A client cannot know this broker's cap, so a longer wait is held for the cap.
    wait_ms = min(
        int_param(request, "wait_ms", 0, low=0, high=MAX_WAIT_PARAM_MS), ctx.limits.max_long_poll_ms
    )
    tags = parse_tag_expression(request.query.get("tags"))
    pull_request = PullRequest(
        topic, queue_id, offset, max_messages, tags, monotonic_ms() + wait_ms
    )
    result: PullResult = await bridge.call(
        lambda reply: ctx.reput.tell(Pull(pull_request, reply)),
        timeout_s=wait_ms / 1000 + READ_TIMEOUT_S,
        what="pull",
    )
    binary = wants_msgpack(request)
    return respond(
        request,
        {
            "messages": [message_to_wire(m, binary=binary) for m in result.messages],
            "next_offset": result.next_offset,
            "min_offset": result.min_offset,
            "max_offset": result.max_offset,
        },
    )


async def offset_by_time(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    check_known(request, {"timestamp_ms"})
    topic = topic_of(request)
    queue_id = path_int(request, "queue_id")
    timestamp = int_param(request, "timestamp_ms", None, low=0, high=2**62)
    offset = await read(ctx, lambda d: d.offset_by_time(topic, queue_id, timestamp))
    return respond(request, {"offset": offset})


# -- consumer offsets ---------------------------------------------------------------------------


async def commit_offsets(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    group = check_group_name(request.match_info["group"])
    body = await read_body(request)
    topic = check_topic_name(body.get("topic"))
    config = existing_topic(ctx, topic)
    raw = body.get("offsets")
    if not isinstance(raw, dict) or not raw:
        raise BadRequest("`offsets` must be a non-empty object of queue id -> offset")
    offsets: dict[int, int] = {}
    for queue, offset in raw.items():
        try:
            queue_id = int(queue)
        except (TypeError, ValueError):
            raise BadRequest(f"queue id {queue!r} is not an integer") from None
        if not 0 <= queue_id < config.queue_count:
            raise BadRequest(f"queue {queue_id} does not exist in {topic!r}")
        if type(offset) is not int or not 0 <= offset < MAX_INT64:
            raise BadRequest(f"offset for queue {queue_id} must be an integer in 0..2^63-1")
        offsets[queue_id] = offset
    # Not past a queue's end (the lag would go negative and the messages sent next would
    # be skipped); before its start is fine: the next pull answers OFFSET_MOVED.
    ranges = await read(ctx, lambda d: {q: d.queue_range(topic, q) for q in offsets})
    for queue_id, offset in offsets.items():
        low, high = ranges[queue_id]
        if offset > high:
            raise OffsetOutOfRange(
                f"offset {offset} is past the end {high} of {topic}/{queue_id}",
                min_offset=low,
                max_offset=high,
            )
    with admitted(ctx):
        await append(ctx, [offset_commit_draft(group, topic, offsets, now_ms())])
    return respond(request, {})


async def get_offsets(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    check_known(request, {"topic"})
    group = check_group_name(request.match_info["group"])
    topic = check_topic_name(str_param(request, "topic"))

    def offsets(dispatcher: Dispatcher) -> dict[str, int]:
        committed = dispatcher.state.offsets.get(group, {}).get(topic, {})
        return {str(q): o for q, o in sorted(committed.items())}

    return respond(request, {"offsets": await read(ctx, offsets)})


async def get_progress(request: web.Request) -> web.Response:
    """Per read queue of the topic here: range, committed offset, lag, when the last
    consumed message was stored, and (from the writer) the member holding its lease."""
    ctx = request.app[BROKER]
    check_known(request, {"topic"})
    group = check_group_name(request.match_info["group"])
    topic = check_topic_name(str_param(request, "topic"))
    rows = await read(ctx, lambda d: group_progress(d, group, topic))
    owners: dict[str, str | None] = {}
    if ctx.role.value.writable:
        view = await _ask_rebalancer(ctx, lambda reply: GroupView(group, reply))
        owners = view["owners"].get(topic, {})
    return respond(
        request,
        {
            "queues": [row.to_wire() | {"owner": owners.get(str(row.queue_id))} for row in rows],
            "owners_known": ctx.role.value.writable,
        },
    )


# -- queries --------------------------------------------------------------------------------------


async def get_message(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    msg_id = request.match_info["msg_id"]
    if not 1 <= len(msg_id) <= 128:
        raise BadRequest("message id must be 1..128 characters")
    stored = await read(ctx, lambda d: d.get_message(msg_id))
    return respond(request, message_to_wire(stored, binary=wants_msgpack(request)))


async def query_messages(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    check_known(request, {"topic", "key", "begin_ms", "end_ms", "max"})
    topic = request.query.get("topic")
    if topic is not None:
        check_topic_name(topic)
    key = str_param(request, "key")
    begin = int_param(request, "begin_ms", 0, low=0, high=2**62)
    end = int_param(request, "end_ms", 2**62, low=0, high=2**62)
    if begin > end:
        raise BadRequest("begin_ms must not be after end_ms")
    limit = int_param(request, "max", 32, low=1, high=MAX_QUERY_MESSAGES)
    found = await read(ctx, lambda d: d.query_by_key(topic, key, begin, end, limit))
    binary = wants_msgpack(request)
    return respond(request, {"messages": [message_to_wire(m, binary=binary) for m in found]})


# -- admin --------------------------------------------------------------------------------------


async def leader_transfer(request: web.Request) -> web.Response:
    """Start handing leadership of this Raft group to node `to` (answers once started;
    the target takes over once it has caught up, within an election timeout)."""
    ctx = request.app[BROKER]
    body = await read_body(request)
    unknown = sorted(set(body) - {"to"})
    if unknown:
        raise BadRequest(f"unknown field(s): {unknown}")
    to = body.get("to")
    if ctx.raft is None:
        raise BadRequest(
            f"{ctx.identity.broker_name} is not a Raft group", mode=ctx.role.value.mode
        )
    if not isinstance(to, str) or to not in ctx.raft_ids:
        raise BadRequest(f"'to' must be a node of the group: {sorted(ctx.raft_ids)}")
    node, target = ctx.raft, ctx.raft_ids[to]
    if to == ctx.identity.node_id and ctx.role.value.writable:
        return respond(request, {"leader": to, "started": False})

    def start(reply: ReplyTo[bool]) -> None:
        node.tell(TransferLeadership(target, reply))

    try:
        await bridge.call(
            start,
            timeout_s=READ_TIMEOUT_S,
            what="leader transfer",
        )
    except NotLeader:
        raise not_leader(ctx) from None
    return respond(request, {"leader": ctx.identity.node_id, "to": to, "started": True})


def _write_permission(ctx: BrokerContext) -> dict[str, Any]:
    perm = ctx.published.broker_perm.value
    writable = bool(perm & PERM_WRITE)
    return {"broker_name": ctx.identity.broker_name, "perm": perm, "writable": writable}


async def get_write_permission(request: web.Request) -> web.Response:
    return respond(request, _write_permission(request.app[BROKER]))


async def put_write_permission(request: web.Request) -> web.Response:
    """Disable (maintenance) or enable sends to this broker group; reads go on. Stored
    through the log, so every replica and any later leader keep it (DESIGN.md §5 rule 5)."""
    ctx = request.app[BROKER]
    body = await read_body(request)
    _check_fields(body, {"writable"})
    writable = body.get("writable")
    if type(writable) is not bool:
        raise BadRequest("`writable` must be true or false", field="writable")
    perm = PERM_READ_WRITE if writable else PERM_READ
    with admitted(ctx):  # Written even when unchanged: a new leader may lag its own log.
        await append(ctx, [broker_perm_draft(perm, now_ms())])
    return respond(request, _write_permission(ctx))


# -- consumer groups (clustering mode): membership, queue assignment, leases ---------------


def _rebalancer(ctx: BrokerContext) -> pykka.ActorRef[Any]:
    """The writer's RebalancerActor: one place per broker group decides who owns what."""
    if not ctx.role.value.writable:
        raise not_leader(ctx)
    assert ctx.rebalancer is not None, "every broker runs a rebalancer"
    return ctx.rebalancer


def _client_id(body: dict[str, Any]) -> str:
    return text_field(body.get("client_id"), "client_id")


def _check_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s): {unknown}")


async def _ask_rebalancer(ctx: BrokerContext, make: Callable[[ReplyTo[Any]], object]) -> Any:
    rebalancer = _rebalancer(ctx)
    return await bridge.call(
        lambda reply: rebalancer.tell(make(reply)), timeout_s=READ_TIMEOUT_S, what="rebalance"
    )


async def group_heartbeat(request: web.Request) -> web.Response:
    """A consumer is alive and subscribes to these topics; answers the queues of this
    broker group it may consume now (held by a lease that heartbeats renew)."""
    ctx = request.app[BROKER]
    group = check_group_name(request.match_info["group"])
    body = await read_body(request)
    _check_fields(body, {"client_id", "zone", "subscriptions", "strategy", "orderly", "held"})
    client_id = _client_id(body)
    orderly, held = orderly_fields(body)
    zone = body.get("zone")
    if zone is not None:
        zone = text_field(zone, "zone", max_length=64)
    subscriptions = body.get("subscriptions")
    if (
        not isinstance(subscriptions, dict)
        or len(subscriptions) > MAX_SUBSCRIPTIONS
        or not all(isinstance(e, str) for e in subscriptions.values())
    ):
        raise BadRequest(
            f"`subscriptions` must be an object of at most {MAX_SUBSCRIPTIONS} "
            "topic -> tag expression"
        )
    for topic, expression in subscriptions.items():
        check_topic_name(topic, allow_system=True)  # Retry topics are subscribed too.
        parse_tag_expression(expression)
    strategy = body.get("strategy", AVERAGE)
    if not isinstance(strategy, str):
        raise BadRequest("`strategy` must be a string")
    answer = await _ask_rebalancer(
        ctx,
        lambda reply: Heartbeat(
            group,
            client_id,
            zone,
            subscriptions,
            strategy,
            reply,
            ctx.identity.zone,
            term=ctx.role.value.term,
            orderly=orderly,
            held=held,
        ),
    )
    return respond(request, answer)


async def group_release(request: web.Request) -> web.Response:
    """The consumer stopped pulling these queues and committed their offsets."""
    ctx = request.app[BROKER]
    group = check_group_name(request.match_info["group"])
    body = await read_body(request)
    _check_fields(body, {"client_id", "topic", "queue_ids"})
    client_id = _client_id(body)
    topic = check_topic_name(body.get("topic"))
    queue_ids = body.get("queue_ids")
    if not isinstance(queue_ids, list) or not all(
        type(q) is int and 0 <= q < MAX_QUEUES for q in queue_ids
    ):
        raise BadRequest(f"`queue_ids` must be a list of queue ids in 0..{MAX_QUEUES - 1}")
    released = await _ask_rebalancer(
        ctx, lambda reply: Release(group, client_id, topic, tuple(queue_ids), reply)
    )
    return respond(request, {"released": released})


async def group_leave(request: web.Request) -> web.Response:
    """The consumer shut down: forget it and free its leases at once."""
    ctx = request.app[BROKER]
    group = check_group_name(request.match_info["group"])
    body = await read_body(request)
    _check_fields(body, {"client_id"})
    client_id = _client_id(body)
    left = await _ask_rebalancer(ctx, lambda reply: Leave(group, client_id, reply))
    return respond(request, {"left": left})


async def group_members(request: web.Request) -> web.Response:
    """The group's live members, its strategy and who holds each queue's lease."""
    ctx = request.app[BROKER]
    group = check_group_name(request.match_info["group"])
    view = await _ask_rebalancer(ctx, lambda reply: GroupView(group, reply))
    return respond(request, view)
