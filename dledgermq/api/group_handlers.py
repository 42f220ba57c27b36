"""Consumer groups: committed offsets, progress, and membership (heartbeat, release, leave,
members) with the rebalancer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pykka
from aiohttp import web

from dledgermq import bridge
from dledgermq.actors.rebalancer import GroupView, Heartbeat, Leave, Release
from dledgermq.api.context import (
    BROKER,
    READ_TIMEOUT_S,
    BrokerContext,
    admitted,
    append,
    check_fields,
    existing_topic,
    not_leader,
    read,
)
from dledgermq.api.lock_fields import orderly_fields
from dledgermq.api.params import check_known, str_param, text_field
from dledgermq.bridge import ReplyTo
from dledgermq.broker.filter import parse_tag_expression
from dledgermq.broker.produce import MAX_INT64
from dledgermq.broker.queries import GroupOffsets, GroupProgress, QueueRanges
from dledgermq.broker.rebalance import AVERAGE
from dledgermq.broker.state import offset_commit_draft
from dledgermq.broker.topics import MAX_QUEUES, check_group_name, check_topic_name
from dledgermq.errors import BadRequest, OffsetOutOfRange
from dledgermq.wire import read_body, respond

MAX_SUBSCRIPTIONS = 1_024  # Topics one consumer subscribes to in one heartbeat.


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
    ranges = await read(ctx, QueueRanges(topic, tuple(offsets)))
    for queue_id, offset in offsets.items():
        low, high = ranges[queue_id]
        if offset > high:
            raise OffsetOutOfRange(
                f"offset {offset} is past the end {high} of {topic}/{queue_id}",
                min_offset=low,
                max_offset=high,
            )
    with admitted(ctx):
        await append(ctx, [offset_commit_draft(group, topic, offsets, ctx.clock.wall_ms())])
    return respond(request, {})


async def get_offsets(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    check_known(request, {"topic"})
    group = check_group_name(request.match_info["group"])
    topic = check_topic_name(str_param(request, "topic"))

    committed = await read(ctx, GroupOffsets(group, topic))
    return respond(request, {"offsets": {str(q): o for q, o in committed.items()}})


async def get_progress(request: web.Request) -> web.Response:
    """Per read queue of the topic here: range, committed offset, lag, when the last
    consumed message was stored, and (from the writer) the member holding its lease."""
    ctx = request.app[BROKER]
    check_known(request, {"topic"})
    group = check_group_name(request.match_info["group"])
    topic = check_topic_name(str_param(request, "topic"))
    rows = await read(ctx, GroupProgress(group, topic))
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


def _rebalancer(ctx: BrokerContext) -> pykka.ActorRef[Any]:
    """The writer's RebalancerActor: one place per broker group decides who owns what."""
    if not ctx.role.value.writable:
        raise not_leader(ctx)
    assert ctx.rebalancer is not None, "every broker runs a rebalancer"
    return ctx.rebalancer


def _client_id(body: dict[str, Any]) -> str:
    return text_field(body.get("client_id"), "client_id")


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
    check_fields(body, {"client_id", "zone", "subscriptions", "strategy", "orderly", "held"})
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
    check_fields(body, {"client_id", "topic", "queue_ids"})
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
    check_fields(body, {"client_id"})
    client_id = _client_id(body)
    left = await _ask_rebalancer(ctx, lambda reply: Leave(group, client_id, reply))
    return respond(request, {"left": left})


async def group_members(request: web.Request) -> web.Response:
    """The group's live members, its strategy and who holds each queue's lease."""
    ctx = request.app[BROKER]
    group = check_group_name(request.match_info["group"])
    view = await _ask_rebalancer(ctx, lambda reply: GroupView(group, reply))
    return respond(request, view)
