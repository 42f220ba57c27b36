"""One HTTP session for a client: msgpack both ways, a timeout on every request.

Owns: an `aiohttp.ClientSession`, address normalisation, and the mapping of transport
failures to our errors: connection errors become `Unavailable`, timeouts `Timeout`, and
any non-2xx answer the typed `MQError` rebuilt from its `{"code", "message"}` body.

Must not: retry, pick brokers or know any route (that is `routes.py` and the callers).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import msgpack

from dledgermq.errors import MQError, Timeout, Unavailable, error_from_wire

MSGPACK = "application/msgpack"
DEFAULT_TIMEOUT_S = 5.0
_HEADERS = {"Content-Type": MSGPACK, "Accept": MSGPACK}
_STATUS_ERRORS = {502: Unavailable, 503: Unavailable, 504: Timeout}


def base_url(addr: str) -> str:
    """`host:port` (as brokers register) or a full URL, as a URL without trailing slash."""
    addr = addr.strip().rstrip("/")
    return addr if "://" in addr else f"http://{addr}"


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw:
        return {}
    if content_type in (MSGPACK, "application/x-msgpack"):
        return msgpack.unpackb(raw, raw=False, strict_map_key=False)
    return json.loads(raw)


def _error_for(status: int, raw: bytes, content_type: str, url: str) -> MQError:
    """The typed error of a non-2xx answer; a body without a code still maps by status."""
    try:
        body = _decode(raw, content_type)
    except (ValueError, TypeError):
        body = None
    if isinstance(body, dict) and "code" in body:
        return error_from_wire(body)
    message = f"HTTP {status} from {url}: {raw[:200]!r}"
    cls = _STATUS_ERRORS.get(status)
    if cls is not None:
        return cls(message, url=url)
    return error_from_wire({"code": f"HTTP_{status}", "message": message, "url": url})


class HttpSession:
    """A lazily opened aiohttp session; create it anywhere, use it inside one event loop."""

    def __init__(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        assert timeout_s > 0, timeout_s
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _ensure(self) -> aiohttp.ClientSession:
        if self._closed:
            raise Unavailable("the client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=_HEADERS)
        return self._session

    async def close(self) -> None:
        """Close the session for good; later requests raise Unavailable."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        addr: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Send one request and return the decoded 2xx body.

        Raises:
            Unavailable: the connection could not be made or broke.
            Timeout: no complete answer within `timeout_s` (the outcome is unknown).
            MQError: the server answered with an error (its typed subclass).
        """
        url = base_url(addr) + path
        data = None if body is None else msgpack.packb(body, use_bin_type=True)
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.timeout_s)
        try:
            async with self._ensure().request(
                method, url, params=query, data=data, timeout=timeout
            ) as response:
                raw = await response.read()
                status, content_type = response.status, response.content_type
        except TimeoutError:
            raise Timeout(f"{method} {url}: no answer within {timeout.total}s", url=url) from None
        except aiohttp.ClientError as exc:
            raise Unavailable(f"{method} {url}: {exc!r}", url=url) from None
        if not 200 <= status < 300:
            raise _error_for(status, raw, content_type, url)
        try:
            decoded = _decode(raw, content_type)
        except (ValueError, TypeError) as exc:
            raise Unavailable(f"{method} {url}: undecodable answer: {exc}", url=url) from None
        return decoded if isinstance(decoded, dict) else {"value": decoded}
