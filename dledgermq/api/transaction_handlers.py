"""HTTP handlers for transactional messages: half sends, ends, listing, check-back polls.

A producer sends a half message to the writer of a broker group (stored, invisible), runs
its local transaction and ends it there with commit or rollback, naming the transaction
id *and* the half message's commitlog offset. Producers keep a long poll open per broker
group so the writer's TransactionCheckerActor can ask them about transactions nobody
ended. Outcomes are decided in the log (`broker/transactions.py`), so these handlers only
validate, append and report what the replicated table says.

Must not: keep state beyond one request.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, cast

from aiohttp import web

from dledgermq import bridge
from dledgermq.actors.transaction_checker import CheckRequest, PollChecks
from dledgermq.api.context import (
    BROKER,
    MAX_WAIT_PARAM_MS,
    READ_TIMEOUT_S,
    BrokerContext,
    admitted,
    append,
    check_admissible,
    not_leader,
    read,
    submit,
    topic_of,
)
from dledgermq.api.convert import message_to_wire
from dledgermq.api.params import check_known, int_param, str_param
from dledgermq.broker.message_id import broker_hash, make_msg_id
from dledgermq.broker.produce import build_drafts, check_queue_id, topic_for_send
from dledgermq.broker.queries import FindTransaction, PendingTransactionCount, Transactions
from dledgermq.broker.reserved import CHECK_IMMUNITY_MAX_S, PROPERTY_CHECK_IMMUNITY, parse_decimal
from dledgermq.broker.state import topic_create_draft
from dledgermq.broker.store_reads import StoredMessage
from dledgermq.broker.topics import check_group_name
from dledgermq.broker.transactions import (
    BY_PRODUCER,
    COMMIT,
    OUTCOMES,
    ROLLBACK,
    CheckPolicy,
    EndedTxn,
    HalfTxn,
    Outcome,
    check_end_target,
    check_same_outcome,
    commit_draft,
    end_draft,
    half_draft,
    next_check_ms,
    real_view,
)
from dledgermq.errors import (
    BadRequest,
    Busy,
    MessageNotFound,
    NoPermission,
    NotLeader,
    TopicNotFound,
)
from dledgermq.store.record import MessageDraft, Record
from dledgermq.wire import read_body, respond, wants_msgpack

TRANSACTION_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
UNKNOWN = "unknown"  # An end that decides nothing (the local transaction is still open).
LIST_DEFAULT, LIST_MAX = 100, 1_000
STATES = ("pending", "ended", "all")


def add_transaction_routes(app: web.Application) -> None:
    """Register the routes of this module on the broker app."""
    app.add_routes(
        [
            web.post("/topics/{topic}/transactions", send_half),
            web.post("/transactions/{transaction_id}/end", end_transaction),
            web.get("/transactions", list_transactions),
            web.get("/producers/{group}/checks", poll_checks),
        ]
    )


def _check_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s): {unknown}; allowed: {sorted(allowed)}")


def _immunity(body: dict[str, Any], message: dict[str, Any]) -> int | None:
    """The per-message check immunity (seconds): the field, or RocketMQ's property."""
    value: object = body.get("check_immunity_s")
    properties = message.get("properties")
    raw = properties.get(PROPERTY_CHECK_IMMUNITY) if isinstance(properties, dict) else None
    if value is None and raw is not None:
        value = parse_decimal(raw)
        if value is None:
            raise BadRequest(
                f"property {PROPERTY_CHECK_IMMUNITY} must be ASCII digits, got {raw!r}"
            )
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= CHECK_IMMUNITY_MAX_S:
        raise BadRequest(
            f"check_immunity_s must be an integer within 0..{CHECK_IMMUNITY_MAX_S}, got {value!r}"
        )
    return value


# -- half messages ----------------------------------------------------------------------------


async def send_half(request: web.Request) -> web.Response:
    """Store a half message: durable like any message, delivered only once committed."""
    ctx = request.app[BROKER]
    topic = topic_of(request)
    check_admissible(ctx)  # The cheap refusals, then the body, then a slot (probe D9).
    config, create = topic_for_send(ctx.published.topics.value, topic, ctx.send_policy)
    body = await read_body(request)
    with admitted(ctx):
        _check_fields(body, {"producer_group", "message", "queue_id", "check_immunity_s"})
        group = check_group_name(body.get("producer_group"))
        message = body.get("message")
        if not isinstance(message, dict):
            raise BadRequest("`message` must be an object (one message per transaction)")
        if {"delay_level", "deliver_at_ms"} & message.keys():
            raise BadRequest("a transactional message cannot be delayed")
        immunity = _immunity(body, message)
        queue_id = body.get("queue_id")
        if queue_id is None:
            queue_id = next(ctx.round_robin) % config.write_queues
        queue_id = check_queue_id(config, queue_id)
        [draft] = build_drafts(
            config,
            queue_id,
            [message],
            limits=ctx.produce_limits,
            now_ms=ctx.clock.wall_ms(),
            born_host=f"{request.remote or '127.0.0.1'}:0",
        )
        pending = await read(ctx, PendingTransactionCount())
        if pending >= ctx.transactions.max_pending:
            raise Busy(f"{pending} transactions await an outcome on this broker; retry later")
        transaction_id = uuid.uuid4().hex
        drafts = [half_draft(draft, group, transaction_id, immunity)]
        if create:
            drafts.insert(0, topic_create_draft(config, ctx.clock.wall_ms()))
        [stored] = await append(ctx, drafts)
    return respond(
        request,
        {
            "transaction_id": transaction_id,
            "producer_group": group,
            "commitlog_offset": stored.commitlog_offset,
            "msg_id": stored.msg_id,
            "unique_key": stored.unique_key,
            "topic": topic,
            "queue_id": queue_id,
        },
    )


# -- ending a transaction -----------------------------------------------------------------------


def _ended(ctx: BrokerContext, ended: EndedTxn, *, already: bool) -> dict[str, Any]:
    msg_id = None
    if ended.copy_offset is not None and ended.copy_size is not None:
        msg_id = make_msg_id(
            broker_hash(ctx.identity.broker_name), ended.copy_offset, ended.copy_size
        )
    return {
        "transaction_id": ended.transaction_id,
        "producer_group": ended.producer_group,
        "commitlog_offset": ended.offset,
        "state": "ended",
        "outcome": ended.outcome,
        "by": ended.by,
        "already_ended": already,
        "msg_id": msg_id,
    }


def _end_fields(request: web.Request, body: dict[str, Any]) -> tuple[str, str, int, str]:
    transaction_id = request.match_info["transaction_id"]
    if not TRANSACTION_ID.fullmatch(transaction_id):
        raise BadRequest(f"invalid transaction id {transaction_id!r}")
    _check_fields(body, {"producer_group", "commitlog_offset", "outcome"})
    group = check_group_name(body.get("producer_group"))
    offset = body.get("commitlog_offset")
    if type(offset) is not int or not 0 <= offset < 2**62:
        raise BadRequest(
            "`commitlog_offset` (the half message's, as its send answered) must be an "
            f"integer >= 0, got {offset!r}"
        )
    outcome = body.get("outcome")
    if outcome not in (*OUTCOMES, UNKNOWN):
        raise BadRequest(f"`outcome` must be one of {[*OUTCOMES, UNKNOWN]}, got {outcome!r}")
    return transaction_id, group, offset, str(outcome)


async def end_transaction(request: web.Request) -> web.Response:
    """Commit or roll back a transaction, once: a repeated end gets the outcome that
    stands, a contrary one 409 TRANSACTION_CONFLICT; `unknown` changes nothing."""
    ctx = request.app[BROKER]
    check_admissible(ctx)  # The cheap refusals, then the body, then a slot (probe D9).
    body = await read_body(request)
    with admitted(ctx):
        transaction_id, group, offset, outcome = _end_fields(request, body)
        found, record = await read(ctx, FindTransaction(offset, transaction_id, outcome == COMMIT))
        txn = check_end_target(found, group, transaction_id, offset)
        if isinstance(txn, EndedTxn):
            if outcome != UNKNOWN:
                check_same_outcome(txn, cast(Outcome, outcome))
            return respond(request, _ended(ctx, txn, already=True))
        if outcome == UNKNOWN:
            return respond(request, _pending_to_wire(txn, _policy(ctx)))
        now_ms = ctx.clock.wall_ms()
        drafts = [_commit(ctx, txn, record) if outcome == COMMIT else _rollback(txn, now_ms)]
        await submit(ctx, drafts, what="end transaction")
        after, _ = await read(ctx, FindTransaction(offset, transaction_id, with_record=False))
    if not isinstance(after, EndedTxn):  # Forgotten already (ENDED_KEPT ends since).
        raise _forgotten(transaction_id, offset)
    check_same_outcome(after, cast(Outcome, outcome))
    return respond(request, _ended(ctx, after, already=False))


def _forgotten(transaction_id: str, offset: int) -> MessageNotFound:
    return MessageNotFound(
        f"transaction {transaction_id!r} at {offset} ended, but its outcome is no longer kept",
        transaction_id=transaction_id,
    )


def _commit(ctx: BrokerContext, txn: HalfTxn, record: Record | None) -> MessageDraft:
    if record is None:
        raise MessageNotFound(
            f"the half message of transaction {txn.transaction_id!r} was removed by "
            "retention; it will be rolled back",
            transaction_id=txn.transaction_id,
        )
    config = ctx.published.topics.value.get(txn.topic)
    if config is None:
        raise TopicNotFound(
            f"topic {txn.topic!r} of transaction {txn.transaction_id!r} no longer exists",
            topic=txn.topic,
        )
    if not config.writable:
        raise NoPermission(f"topic {txn.topic!r} is not writable (perm={config.perm})")
    return commit_draft(record, config.write_queues)


def _rollback(txn: HalfTxn, now_ms: int) -> MessageDraft:
    return end_draft([(txn.offset, txn.transaction_id, ROLLBACK, BY_PRODUCER)], now_ms)



# -- listing ------------------------------------------------------------------------------------


def _policy(ctx: BrokerContext) -> CheckPolicy:
    txn = ctx.transactions
    return CheckPolicy(
        int(txn.check_immunity_s * 1000), int(txn.check_interval_s * 1000), txn.max_check_times
    )


def _pending_to_wire(txn: HalfTxn, policy: CheckPolicy) -> dict[str, Any]:
    return {
        **txn.to_wire(),
        "commitlog_offset": txn.offset,
        "state": "pending",
        "next_check_ms": next_check_ms(txn, policy),
    }


async def list_transactions(request: web.Request) -> web.Response:
    """Pending half messages (oldest first) and remembered outcomes (newest first); any
    node answers (the table is replicated)."""
    ctx = request.app[BROKER]
    check_known(request, {"state", "producer_group", "max"})
    state = request.query.get("state", "all")
    if state not in STATES:
        raise BadRequest(f"state must be one of {list(STATES)}, got {state!r}")
    group = request.query.get("producer_group")
    if group is not None:
        check_group_name(group)
    limit = int_param(request, "max", LIST_DEFAULT, low=1, high=LIST_MAX)
    found = await read(ctx, Transactions(group, limit))
    policy = _policy(ctx)
    answer: dict[str, Any] = {"broker_name": ctx.identity.broker_name}
    if state in ("pending", "all"):
        answer["pending"] = [_pending_to_wire(t, policy) for t in found.pending]
        answer["pending_total"] = found.pending_total
    if state in ("ended", "all"):
        answer["ended"] = [
            {
                **_ended(ctx, t, already=True),
                "topic": t.topic,
                "checks": t.checks,
                "ended_ms": t.ended_ms,
            }
            for t in found.ended
        ]
        answer["ended_total"] = found.ended_total
    return respond(request, answer)


# -- check-backs ----------------------------------------------------------------------------------


def _check_to_wire(ctx: BrokerContext, check: CheckRequest, *, binary: bool) -> dict[str, Any]:
    txn, record = check.txn, check.record
    msg_id = make_msg_id(
        broker_hash(ctx.identity.broker_name), record.commitlog_offset, record.size
    )
    # The message as its producer sent it; it has no queue offset in its topic yet (-1).
    message = message_to_wire(StoredMessage(real_view(record), -1, msg_id), binary=binary)
    return {
        "transaction_id": txn.transaction_id,
        "producer_group": txn.producer_group,
        "commitlog_offset": txn.offset,
        "msg_id": msg_id,
        "check_times": txn.checks,
        "message": message,
    }


async def poll_checks(request: web.Request) -> web.Response:
    """A producer of the group waits (long poll) for transactions to check; it answers each
    with `POST /transactions/{id}/end`. Only the writer holds check-backs."""
    ctx = request.app[BROKER]
    check_known(request, {"client_id", "wait_ms"})
    group = check_group_name(request.match_info["group"])
    client_id = str_param(request, "client_id")
    if not 1 <= len(client_id) <= 255:
        raise BadRequest("client_id must be 1..255 characters")
    wait_ms = min(
        int_param(request, "wait_ms", 0, low=0, high=MAX_WAIT_PARAM_MS), ctx.limits.max_long_poll_ms
    )
    if not ctx.role.value.writable:
        raise not_leader(ctx)
    checker = ctx.transaction_checker
    assert checker is not None, "every broker runs a transaction checker"
    deadline = ctx.clock.monotonic_ms() + wait_ms
    try:
        checks: list[CheckRequest] = await bridge.call(
            lambda reply: checker.tell(PollChecks(group, client_id, deadline, reply)),
            timeout_s=wait_ms / 1000 + READ_TIMEOUT_S,
            what="check poll",
        )
    except NotLeader:
        raise not_leader(ctx) from None
    binary = wants_msgpack(request)
    return respond(
        request,
        {"group": group, "checks": [_check_to_wire(ctx, c, binary=binary) for c in checks]},
    )
