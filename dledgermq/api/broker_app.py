"""The broker's client HTTP API (docs/API.md, served as /openapi.json): the routes.

Handlers live one module per resource and share only `api/context.py`; this module
assembles them, so nothing imports it but the composition root and tests. Handlers
validate and parse on the loop thread, then *tell* the owning actor through the bridge
and await its reply with a timeout; nothing here blocks the loop or touches the store.
"""

from __future__ import annotations

from aiohttp import web

from dledgermq.api import (
    admin_handlers,
    group_handlers,
    message_handlers,
    status_handlers,
    topic_handlers,
)
from dledgermq.api.context import BROKER, BrokerContext
from dledgermq.api.retry_handlers import add_retry_routes
from dledgermq.api.transaction_handlers import add_transaction_routes
from dledgermq.wire import BODY_READ_TIMEOUT_S, error_middleware


def make_broker_app(context: BrokerContext) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=context.limits.max_batch_bytes * 2 + 1024 * 1024,
    )
    app[BROKER] = context
    app[BODY_READ_TIMEOUT_S] = context.limits.body_read_timeout_ms / 1000
    status, topics, messages = status_handlers, topic_handlers, message_handlers
    groups, admin = group_handlers, admin_handlers
    app.add_routes(
        [
            web.get("/status", status.status),
            web.get("/openapi.json", status.openapi),
            web.get("/topics", topics.list_topics),
            web.post("/topics", topics.create_topic),
            web.get("/topics/{topic}", topics.get_topic),
            web.put("/topics/{topic}", topics.update_topic),
            web.delete("/topics/{topic}", topics.delete_topic),
            web.post("/topics/{topic}/messages", messages.send),
            web.get("/topics/{topic}/queues/{queue_id}/messages", messages.pull),
            web.get("/topics/{topic}/queues/{queue_id}/offset-by-time", messages.offset_by_time),
            web.post("/groups/{group}/offsets", groups.commit_offsets),
            web.get("/groups/{group}/offsets", groups.get_offsets),
            web.get("/groups/{group}/progress", groups.get_progress),
            web.get("/messages/{msg_id}", messages.get_message),
            web.get("/messages", messages.query_messages),
            web.post("/groups/{group}/heartbeat", groups.group_heartbeat),
            web.post("/groups/{group}/release", groups.group_release),
            web.post("/groups/{group}/leave", groups.group_leave),
            web.get("/groups/{group}/members", groups.group_members),
            web.post("/admin/leader-transfer", admin.leader_transfer),
            web.get("/admin/write-permission", admin.get_write_permission),
            web.put("/admin/write-permission", admin.put_write_permission),
        ]
    )
    add_retry_routes(app)
    add_transaction_routes(app)
    return app
