"""The OpenAPI descriptions of the transaction routes (`api/transaction_handlers.py`),
in the compact form `openapi.py` builds the document from."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_GROUP = {"type": "string", "pattern": "^[%|a-zA-Z0-9_-]{1,255}$"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


TRANSACTION_SCHEMAS: dict[str, Any] = {
    "TransactionEnd": {
        "type": "object",
        "properties": {
            "transaction_id": {"type": "string"},
            "producer_group": {"type": "string"},
            "commitlog_offset": {"type": "integer", "description": "the half message's"},
            "state": {"type": "string", "enum": ["pending", "ended"]},
            "outcome": {"type": "string", "enum": ["commit", "rollback"]},
            "by": {"type": "string", "enum": ["producer", "max_checks", "gone"]},
            "already_ended": {"type": "boolean"},
            "msg_id": {"type": ["string", "null"], "description": "the committed copy"},
        },
    },
    "PendingTransaction": {
        "type": "object",
        "properties": {
            "transaction_id": {"type": "string"},
            "producer_group": {"type": "string"},
            "commitlog_offset": {"type": "integer"},
            "topic": {"type": "string"},
            "queue_id": {"type": "integer"},
            "stored_ms": {"type": "integer"},
            "checks": {"type": "integer"},
            "last_check_ms": {"type": "integer"},
            "next_check_ms": {"type": "integer"},
            "state": {"type": "string", "enum": ["pending"]},
        },
    },
}

# (method, path, summary, request schema or None, response schema, error statuses, query params)
TRANSACTION_ROUTES: list[tuple[str, str, str, Any, Any, tuple[int, ...], tuple[str, ...]]] = [
    (
        "post",
        "/topics/{topic}/transactions",
        "Store a half message (a transaction's message): durable, delivered only once its "
        "transaction is committed. Answers the transaction id and the half message's "
        "commitlog offset, which the end request must name",
        {
            "type": "object",
            "required": ["producer_group", "message"],
            "additionalProperties": False,
            "properties": {
                "producer_group": _GROUP,
                "message": {
                    **_ref("Msg"),
                    "description": "not delayed (no delay_level or deliver_at_ms)",
                },
                "queue_id": {"type": "integer", "minimum": 0, "maximum": 1023},
                "check_immunity_s": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 86_400,
                    "description": "first check-back after this (default: the broker's)",
                },
            },
        },
        {
            "type": "object",
            "properties": {
                "transaction_id": {"type": "string"},
                "producer_group": {"type": "string"},
                "commitlog_offset": {"type": "integer"},
                "msg_id": {"type": "string", "description": "the half message's"},
                "unique_key": {"type": "string"},
                "topic": {"type": "string"},
                "queue_id": {"type": "integer"},
            },
        },
        (400, 403, 404, 413, 503, 504),
        (),
    ),
    (
        "post",
        "/transactions/{transaction_id}/end",
        "Commit (the message becomes visible, once) or roll back a transaction; `unknown` "
        "decides nothing. Bound to the id, the half message's offset and the group (404 "
        "TRANSACTION_NOT_FOUND otherwise). A repeated end answers the outcome that stands "
        "(`already_ended`); a contrary one gets 409 TRANSACTION_CONFLICT",
        {
            "type": "object",
            "required": ["producer_group", "commitlog_offset", "outcome"],
            "additionalProperties": False,
            "properties": {
                "producer_group": _GROUP,
                "commitlog_offset": {"type": "integer", "minimum": 0, "maximum": 2**62 - 1},
                "outcome": {"type": "string", "enum": ["commit", "rollback", "unknown"]},
            },
        },
        _ref("TransactionEnd"),
        (400, 403, 404, 409, 503, 504),
        (),
    ),
    (
        "get",
        "/transactions",
        "Pending half messages (oldest first) and remembered outcomes (newest first) of "
        "this broker group; any node answers",
        None,
        {
            "type": "object",
            "properties": {
                "broker_name": {"type": "string"},
                "pending": {"type": "array", "items": _ref("PendingTransaction")},
                "pending_total": {"type": "integer"},
                "ended": {"type": "array", "items": _ref("TransactionEnd")},
                "ended_total": {"type": "integer"},
            },
        },
        (400,),
        ("state", "producer_group", "max"),
    ),
    (
        "get",
        "/producers/{group}/checks",
        "A producer's long poll for check-backs (writer only): transactions of its group "
        "without an outcome, each with its message; answer each with the end request",
        None,
        {
            "type": "object",
            "properties": {
                "group": {"type": "string"},
                "checks": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "transaction_id": {"type": "string"},
                            "producer_group": {"type": "string"},
                            "commitlog_offset": {"type": "integer"},
                            "msg_id": {"type": "string"},
                            "check_times": {"type": "integer"},
                            "message": _ref("Message"),
                        },
                    },
                },
            },
        },
        (400, 421, 503),
        ("client_id", "wait_ms"),
    ),
]
