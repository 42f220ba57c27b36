"""Query-string parsing with clear 400s: unknown names and bad values are rejected."""

from __future__ import annotations

from aiohttp import web

from dledgermq.errors import BadRequest


def check_known(request: web.Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise BadRequest(f"unknown query parameter(s) {unknown}; allowed: {sorted(allowed)}")


def int_param(request: web.Request, name: str, default: int | None, *, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise BadRequest(f"query parameter `{name}` is required")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter `{name}` must be an integer, got {raw!r}") from None
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
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"`{name}` must be an integer, got {raw!r}") from None
    if value < 0:
        raise BadRequest(f"`{name}` must not be negative, got {value}")
    return value
