"""Messages: send a batch, pull a queue (long poll), find by time, id or key."""

from __future__ import annotations

from aiohttp import web

from dledgermq import bridge
from dledgermq.actors.reput import Pull, PullRequest
from dledgermq.api.context import (
    BROKER,
    MAX_WAIT_PARAM_MS,
    READ_TIMEOUT_S,
    admitted,
    append,
    check_admissible,
    read,
    topic_of,
)
from dledgermq.api.convert import message_to_wire, send_result_to_wire
from dledgermq.api.params import check_known, int_param, path_int, str_param
from dledgermq.broker.filter import parse_tag_expression
from dledgermq.broker.produce import build_drafts, check_queue_id, topic_for_send
from dledgermq.broker.queries import GetMessage, OffsetByTime, QueryByKey
from dledgermq.broker.state import topic_create_draft
from dledgermq.broker.store_reads import PullResult
from dledgermq.broker.topics import check_topic_name
from dledgermq.errors import BadRequest
from dledgermq.wire import read_body, respond, wants_msgpack

MAX_QUERY_MESSAGES = 64


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
        now_ms=ctx.clock.wall_ms(),
        born_host=f"{request.remote or '127.0.0.1'}:0",
        delay_levels=ctx.delay_levels,
    )
    if create:  # One entry: the topic exists before its first message is dispatched.
        drafts.insert(0, topic_create_draft(config, ctx.clock.wall_ms()))
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
        topic, queue_id, offset, max_messages, tags, ctx.clock.monotonic_ms() + wait_ms
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
    offset = await read(ctx, OffsetByTime(topic, queue_id, timestamp))
    return respond(request, {"offset": offset})


async def get_message(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    msg_id = request.match_info["msg_id"]
    if not 1 <= len(msg_id) <= 128:
        raise BadRequest("message id must be 1..128 characters")
    stored = await read(ctx, GetMessage(msg_id))
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
    found = await read(ctx, QueryByKey(topic, key, begin, end, limit))
    binary = wants_msgpack(request)
    return respond(request, {"messages": [message_to_wire(m, binary=binary) for m in found]})
