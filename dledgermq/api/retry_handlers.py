"""HTTP handlers for retries and dead letters: send-back, DLQ listing and resend.

A consumer that failed messages sends them back to the writer of the broker group it
pulled them from; the writer reads the records, decides with `broker/send_back.py` and
appends one entry (retry copies wait in the delay schedule; dead letters go straight to
the group's DLQ). Dead letters are listed from any node (reads) and resent by the writer.
Everything written goes through the log, so a failover loses no decision.

Must not: keep state beyond one request (a lock keeps two "resend all" of one broker
from resending the same letters concurrently).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from dledgermq.api.context import BROKER, BrokerContext, admitted, append, check_admissible, read
from dledgermq.api.convert import message_to_wire
from dledgermq.api.params import check_known, int_param
from dledgermq.broker.message_id import decode_msg_id
from dledgermq.broker.queries import DeadLetters, Letters, UnsentDeadLetters
from dledgermq.broker.retry import (
    MAX_RECONSUME_TIMES_DEFAULT,
    MAX_RECONSUME_TIMES_LIMIT,
    RetryLater,
    dlq_topic,
    retry_topic,
)
from dledgermq.broker.send_back import (
    Letter,
    check_entry_size,
    plan_resend,
    plan_send_back,
    record_bytes,
)
from dledgermq.broker.topics import PERM_WRITE, check_group_name
from dledgermq.errors import BadRequest, NoPermission
from dledgermq.wire import read_body, respond, wants_msgpack

RESEND_LOCK = web.AppKey("dlq_resend_lock", asyncio.Lock)
DLQ_PAGE_DEFAULT = 32


def add_retry_routes(app: web.Application) -> None:
    """Register the routes of this module on the broker app."""
    app[RESEND_LOCK] = asyncio.Lock()
    app.add_routes(
        [
            web.post("/groups/{group}/send-back", send_back),
            web.get("/groups/{group}/dlq", list_dead_letters),
            web.post("/groups/{group}/dlq/resend", resend_dead_letters),
        ]
    )


def _group(request: web.Request) -> str:
    """The group, checked to have valid retry and dead-letter topic names."""
    group = check_group_name(request.match_info["group"])
    retry_topic(group)
    dlq_topic(group)
    return group


def _check_writable(ctx: BrokerContext) -> None:
    """A write-disabled broker group (maintenance) takes no send-back or resend either
    (RocketMQ answers NO_PERMISSION); the consumer then retries locally."""
    if not ctx.published.broker_perm.value & PERM_WRITE:
        raise NoPermission(
            f"broker group {ctx.identity.broker_name!r} is write-disabled (maintenance)",
            broker_name=ctx.identity.broker_name,
            broker_writable=False,
        )


def _check_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s): {unknown}; allowed: {sorted(allowed)}")


def _msg_ids(body: dict[str, Any], limit: int) -> list[str]:
    msg_ids = body.get("msg_ids")
    if not isinstance(msg_ids, list) or not 1 <= len(msg_ids) <= limit:
        raise BadRequest(f"`msg_ids` must be a list of 1..{limit} message ids")
    for msg_id in msg_ids:
        if not isinstance(msg_id, str) or decode_msg_id(msg_id) is None:
            raise BadRequest(
                f"{msg_id!r} is not a message id (32 hex digits, as a pull returns it)"
            )
    if len(set(msg_ids)) != len(msg_ids):
        raise BadRequest("`msg_ids` names a message twice")
    return msg_ids


# -- send-back --------------------------------------------------------------------------------


async def send_back(request: web.Request) -> web.Response:
    """Messages the group failed to consume: retried later through its retry topic, or,
    after `max_reconsume_times` retries, moved to its dead-letter topic."""
    ctx = request.app[BROKER]
    group = _group(request)
    check_admissible(ctx)  # The cheap refusals, then the body, then a slot (probe D9).
    _check_writable(ctx)
    body = await read_body(request)
    with admitted(ctx):
        _check_fields(body, {"msg_ids", "max_reconsume_times", "dead_letter", "reconsume_times"})
        msg_ids = _msg_ids(body, ctx.limits.max_batch_messages)
        max_times = _count_field(body, "max_reconsume_times", MAX_RECONSUME_TIMES_DEFAULT)
        dead_letter_times = _dead_letter_times(body)
        letters = await read(ctx, Letters(tuple(msg_ids)))
        plan = plan_send_back(
            letters,
            group,
            max_reconsume_times=max_times,
            topics=ctx.published.topics.value,
            levels=ctx.delay_levels,
            now_ms=ctx.clock.wall_ms(),
            queue_hint=next(ctx.round_robin),
            dead_letter_times=dead_letter_times,
        )
        check_entry_size(plan.drafts, len(letters), ctx.limits.max_batch_bytes)
        stored = await append(ctx, plan.drafts)
    results = []
    for outcome, message in zip(plan.outcomes, stored, strict=True):
        retried = isinstance(outcome.decision, RetryLater)
        results.append(
            {
                "msg_id": outcome.msg_id,
                "status": "RETRY" if retried else "DLQ",
                "topic": outcome.topic,
                "reconsume_times": outcome.decision.reconsume_times,
                "deliver_at_ms": outcome.deliver_at_ms,
                "dead_letter_id": None if retried else message.msg_id,
            }
        )
    return respond(request, {"results": results})


def _count_field(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    if type(value) is not int or not 0 <= value <= MAX_RECONSUME_TIMES_LIMIT:
        raise BadRequest(
            f"{name} must be within 0..{MAX_RECONSUME_TIMES_LIMIT}, got {value!r}", field=name
        )
    return value


def _dead_letter_times(body: dict[str, Any]) -> int | None:
    """`dead_letter: true` sends straight to the DLQ (an orderly consumer's local retries
    are used up), recording `reconsume_times` (its local count); None: the usual policy."""
    dead_letter = body.get("dead_letter", False)
    if type(dead_letter) is not bool:
        raise BadRequest("`dead_letter` must be true or false", field="dead_letter")
    if not dead_letter:
        if "reconsume_times" in body:
            raise BadRequest("`reconsume_times` goes with `dead_letter: true`")
        return None
    return _count_field(body, "reconsume_times", 0)


# -- dead letters -----------------------------------------------------------------------------


async def list_dead_letters(request: web.Request) -> web.Response:
    """A page of the group's dead letters, oldest first (any node serves it)."""
    ctx = request.app[BROKER]
    check_known(request, {"offset", "max"})
    group = _group(request)
    offset = request.query.get("offset")
    start = None if offset is None else int_param(request, "offset", 0, low=0, high=2**62)
    max_messages = int_param(
        request, "max", DLQ_PAGE_DEFAULT, low=1, high=ctx.limits.max_pull_messages
    )

    page, mark = await read(ctx, DeadLetters(group, start, max_messages))
    binary = wants_msgpack(request)
    return respond(
        request,
        {
            "group": group,
            "topic": dlq_topic(group),
            "messages": [message_to_wire(m, binary=binary) for m in page.messages],
            "next_offset": page.next_offset,
            "min_offset": page.min_offset,
            "max_offset": page.max_offset,
            "resend_offset": mark,
        },
    )


async def resend_dead_letters(request: web.Request) -> web.Response:
    """Resend dead letters to their original topics: the ones named, or (`all`) the next
    ones after the group's resend mark, which moves in the same entry."""
    ctx = request.app[BROKER]
    group = _group(request)
    check_admissible(ctx)  # The cheap refusals, then the body, then a slot (probe D9).
    _check_writable(ctx)
    body = await read_body(request)
    with admitted(ctx):
        _check_fields(body, {"msg_ids", "all", "max"})
        resend_all = body.get("all", False)
        if type(resend_all) is not bool or resend_all == ("msg_ids" in body):
            raise BadRequest('give either `msg_ids` or `"all": true`')
        if resend_all:
            async with request.app[RESEND_LOCK]:
                answer = await _resend_next(ctx, group, _max_field(body, ctx))
        else:
            if "max" in body:
                raise BadRequest("`max` goes with `all`")
            msg_ids = _msg_ids(body, ctx.limits.max_batch_messages)
            letters = await read(ctx, Letters(tuple(msg_ids)))
            answer = await _resend(ctx, group, letters, mark=None)
    return respond(request, answer)


def _max_field(body: dict[str, Any], ctx: BrokerContext) -> int:
    limit = min(ctx.limits.max_pull_messages, ctx.limits.max_batch_messages)
    value = body.get("max", limit)
    if type(value) is not int or not 1 <= value <= limit:
        raise BadRequest(f"`max` must be within 1..{limit}, got {value!r}")
    return value


async def _resend_next(ctx: BrokerContext, group: str, max_messages: int) -> dict[str, Any]:
    """Resend the letters after the group's resend mark (at most `max_messages`, within
    `max_batch_bytes`) and move the mark past them."""
    start, page = await read(ctx, UnsentDeadLetters(group, max_messages))
    letters: list[Letter] = []
    size, next_offset = 0, page.next_offset
    for stored in page.messages:
        size += record_bytes(stored.record)
        if letters and size > ctx.limits.max_batch_bytes:
            next_offset = stored.queue_offset  # The rest go in the next request.
            break
        letters.append(Letter(stored.msg_id, stored.record))
    remaining = page.max_offset - next_offset
    if next_offset == start:  # Nothing after the mark.
        return {"resent": [], "skipped": [], "next_offset": start, "remaining": remaining}
    answer = await _resend(ctx, group, letters, mark=next_offset)
    return {**answer, "next_offset": next_offset, "remaining": remaining}


async def _resend(
    ctx: BrokerContext, group: str, letters: list[Letter], *, mark: int | None
) -> dict[str, Any]:
    plan = plan_resend(
        letters,
        group,
        topics=ctx.published.topics.value,
        queue_hint=next(ctx.round_robin),
        mark=mark,
        now_ms=ctx.clock.wall_ms(),
    )
    check_entry_size(plan.drafts, len(plan.resent), ctx.limits.max_batch_bytes)
    stored = await append(ctx, plan.drafts) if plan.drafts else ()
    resent = [
        {
            "msg_id": msg_id,
            "topic": topic,
            "new_msg_id": message.msg_id,
            "queue_id": message.queue_id,
            "queue_offset": message.queue_offset,
        }
        for (msg_id, topic), message in zip(plan.resent, stored, strict=True)
    ]
    skipped = [
        {"msg_id": s.msg_id, "code": s.error.code, "message": s.error.message} for s in plan.skipped
    ]
    return {"resent": resent, "skipped": skipped}
