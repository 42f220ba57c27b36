"""The OpenAPI 3 document of the broker API, built once from compact route descriptions.

A test checks that every route the app serves is documented here and nothing more.
"""

from __future__ import annotations

from typing import Any

from dledgermq import __version__
from dledgermq.api.openapi_transactions import TRANSACTION_ROUTES, TRANSACTION_SCHEMAS

_ERROR = {"$ref": "#/components/schemas/Error"}
_OBJECT: dict[str, Any] = {"type": "object"}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        "additionalProperties": True,
    },
    "TopicConfig": {
        "type": "object",
        "required": ["topic", "read_queues", "write_queues", "perm"],
        "properties": {
            "topic": {"type": "string", "pattern": "^[%|a-zA-Z0-9_-]{1,127}$"},
            "read_queues": {"type": "integer", "minimum": 1, "maximum": 1024},
            "write_queues": {"type": "integer", "minimum": 1, "maximum": 1024},
            "perm": {"type": "integer", "enum": [2, 4, 6]},
        },
    },
    "WritePermission": {
        "type": "object",
        "required": ["broker_name", "perm", "writable"],
        "properties": {
            "broker_name": {"type": "string"},
            "perm": {"type": "integer", "enum": [4, 6], "description": "4 = write-disabled"},
            "writable": {"type": "boolean"},
        },
    },
    "Msg": {
        "type": "object",
        "properties": {
            "body": {"type": "string", "description": "UTF-8 text (JSON) or bytes (msgpack)"},
            "body_base64": {"type": "string"},
            "tags": {"type": "string"},
            "keys": {"type": "array", "items": {"type": "string"}},
            "properties": {"type": "object", "additionalProperties": {"type": "string"}},
            "born_timestamp_ms": {"type": "integer"},
            "delay_level": {"type": "integer", "minimum": 0, "description": "1..N, 0 = none"},
            "deliver_at_ms": {"type": "integer", "description": "deliver at (epoch ms)"},
        },
    },
    "SendResult": {
        "type": "object",
        "properties": {
            name: {"type": "string" if name in {"status", "msg_id", "unique_key"} else "integer"}
            for name in (
                "status",
                "msg_id",
                "unique_key",
                "queue_id",
                "queue_offset",
                "commitlog_offset",
            )
        },
    },
    "Message": {
        "type": "object",
        "properties": {
            "msg_id": {"type": "string"},
            "unique_key": {"type": "string"},
            "topic": {"type": "string"},
            "queue_id": {"type": "integer"},
            "queue_offset": {"type": "integer"},
            "commitlog_offset": {"type": "integer"},
            "body": {"type": "string"},
            "body_base64": {"type": "string"},
            "tags": {"type": ["string", "null"]},
            "keys": {"type": "array", "items": {"type": "string"}},
            "properties": {"type": "object", "additionalProperties": {"type": "string"}},
            "born_timestamp_ms": {"type": "integer"},
            "store_timestamp_ms": {"type": "integer"},
            "reconsume_times": {"type": "integer"},
        },
    },
    "SendBackResult": {
        "type": "object",
        "properties": {
            "msg_id": {"type": "string"},
            "status": {"type": "string", "enum": ["RETRY", "DLQ"]},
            "topic": {"type": "string", "description": "%RETRY%<group> or %DLQ%<group>"},
            "reconsume_times": {"type": "integer"},
            "deliver_at_ms": {"type": ["integer", "null"], "description": "when redelivered"},
            "dead_letter_id": {"type": ["string", "null"], "description": "msg_id in the DLQ"},
        },
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# (method, path, summary, request schema or None, response schema, error statuses, query params)
ROUTES: list[tuple[str, str, str, Any, Any, tuple[int, ...], tuple[str, ...]]] = [
    ("get", "/status", "Broker role, offsets and watermarks", None, _OBJECT, (), ()),
    ("get", "/openapi.json", "This document", None, _OBJECT, (), ()),
    ("get", "/topics", "List topics", None, _OBJECT, (), ()),
    (
        "post",
        "/topics",
        "Create a topic (through the CommitLog)",
        _ref("TopicConfig"),
        _ref("TopicConfig"),
        (400, 409, 503, 504),
        (),
    ),
    (
        "get",
        "/topics/{topic}",
        "Topic config and per-queue offset range",
        None,
        _OBJECT,
        (400, 404),
        (),
    ),
    (
        "put",
        "/topics/{topic}",
        "Change queue counts or permission",
        _OBJECT,
        _ref("TopicConfig"),
        (400, 404),
        (),
    ),
    ("delete", "/topics/{topic}", "Delete a topic", None, _OBJECT, (400, 404), ()),
    (
        "post",
        "/topics/{topic}/messages",
        "Send one message or a batch (one CommitLog entry). 403 NO_PERMISSION: the topic "
        "is read-only, or the broker group is write-disabled (`broker_writable: false`); "
        "404 TOPIC_NOT_FOUND unless `limits.auto_create_topic` creates the topic",
        {
            "type": "object",
            "required": ["messages"],
            "properties": {
                "messages": {"type": "array", "items": _ref("Msg")},
                "queue_id": {"type": "integer"},
            },
        },
        {
            "type": "object",
            "properties": {"results": {"type": "array", "items": _ref("SendResult")}},
        },
        (400, 403, 404, 413, 503, 504, 507),
        (),
    ),
    (
        "get",
        "/topics/{topic}/queues/{queue_id}/messages",
        "Pull from a queue (long polling)",
        None,
        {
            "type": "object",
            "properties": {
                "messages": {"type": "array", "items": _ref("Message")},
                "next_offset": {"type": "integer"},
                "min_offset": {"type": "integer"},
                "max_offset": {"type": "integer"},
            },
        },
        (400, 403, 404),
        ("offset", "max", "tags", "wait_ms"),
    ),
    (
        "get",
        "/topics/{topic}/queues/{queue_id}/offset-by-time",
        "First queue offset stored at or after a time",
        None,
        _OBJECT,
        (400, 404),
        ("timestamp_ms",),
    ),
    (
        "post",
        "/groups/{group}/offsets",
        "Commit a consumer group's offsets (through the log)",
        {
            "type": "object",
            "required": ["topic", "offsets"],
            "properties": {
                "topic": {"type": "string"},
                "offsets": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
        },
        _OBJECT,
        (400, 404),
        (),
    ),
    (
        "get",
        "/groups/{group}/offsets",
        "A consumer group's committed offsets",
        None,
        _OBJECT,
        (400,),
        ("topic",),
    ),
    (
        "get",
        "/groups/{group}/progress",
        "A consumer group's progress per read queue of the topic on this broker group: range,"
        " committed offset, lag, store time of the last consumed message (last_consumed_ms),"
        " lease owner (known to the writer only: owners_known)",
        None,
        {
            "type": "object",
            "properties": {
                "queues": {"type": "array", "items": _OBJECT},
                "owners_known": {"type": "boolean"},
            },
        },
        (400, 404),
        ("topic",),
    ),
    (
        "get",
        "/messages/{msg_id}",
        "A message by id or by the client's unique key",
        None,
        _ref("Message"),
        (400, 404),
        (),
    ),
    (
        "get",
        "/messages",
        "Messages by key (newest first)",
        None,
        {"type": "object", "properties": {"messages": {"type": "array", "items": _ref("Message")}}},
        (400,),
        ("key", "topic", "begin_ms", "end_ms", "max"),
    ),
    (
        "post",
        "/groups/{group}/heartbeat",
        "A clustering-mode consumer is alive; answers the queues of this broker group it may"
        " consume now (leased; send to the writer of every broker group of its topics)",
        {
            "type": "object",
            "required": ["client_id", "subscriptions"],
            "properties": {
                "client_id": {"type": "string"},
                "zone": {"type": "string"},
                "subscriptions": {"type": "object", "additionalProperties": {"type": "string"}},
                "strategy": {
                    "type": "string",
                    "enum": ["average", "average_by_circle", "consistent_hash", "zone_aware"],
                },
                "orderly": {"type": "boolean", "default": False},
                "held": {
                    "type": "object",
                    "description": "orderly only: queues still held under a valid lease",
                    "additionalProperties": {"type": "array", "items": {"type": "integer"}},
                },
            },
        },
        {
            "type": "object",
            "properties": {
                "assignment": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "integer"}},
                },
                "lease_ms": {"type": "integer"},
                "members": {"type": "array", "items": {"type": "string"}},
                "grace_ms": {"type": "integer", "description": "orderly grace left (ms)"},
            },
        },
        (400, 503),
        (),
    ),
    (
        "post",
        "/groups/{group}/release",
        "Free the leases of queues the consumer stopped pulling (after committing them)",
        {
            "type": "object",
            "required": ["client_id", "topic", "queue_ids"],
            "properties": {
                "client_id": {"type": "string"},
                "topic": {"type": "string"},
                "queue_ids": {"type": "array", "items": {"type": "integer"}},
            },
        },
        _OBJECT,
        (400,),
        (),
    ),
    (
        "post",
        "/groups/{group}/leave",
        "The consumer shut down: forget it and free its leases",
        {
            "type": "object",
            "required": ["client_id"],
            "properties": {"client_id": {"type": "string"}},
        },
        _OBJECT,
        (400,),
        (),
    ),
    (
        "get",
        "/groups/{group}/members",
        "A consumer group's live members, strategy and queue owners on this broker group",
        None,
        _OBJECT,
        (400, 421),
        (),
    ),
    (
        "post",
        "/groups/{group}/send-back",
        "Messages the group failed to consume (msg_ids as pulled from this broker group): "
        "redelivered later through %RETRY%<group> with RocketMQ's back-off, or moved to "
        "%DLQ%<group> after max_reconsume_times retries (send it to the writer)",
        {
            "type": "object",
            "required": ["msg_ids"],
            "properties": {
                "msg_ids": {"type": "array", "items": {"type": "string"}},
                "max_reconsume_times": {"type": "integer", "minimum": 0, "maximum": 1000},
                "dead_letter": {
                    "type": "boolean",
                    "default": False,
                    "description": "straight to %DLQ%<group> (orderly local retries used up)",
                },
                "reconsume_times": {"type": "integer", "minimum": 0, "maximum": 1000},
            },
        },
        {
            "type": "object",
            "properties": {"results": {"type": "array", "items": _ref("SendBackResult")}},
        },
        (400, 403, 404, 413, 503, 504),
        (),
    ),
    (
        "get",
        "/groups/{group}/dlq",
        "A page of the group's dead letters on this broker group, oldest first",
        None,
        {
            "type": "object",
            "properties": {
                "group": {"type": "string"},
                "topic": {"type": "string"},
                "messages": {"type": "array", "items": _ref("Message")},
                "next_offset": {"type": "integer"},
                "min_offset": {"type": "integer"},
                "max_offset": {"type": "integer"},
                "resend_offset": {"type": ["integer", "null"]},
            },
        },
        (400, 403),
        ("offset", "max"),
    ),
    (
        "post",
        "/groups/{group}/dlq/resend",
        "Resend dead letters to their original topics: the ones named, or (`all`) the next "
        "`max` after the group's resend mark, which moves in the same entry",
        {
            "type": "object",
            "properties": {
                "msg_ids": {"type": "array", "items": {"type": "string"}},
                "all": {"type": "boolean"},
                "max": {"type": "integer", "minimum": 1},
            },
        },
        {
            "type": "object",
            "properties": {
                "resent": {"type": "array", "items": _OBJECT},
                "skipped": {"type": "array", "items": _ERROR},
                "next_offset": {"type": "integer"},
                "remaining": {"type": "integer"},
            },
        },
        (400, 403, 404, 413, 503, 504),
        (),
    ),
    (
        "post",
        "/admin/leader-transfer",
        "Start moving a Raft group's leadership to node `to` (send it to the leader)",
        {"type": "object", "required": ["to"], "properties": {"to": {"type": "string"}}},
        _OBJECT,
        (400,),
        (),
    ),
    (
        "get",
        "/admin/write-permission",
        "Whether this broker group takes sends (the maintenance write-disable switch)",
        None,
        _ref("WritePermission"),
        (),
        (),
    ),
    (
        "put",
        "/admin/write-permission",
        "Disable (maintenance) or enable sends to this broker group; reads go on. Stored "
        "through the log: kept across failover and restart. Send it to the group's writer",
        {
            "type": "object",
            "required": ["writable"],
            "properties": {"writable": {"type": "boolean"}},
            "additionalProperties": False,
        },
        _ref("WritePermission"),
        (400, 503, 504),
        (),
    ),
]


ROUTES += TRANSACTION_ROUTES
SCHEMAS.update(TRANSACTION_SCHEMAS)


def _operation(route: tuple[Any, ...]) -> dict[str, Any]:
    method, path, summary, request, response, errors, query = route
    if method != "get" and 421 not in errors:
        errors = (*errors, 421)  # Every write may land on a node that is not the leader.
    parameters = [
        {
            "name": name.strip("{}"),
            "in": "path",
            "required": True,
            "schema": {"type": "integer" if name == "{queue_id}" else "string"},
        }
        for name in path.split("/")
        if name.startswith("{")
    ] + [{"name": name, "in": "query", "schema": {"type": "string"}} for name in query]
    content = {
        "application/json": {"schema": response},
        "application/msgpack": {"schema": response},
    }
    status = "201" if (method, path) == ("post", "/topics") else "200"
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": parameters,
        "responses": {
            status: {"description": "OK", "content": content},
            **{
                str(code): {
                    "description": "Error",
                    "content": {"application/json": {"schema": _ERROR}},
                }
                for code in errors
            },
        },
    }
    if request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": request},
                "application/msgpack": {"schema": request},
            },
        }
    return operation


def build_openapi() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route[1], {})[route[0]] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dledgermq broker API",
            "version": __version__,
            "description": "Bodies are JSON or msgpack (Content-Type / Accept). Every error is "
            '{"code", "message"}; codes are listed in dledgermq/errors.py.',
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }
