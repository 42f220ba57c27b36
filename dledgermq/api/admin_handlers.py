"""Group admin: leader transfer and the write-disable switch."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dledgermq import bridge
from dledgermq.actors.raft_node import TransferLeadership
from dledgermq.api.context import (
    BROKER,
    READ_TIMEOUT_S,
    BrokerContext,
    admitted,
    append,
    check_fields,
    not_leader,
)
from dledgermq.bridge import ReplyTo
from dledgermq.broker.state import broker_perm_draft
from dledgermq.broker.topics import PERM_READ, PERM_READ_WRITE, PERM_WRITE
from dledgermq.errors import BadRequest, NotLeader
from dledgermq.wire import read_body, respond


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
    check_fields(body, {"writable"})
    writable = body.get("writable")
    if type(writable) is not bool:
        raise BadRequest("`writable` must be true or false", field="writable")
    perm = PERM_READ_WRITE if writable else PERM_READ
    with admitted(ctx):  # Written even when unchanged: a new leader may lag its own log.
        await append(ctx, [broker_perm_draft(perm, ctx.clock.wall_ms())])
    return respond(request, _write_permission(ctx))
