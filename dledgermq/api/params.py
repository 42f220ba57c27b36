"""Query-string parsing with clear 400s: unknown names and bad values are rejected."""

from __future__ import annotations

from aiohttp import web

from dledgermq.broker.reserved import parse_decimal
from dledgermq.errors import BadRequest


def check_known(request: web.Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise BadRequest(f"unknown query parameter(s) {unknown}; allowed: {sorted(allowed)}")


def text_field(value: object, name: str, *, max_length: int = 255) -> str:
    """A name a client chose (client id, zone): 1..max_length characters that are valid
    Unicode (no lone surrogate: it could not be hashed, stored or logged) and no control
    characters (they forge log lines)."""
    # A lone surrogate (category Cs) is not printable either.
    if not isinstance(value, str) or not 0 < len(value) <= max_length or not value.isprintable():
        raise BadRequest(
            f"`{name}` must be 1..{max_length} printable characters, got {value!r}"[:400]
        )
    return value


def int_param(request: web.Request, name: str, default: int | None, *, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise BadRequest(f"query parameter `{name}` is required")
        return default
    value = parse_decimal(raw)
    if value is None:
        raise BadRequest(f"query parameter `{name}` must be an integer, got {raw!r}")
    if not low <= value <= high:
        raise BadRequest(f"query parameter `{name}` must be within {low}..{high}, got {value}")
    return value


def str_param(request: web.Request, name: str, default: str | None = None) -> str:
    value = request.query.get(name, default)
    if value is None:
        raise BadRequest(f"query parameter `{name}` is required")
    return value


def path_int(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    value = parse_decimal(raw)
    if value is None:
        raise BadRequest(f"`{name}` must be an integer, got {raw!r}")
    if value < 0:
        raise BadRequest(f"`{name}` must not be negative, got {value}")
    return value
