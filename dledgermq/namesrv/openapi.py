"""The OpenAPI 3 document of the NameServer API (docs/API.md, NameServer section).

Schemas are as tight as `registry.py`'s validation (required fields, types, bounds,
patterns), so a fuzzer's generated requests are the ones the NameServer accepts. What the
schema cannot say is checked only by the registry: a page's `index` must be below its
`count`, and pages of a round come in order. A test checks that every route the app
serves is documented here and nothing more.

Must not: import the app (the app imports this).
"""

from __future__ import annotations

from typing import Any

from dledgermq import __version__
from dledgermq.namesrv.registry import (
    PAGES_MAX,
    PERM_MAX,
    ROUND_ID,
    TOPIC_NAME,
    ZONE_MAX_LENGTH,
)

BROKER_ID_PATTERN = "^[0-9]{1,18}$"

_COUNT = {"type": "integer", "minimum": 0}
_PERM = {"type": "integer", "minimum": 0, "maximum": PERM_MAX}
_TOPIC = {"type": "string", "pattern": TOPIC_NAME.pattern}
_ADDRS = {
    "type": "object",
    "description": 'addresses by broker_id ("0" is the master or leader)',
    "propertyNames": {"pattern": "^[0-9]+$"},
    "additionalProperties": {"type": "string"},
}
_ZONE = {"type": ["string", "null"], "minLength": 1, "maxLength": ZONE_MAX_LENGTH}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _answer(properties: dict[str, Any]) -> dict[str, Any]:
    """A response object: every property always present, nothing else."""
    return {**_object(list(properties), properties), "additionalProperties": False}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        "additionalProperties": True,
    },
    "TopicQueues": _object(
        ["topic", "read_queues", "write_queues", "perm"],
        {"topic": _TOPIC, "read_queues": _COUNT, "write_queues": _COUNT, "perm": _PERM},
    ),
    "RegistrationPage": _object(
        ["round", "index", "count"],
        {
            "round": {"type": "string", "pattern": ROUND_ID.pattern},
            "index": {"type": "integer", "minimum": 0, "maximum": PAGES_MAX - 1},
            "count": {"type": "integer", "minimum": 1, "maximum": PAGES_MAX},
        },
    ),
    "BrokerRegistration": {
        **_object(
            ["cluster", "broker_name", "broker_id", "addr"],
            {
                "cluster": {"type": "string"},
                "broker_name": {"type": "string", "minLength": 1},
                "broker_id": _COUNT,
                "addr": {"type": "string"},
                "topics": {"type": "array", "items": _ref("TopicQueues"), "default": []},
                "perm": {**_PERM, "default": 6, "description": "the group's; 4: write-disabled"},
                "zone": _ZONE,
                "auto_create_topic": {"type": "boolean", "default": False},
                "page": {
                    **_ref("RegistrationPage"),
                    "description": "one page of a round (a table of more than 2,000 topics); "
                    "index < count, pages in order",
                },
            },
        ),
        "description": "A register/heartbeat. Unknown fields are ignored.",
    },
    "BrokerGroup": _answer(
        {
            "cluster": {"type": "string"},
            "broker_name": {"type": "string", "minLength": 1},
            "addrs": _ADDRS,
            "last_seen_ms": {"type": "integer"},
            "perm": _PERM,
            "zone": _ZONE,
            "auto_create_topic": {"type": "boolean"},
        }
    ),
    "QueueData": _answer(
        {"broker_name": {"type": "string"}, "read_queues": _COUNT, "write_queues": _COUNT}
        | {"perm": _PERM}
    ),
    "TopicRoute": _answer(
        {
            "topic": {"type": "string"},
            "queues": {"type": "array", "items": _ref("QueueData"), "minItems": 1},
            "brokers": {
                "type": "array",
                "minItems": 1,
                "items": _answer(
                    {
                        "broker_name": {"type": "string"},
                        "cluster": {"type": "string"},
                        "addrs": _ADDRS,
                        "perm": _PERM,
                        "zone": _ZONE,
                    }
                ),
            },
        }
    ),
}

_EMPTY = _answer({})
_STRING_PATH = {"type": "string", "minLength": 1}

# (method, path, summary, request schema or None, response schema, error statuses)
ROUTES: list[tuple[str, str, str, Any, Any, tuple[int, ...]]] = [
    (
        "post",
        "/brokers",
        "Register a broker or heartbeat (a page of a paged registration)",
        _ref("BrokerRegistration"),
        _EMPTY,
        (400, 413),
    ),
    (
        "delete",
        "/brokers/{broker_name}/{broker_id}",
        "Forget a broker (its graceful shutdown)",
        None,
        _EMPTY,
        (400,),
    ),
    (
        "get",
        "/brokers",
        "Live broker groups",
        None,
        _answer({"brokers": {"type": "array", "items": _ref("BrokerGroup")}}),
        (),
    ),
    (
        "get",
        "/routes/{topic}",
        "A topic's queues per broker group and their addresses; 404 NO_ROUTE",
        None,
        _ref("TopicRoute"),
        (404,),
    ),
    (
        "get",
        "/topics",
        "Every topic a live broker group serves, sorted",
        None,
        _answer({"topics": {"type": "array", "items": {"type": "string"}}}),
        (),
    ),
    (
        "get",
        "/status",
        "How many broker groups and topics are live",
        None,
        _answer({"brokers": _COUNT, "topics": _COUNT}),
        (),
    ),
    ("get", "/openapi.json", "This document", None, {"type": "object"}, ()),
]


def _parameters(path: str) -> list[dict[str, Any]]:
    schemas = {"broker_id": {"type": "string", "pattern": BROKER_ID_PATTERN}}
    names = [part.strip("{}") for part in path.split("/") if part.startswith("{")]
    return [
        {"name": name, "in": "path", "required": True, "schema": schemas.get(name, _STRING_PATH)}
        for name in names
    ]


def _operation(route: tuple[Any, ...]) -> dict[str, Any]:
    _method, path, summary, request, response, errors = route
    encodings = ("application/json", "application/msgpack")
    json_only = path == "/openapi.json"
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": _parameters(path),
        "responses": {
            "200": {
                "description": "OK",
                "content": {
                    kind: {"schema": response} for kind in encodings[: 1 if json_only else 2]
                },
            },
            **{
                str(code): {
                    "description": "Error",
                    "content": {kind: {"schema": _ref("Error")} for kind in encodings},
                }
                for code in errors
            },
        },
    }
    if request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {kind: {"schema": request} for kind in encodings},
        }
    return operation


def build_namesrv_openapi() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route[1], {})[route[0]] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dledgermq NameServer API",
            "version": __version__,
            "description": "Bodies are JSON or msgpack (Content-Type / Accept). Every error "
            'is {"code", "message"}; codes are listed in dledgermq/errors.py.',
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }
