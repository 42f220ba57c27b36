"""The OpenAPI 3 document of the broker API, built once from compact route descriptions.

A test checks that every route the app serves is documented here and nothing more.
"""

from __future__ import annotations

from typing import Any

from dledgermq import __version__
from dledgermq.api.openapi_transactions import TRANSACTION_ROUTES, TRANSACTION_SCHEMAS
from dledgermq.broker.reserved import BROKER_ONLY, CLIENT_SET, FROM_FIELDS

_ERROR = {"$ref": "#/components/schemas/Error"}
_OBJECT: dict[str, Any] = {"type": "object"}

# Field schemas as tight as the handlers' validation (broker/topics.py, broker/produce.py,
# api/params.py, the handlers): a fuzzer generating from this document mostly builds
# requests the broker accepts. Where a rule cannot be a JSON Schema (Python's
# str.isprintable(), reserved names, a queue below the topic's count) the schema states a
# subset that always passes, or leaves the rest to a 400.
TOPIC_PATTERN = "^[%|a-zA-Z0-9_-]{1,127}$"
GROUP_PATTERN = "^[%|a-zA-Z0-9_-]{1,255}$"
MSG_ID_PATTERN = "^[0-9A-Fa-f]{32}$"
_TOPIC = {"type": "string", "pattern": TOPIC_PATTERN}
_GROUP = {"type": "string", "pattern": GROUP_PATTERN}
_MSG_ID = {"type": "string", "pattern": MSG_ID_PATTERN, "description": "as a pull returns it"}
_QUEUE_ID = {"type": "integer", "minimum": 0, "maximum": 1023}
_QUEUES = {"type": "integer", "minimum": 1, "maximum": 1024}
_TIME_MS = {"type": "integer", "minimum": 0, "maximum": 2**62}
_OFFSET = {"type": "integer", "minimum": 0, "maximum": 2**62}
# Any printable Unicode is accepted (str.isprintable()); the schema names the ASCII subset.
_CLIENT_ID = {"type": "string", "pattern": "^[ -~]{1,255}$"}
_TAG_EXPRESSION = {
    "type": "string",
    "pattern": "^[^|]{1,255}( [|][|] [^|]{1,255})*$",
    "maxLength": 1024,
    "description": "`*` or `A || B`",
}
_WAIT_MS = {
    "type": "integer",
    "minimum": 0,
    "maximum": 3_600_000,
    "description": "held for at most the broker's max_long_poll_ms (15 s)",
}

# Path parameters by name; query parameters by name, then by (path, name) where a route
# bounds one differently. Query parameters named in REQUIRED_QUERY must be given.
PATH_PARAMETERS: dict[str, Any] = {
    "topic": _TOPIC,
    "group": _GROUP,
    "queue_id": _QUEUE_ID,
    "msg_id": {"type": "string", "minLength": 1, "maxLength": 128},
    "transaction_id": {"type": "string", "pattern": "^[0-9A-Za-z_-]{1,64}$"},
}
QUERY_PARAMETERS: dict[str, Any] = {
    "offset": _OFFSET,
    "max": {
        "type": "integer",
        "minimum": 1,
        "maximum": 256,
        "description": "at most the broker's max_pull_messages (256)",
    },
    "tags": _TAG_EXPRESSION,
    "wait_ms": _WAIT_MS,
    "timestamp_ms": _TIME_MS,
    "topic": _TOPIC,
    "key": {"type": "string", "minLength": 1, "maxLength": 255},
    "begin_ms": _TIME_MS,
    "end_ms": _TIME_MS,
    "state": {"type": "string", "enum": ["pending", "ended", "all"], "default": "all"},
    "producer_group": _GROUP,
    "client_id": _CLIENT_ID,
}
QUERY_OVERRIDES: dict[tuple[str, str], Any] = {
    ("/messages", "max"): {"type": "integer", "minimum": 1, "maximum": 64},
    ("/transactions", "max"): {"type": "integer", "minimum": 1, "maximum": 1_000},
}
REQUIRED_QUERY = {
    ("/topics/{topic}/queues/{queue_id}/messages", "offset"),
    ("/topics/{topic}/queues/{queue_id}/offset-by-time", "timestamp_ms"),
    ("/groups/{group}/offsets", "topic"),
    ("/groups/{group}/progress", "topic"),
    ("/messages", "key"),
    ("/producers/{group}/checks", "client_id"),
}

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
            "topic": _TOPIC,
            "read_queues": _QUEUES,
            "write_queues": _QUEUES,
            "perm": {"type": "integer", "enum": [2, 4, 6]},
        },
    },
    "TopicCreate": {
        "type": "object",
        "required": ["topic"],
        "properties": {
            "topic": {
                **_TOPIC,
                "description": "%SYS%, %DELAY% and %TRANS% names are the broker's",
            },
            "queues": {**_QUEUES, "description": "read and write queues (default: broker's)"},
            "read_queues": _QUEUES,
            "write_queues": _QUEUES,
            "perm": {"type": "integer", "enum": [2, 4, 6], "default": 6},
        },
        "additionalProperties": False,
    },
    "TopicUpdate": {
        "type": "object",
        "properties": {
            "topic": {**_TOPIC, "description": "if given, the path's (it cannot change)"},
            "queues": _QUEUES,
            "read_queues": _QUEUES,
            "write_queues": _QUEUES,
            "perm": {"type": "integer", "enum": [2, 4, 6]},
        },
        "additionalProperties": False,
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
            "body": {
                "type": "string",
                "minLength": 1,
                "description": "UTF-8 text (JSON) or bytes (msgpack); at most "
                "limits.max_message_bytes (4 MiB)",
            },
            "body_base64": {"type": "string", "pattern": "^([A-Za-z0-9+/]{4})+$"},
            "tags": {"type": "string", "pattern": "^[^|]{1,255}$", "description": "no `||`"},
            "keys": {
                "type": "array",
                "minItems": 1,
                "maxItems": 32,
                "items": {"type": "string", "pattern": "^[^ ]{1,255}$"},
                "description": "or one key as a string",
            },
            "properties": {
                "type": "object",
                "maxProperties": 64,
                "propertyNames": {
                    "minLength": 1,
                    "not": {"enum": sorted(BROKER_ONLY | FROM_FIELDS | CLIENT_SET)},
                },
                "additionalProperties": {"type": "string", "maxLength": 256},
                "description": "at most 32 KiB (UTF-8); broker-only names (TAGS, KEYS, "
                "REAL_TOPIC, ...) are refused (RESERVED_PROPERTY); UNIQ_KEY (1..64 of "
                "[0-9A-Za-z_-]) and CHECK_IMMUNITY_TIME_IN_SECONDS (ASCII digits) may be "
                "set in their form (not generated from this schema)",
            },
            "born_timestamp_ms": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
            "delay_level": {
                "type": "integer",
                "minimum": 0,
                "maximum": 18,
                "description": "1..N (the broker's delay levels, 18 by default), 0 = none",
            },
            "deliver_at_ms": {"type": "integer", "minimum": 0, "description": "epoch ms"},
        },
        "oneOf": [{"required": ["body"]}, {"required": ["body_base64"]}],
        "not": {"anyOf": [{"required": ["delay_level", "deliver_at_ms"]}]},
        "additionalProperties": False,
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
        _ref("TopicCreate"),
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
        _ref("TopicUpdate"),
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
                "messages": {
                    "type": "array",
                    "items": _ref("Msg"),
                    "minItems": 1,
                    "maxItems": 1000,
                    "description": "at most limits.max_batch_messages (1,000) and "
                    "max_batch_bytes (4 MiB)",
                },
                "queue_id": {**_QUEUE_ID, "description": "below the topic's write_queues"},
            },
            "additionalProperties": False,
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
                "topic": _TOPIC,
                "offsets": {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": {"pattern": "^[0-9]{1,4}$"},
                    "additionalProperties": {"type": "integer", "minimum": 0},
                    "description": "queue id (below the topic's queue count) -> offset (not "
                    "past the queue's end)",
                },
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
            "additionalProperties": False,
            "dependentSchemas": {
                "held": {"required": ["orderly"], "properties": {"orderly": {"const": True}}}
            },
            "properties": {
                "client_id": _CLIENT_ID,
                "zone": {"type": "string", "pattern": "^[ -~]{1,64}$"},
                "subscriptions": {
                    "type": "object",
                    "maxProperties": 1024,
                    "propertyNames": {"pattern": TOPIC_PATTERN},
                    "additionalProperties": _TAG_EXPRESSION,
                },
                "strategy": {
                    "type": "string",
                    "enum": ["average", "average_by_circle", "consistent_hash", "zone_aware"],
                },
                "orderly": {"type": "boolean", "default": False},
                "held": {
                    "type": "object",
                    "description": "orderly only (with `orderly: true`): queues still held "
                    "under a valid lease, at most 4,096",
                    "propertyNames": {"pattern": TOPIC_PATTERN},
                    "additionalProperties": {"type": "array", "items": _QUEUE_ID},
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
            "additionalProperties": False,
            "properties": {
                "client_id": _CLIENT_ID,
                "topic": _TOPIC,
                "queue_ids": {"type": "array", "items": _QUEUE_ID},
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
            "additionalProperties": False,
            "properties": {"client_id": _CLIENT_ID},
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
            "additionalProperties": False,
            "properties": {
                "msg_ids": {
                    "type": "array",
                    "items": _MSG_ID,
                    "minItems": 1,
                    "maxItems": 1000,
                    "uniqueItems": True,
                },
                "max_reconsume_times": {"type": "integer", "minimum": 0, "maximum": 1000},
                "dead_letter": {
                    "type": "boolean",
                    "default": False,
                    "description": "straight to %DLQ%<group> (orderly local retries used up)",
                },
                "reconsume_times": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 1000,
                    "description": "with `dead_letter: true` only",
                },
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
                "msg_ids": {
                    "type": "array",
                    "items": _MSG_ID,
                    "minItems": 1,
                    "maxItems": 1000,
                    "uniqueItems": True,
                },
                "all": {"type": "boolean"},
                "max": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 256,
                    "description": "with"
                    " `all` only; at most max_pull_messages and max_batch_messages",
                },
            },
            "additionalProperties": False,
            "oneOf": [
                {
                    "required": ["msg_ids"],
                    "properties": {"all": {"const": False}},
                    "not": {"required": ["max"]},
                },
                {
                    "required": ["all"],
                    "properties": {"all": {"const": True}},
                    "not": {"required": ["msg_ids"]},
                },
            ],
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
        {
            "type": "object",
            "required": ["to"],
            "properties": {"to": {"type": "string", "description": "a node id of the group"}},
            "additionalProperties": False,
        },
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
            "schema": PATH_PARAMETERS[name.strip("{}")],
        }
        for name in path.split("/")
        if name.startswith("{")
    ] + [
        {
            "name": name,
            "in": "query",
            "required": (path, name) in REQUIRED_QUERY,
            "schema": QUERY_OVERRIDES.get((path, name), QUERY_PARAMETERS[name]),
        }
        for name in query
    ]
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
