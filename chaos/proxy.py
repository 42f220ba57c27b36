"""Network partitions on the real peer transport: one TCP proxy in front of each node.

Every node listens for peer traffic on a private port (`peer_listen_port` in the chaos
cluster file); its peers dial its public `peer_port`, where a `NodeProxy` forwards to the
private one. Peer links are one-way (the dialer sends frames, the listener only sends the
handshake challenge), and the dialer's hello starts with its node id, so the proxy knows
which link (src -> dst) a connection carries before it forwards a single frame.

`Links` holds the cut links. Cutting a link closes its connections; a new connection on a
cut link is accepted and then black-holed (read and discarded, nothing forwarded), which
is what a dropped packet looks like to the dialer: a handshake that never completes. A
partition of A from B cuts both (A, B) and (B, A); asymmetric cuts are possible too.
Loopback only; `stop()` closes the listener and every connection, then waits (bounded)
for their tasks to end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Iterable
from typing import TypeVar

from dledgermq.transport import HELLO_BYTES, NONCE_BYTES

T = TypeVar("T", bound=Hashable)
CHUNK = 256 * 1024
CONNECT_TIMEOUT_S = 2.0


class Links:
    """The set of cut links (src, dst), shared by every proxy of a run (one loop)."""

    def __init__(self) -> None:
        self.cut: set[tuple[int, int]] = set()
        self._proxies: list[NodeProxy] = []

    def register(self, proxy: NodeProxy) -> None:
        self._proxies.append(proxy)

    def set_cut(self, links: Iterable[tuple[int, int]]) -> None:
        """Make exactly `links` cut (heal the rest); drop connections of newly cut ones."""
        self.cut = set(links)
        for proxy in self._proxies:
            proxy.drop_cut()

    def heal(self) -> None:
        self.set_cut(())


def partition(*sides: Iterable[T]) -> set[tuple[T, T]]:
    """Links cut between every pair of sides (each side talks only within itself)."""
    groups = [set(side) for side in sides]
    return {(a, b) for x in groups for y in groups if x is not y for a in x for b in y}


class NodeProxy:
    def __init__(
        self, node_id: int, listen: tuple[str, int], target: tuple[str, int], links: Links
    ) -> None:
        self.node_id = node_id
        self._listen = listen
        self._target = target
        self._links = links
        self._server: asyncio.Server | None = None
        # One entry per live connection: src node and the two writers to close it by.
        self._conns: dict[asyncio.Task[None], tuple[int, list[asyncio.StreamWriter]]] = {}
        # Connections swallowed while their link was cut: closed when it heals, so that the
        # dialer (which cannot tell) dials again, as it would once packets flow again.
        self._swallowing: set[asyncio.Task[None]] = set()
        self.forwarded_bytes = 0
        self.blackholed = 0
        links.register(self)

    async def start(self) -> None:
        host, port = self._listen
        self._server = await asyncio.start_server(self._serve, host, port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for _, writers in self._conns.values():
            _close(writers)
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=3)

    def drop_cut(self) -> None:
        """Close the connections of links that are cut now (their pumps then end), and the
        swallowed ones of links that healed."""
        for task, (src, writers) in list(self._conns.items()):
            cut = (src, self.node_id) in self._links.cut
            if cut != (task in self._swallowing):
                _close(writers)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        writers = [client_w]
        self._conns[task] = (-1, writers)
        try:
            upstream_r, upstream_w = await asyncio.wait_for(
                asyncio.open_connection(*self._target), CONNECT_TIMEOUT_S
            )
            writers.append(upstream_w)
            challenge = await upstream_r.readexactly(NONCE_BYTES)
            client_w.write(challenge)
            hello = await client_r.readexactly(HELLO_BYTES)
            src = int.from_bytes(hello[:8], "big")
            self._conns[task] = (src, writers)
            if (src, self.node_id) in self._links.cut:
                self.blackholed += 1
                self._swallowing.add(task)
                upstream_w.close()
                while await client_r.read(CHUNK):  # A dropped link: swallow everything.
                    pass
                return
            upstream_w.write(hello)
            while data := await client_r.read(CHUNK):
                upstream_w.write(data)
                self.forwarded_bytes += len(data)
                await upstream_w.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self._conns.pop(task, None)
            self._swallowing.discard(task)
            _close(writers)
            for writer in writers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1)


def _close(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
