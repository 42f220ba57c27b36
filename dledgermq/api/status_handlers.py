"""`/status` (role, offsets, watermarks, what dispatch passed over) and `/openapi.json`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dledgermq import bridge
from dledgermq.actors.raft_node import RaftStatus, Status
from dledgermq.api.context import BROKER, READ_TIMEOUT_S, read
from dledgermq.api.openapi import build_openapi
from dledgermq.broker.queries import Unreadable
from dledgermq.broker.topics import PERM_WRITE
from dledgermq.wire import respond


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
    unreadable = await read(ctx, Unreadable())
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
