"""HTTP body encoding for our aiohttp apps: JSON or msgpack by content negotiation.

Owns: reading a request body within a deadline and decoding it by its `Content-Type`,
encoding a response by the request's `Accept`, and the middleware that turns every failure
into `{"code", "message", ...}` with a fitting status (API.md). Shared by the NameServer
and broker apps.

A client that stalls its body gets 408 REQUEST_TIMEOUT and its connection closed; one that
goes away mid-body is counted, not logged with a traceback (probe D9: ten thousand of each
must neither hold the server nor flood its log).

Must not: know any route, any domain type, or how message bodies are represented (turning
`bytes` into `body_base64` for JSON is the caller's job: JSON has no bytes type).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
from aiohttp import web

from dledgermq.connections import QuietTally
from dledgermq.errors import BadRequest, MQError, RequestTimeout

log = logging.getLogger(__name__)

JSON = "application/json"
MSGPACK = "application/msgpack"
# Older clients (and some libraries) still name msgpack with the x- prefix.
MSGPACK_TYPES = frozenset({MSGPACK, "application/x-msgpack"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The whole body must arrive within this (an app may set its own under this key).
BODY_READ_TIMEOUT_S = web.AppKey("body_read_timeout_s", float)
DEFAULT_BODY_READ_TIMEOUT_S = 10.0
# Bodies not read to the end: stalled past the deadline, or the client went away.
BODY_READS = QuietTally("request bodies not read", log)

# aiohttp's own HTTP errors (no route, wrong method, body too large) get codes of our
# shape; the codes a client can rebuild as classes live in `dledgermq.errors`.
_HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "MESSAGE_TOO_LARGE",
}


def wants_msgpack(request: web.Request) -> bool:
    """True when the `Accept` header names msgpack; JSON is the default otherwise."""
    accept = request.headers.get("Accept", "")
    return any(part.split(";")[0].strip().lower() in MSGPACK_TYPES for part in accept.split(","))


def decode(raw: bytes, content_type: str) -> Any:
    """Decode `raw` as msgpack or JSON (anything not msgpack is read as JSON).

    Raises:
        BadRequest: the bytes are not valid for the declared encoding.
    """
    if content_type.lower() in MSGPACK_TYPES:
        try:
            # Map keys are strings, as in JSON: an integer or nil key has no field name.
            body = msgpack.unpackb(raw, raw=False, strict_map_key=True)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise BadRequest(f"malformed msgpack body: {exc}") from None
        if isinstance(body, dict) and any(type(k) is not str for k in body):
            raise BadRequest("malformed msgpack body: map keys must be strings")
        return body
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"malformed JSON body: {type(exc).__name__}: {exc}") from None


class BodyAbandoned(Exception):
    """The client closed its connection before its whole request body arrived: nobody is
    left to answer, so `error_middleware` returns quietly (it was counted)."""


async def read_raw_body(request: web.Request) -> bytes:
    """The whole request body, which must arrive within the app's `BODY_READ_TIMEOUT_S`.

    Raises:
        RequestTimeout: the body did not arrive in time (the connection will be closed).
        BodyAbandoned: the client went away while sending it.
    """
    timeout_s = request.config_dict.get(BODY_READ_TIMEOUT_S, DEFAULT_BODY_READ_TIMEOUT_S)
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        BODY_READS.note("timed out (408)")
        raise RequestTimeout(
            f"the request body did not arrive within {timeout_s:g} s", timeout_s=timeout_s
        ) from None
    except ConnectionError:  # aiohttp fails the body with ConnectionResetError on close.
        BODY_READS.note("abandoned by the client")
        raise BodyAbandoned from None


async def read_body(request: web.Request) -> dict[str, Any]:
    """The request body as a dict; an empty body reads as `{}`.

    Raises:
        BadRequest: the body is malformed or is not an object/map.
        RequestTimeout, BodyAbandoned: see `read_raw_body`.
    """
    raw = await read_raw_body(request)
    if not raw:
        return {}
    body = decode(raw, request.content_type)
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be an object, got {type(body).__name__}")
    return body


def encode(payload: Any, *, as_msgpack: bool) -> tuple[bytes, str]:
    """The encoded bytes and their content type."""
    if as_msgpack:
        return msgpack.packb(payload, use_bin_type=True), MSGPACK
    return json.dumps(payload, separators=(",", ":")).encode(), JSON


def respond(request: web.Request, payload: Any, status: int = 200) -> web.Response:
    """Encode `payload` the way the request's `Accept` header asks for."""
    body, content_type = encode(payload, as_msgpack=wants_msgpack(request))
    return web.Response(body=body, status=status, content_type=content_type)


def error_response(request: web.Request, err: MQError) -> web.Response:
    """The wire form of an expected error, with the status its class declares."""
    return respond(request, err.to_wire(), status=err.status)


def _http_error_response(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = _HTTP_CODES.get(exc.status, exc.reason.upper().replace(" ", "_"))
    payload = {"code": code, "message": f"{exc.reason}: {request.method} {request.path}"}
    response = respond(request, payload, status=exc.status)
    if "Allow" in exc.headers:  # 405 must say which methods are allowed (RFC 9110).
        response.headers["Allow"] = exc.headers["Allow"]
    return response


async def _answer_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send `response`, then close the connection at once: the rest of a stalled body is
    not worth aiohttp's lingering read (up to 10 s more per connection)."""
    with contextlib.suppress(ConnectionError):  # The client may be gone already.
        await response.prepare(request)
        await response.write_eof()
    request.protocol.force_close()  # Buffered output is still flushed before the close.
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map MQError to its status, aiohttp HTTP errors to our shape, anything else to 500."""
    try:
        return await handler(request)
    except RequestTimeout as err:
        return await _answer_and_close(request, error_response(request, err))
    except BodyAbandoned:
        return web.Response(status=400)  # Never sent: the connection is gone.
    except MQError as err:
        return error_response(request, err)
    except web.HTTPException as exc:
        if exc.status < 400:  # Redirects and the like are not errors.
            raise
        return _http_error_response(request, exc)
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return error_response(request, MQError("internal error"))
