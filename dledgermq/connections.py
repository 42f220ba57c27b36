"""Bounds on the client connections of one HTTP listener (security probe D9).

aiohttp's server has neither a connection limit nor a timeout on reading a request head:
a client may open thousands of connections and send each a few bytes, and every one holds
a socket, a handler task and a parser until it goes away. `GuardedTCPSite` is a drop-in
`web.TCPSite` that wraps each connection's `RequestHandler` in a thin protocol which

- closes a new connection at once when `max_connections` are already open, and
- closes a connection whose first request head has not fully arrived (`\\r\\n\\r\\n`; the
  parser accepts nothing else) within `head_timeout_s`.

Later heads on a kept-alive connection are bounded by aiohttp's own `keepalive_timeout`,
which closes a connection still waiting for a complete request once it expires; a stalled
body by `wire.read_body`'s timeout. Both closings are expected, client-caused outcomes, so
`QuietTally` counts them and logs one summary line per window instead of one per client.

It is a `BaseSite`, aiohttp's supported hook for custom listeners, so `runner.cleanup()`
stops it and `runner.addresses` lists it. Shared by the broker and the NameServer; knows
no route and no config file.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import cast

from aiohttp import web

log = logging.getLogger(__name__)

HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per listener: how many client connections may be open, and how long a new one may
    take to deliver its first complete request head."""

    max_connections: int = 4096
    head_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        assert self.max_connections >= 1, self.max_connections
        assert self.head_timeout_s > 0, self.head_timeout_s


class QuietTally:
    """Counts expected, client-caused closings and logs one line per window with the
    counts by kind, instead of a line (or a traceback) per connection: ten thousand
    stalled clients going away must not flood the log or starve the event loop.

    Use it on the event loop thread only; `totals` keeps the lifetime counts (tests,
    status pages).
    """

    def __init__(self, what: str, logger: logging.Logger = log, window_s: float = 10.0) -> None:
        assert window_s > 0, window_s
        self.what = what
        self.totals: Counter[str] = Counter()
        self._logger = logger
        self._window_s = window_s
        self._pending: Counter[str] = Counter()
        self._flush_at: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def note(self, kind: str) -> None:
        """Count one event; the summary is logged at the end of the current window."""
        self.totals[kind] += 1
        self._pending[kind] += 1
        loop = asyncio.get_running_loop()
        # A handle on another (closed) loop never fires: tests run one loop per test.
        if self._flush_at is None or self._loop is not loop:
            self._loop = loop
            self._flush_at = loop.call_later(self._window_s, self.flush)

    def flush(self) -> None:
        """Log what was counted since the last summary (nothing if nothing was)."""
        if self._flush_at is not None:
            self._flush_at.cancel()
        self._flush_at = None
        if not self._pending:
            return
        counts = ", ".join(f"{n} {kind}" for kind, n in self._pending.most_common())
        self._logger.warning("%s: %s", self.what, counts)
        self._pending.clear()


class GuardedTCPSite(web.BaseSite):
    """A TCP listener for an `AppRunner` that enforces `ConnectionLimits` (module doc)."""

    __slots__ = ("_host", "_limits", "_open", "_port", "tally")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        limits: ConnectionLimits | None = None,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._limits = limits or ConnectionLimits()
        self._open = 0
        self.tally = QuietTally("client connections closed")

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        """The bound port (the requested one until started; useful with port 0)."""
        if self._server is not None:
            sockets = cast(asyncio.Server, self._server).sockets
            if sockets:
                return int(sockets[0].getsockname()[1])
        return self._port

    @property
    def open_connections(self) -> int:
        return self._open

    async def start(self) -> None:
        await super().start()  # Registers the site with its runner.
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _GuardedConnection(self), self._host, self._port, backlog=self._backlog
        )
        self.tally.what = f"{self.name}: client connections closed"  # The bound port.

    def _admit(self) -> bool:
        if self._open >= self._limits.max_connections:
            self.tally.note(f"refused over the cap of {self._limits.max_connections}")
            return False
        self._open += 1
        return True

    def _release(self) -> None:
        self._open -= 1
        assert self._open >= 0, self._open

    def _handler(self) -> web.RequestHandler | None:
        """aiohttp's handler for a new connection (None once the runner is cleaned up)."""
        server = self._runner.server
        return server() if server is not None else None


class _GuardedConnection(asyncio.Protocol):
    """One client connection: aiohttp's `RequestHandler` inside, plus the cap and the
    first-head deadline. It forwards every protocol call; the handler never learns."""

    def __init__(self, site: GuardedTCPSite) -> None:
        self._site = site
        self._inner: web.RequestHandler | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._tail = b""  # The last bytes seen, for a head end split across reads.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        inner = self._site._handler()
        if inner is None or not self._site._admit():
            transport.close()  # Nothing read yet, so the client sees a plain close.
            return
        self._inner = inner
        timeout_s = self._site._limits.head_timeout_s
        self._deadline = asyncio.get_running_loop().call_later(timeout_s, self._head_timed_out)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._deadline is not None:
            seen = self._tail + data
            if HEAD_END in seen:
                self._deadline.cancel()
                self._deadline = None
                self._tail = b""
            else:
                self._tail = seen[-(len(HEAD_END) - 1) :]
        self._inner.data_received(data)

    def eof_received(self) -> None:
        if self._inner is not None:
            self._inner.eof_received()  # None: the transport closes, as aiohttp's does.

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        inner, self._inner = self._inner, None
        if inner is None:  # Refused at the cap (or already lost).
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._site._release()
        inner.connection_lost(exc)

    def _head_timed_out(self) -> None:
        self._deadline = None
        if self._inner is not None:
            self._site.tally.note("without a complete request head in time")
            self._inner.force_close()  # aiohttp's own quiet close of an idle connection.
