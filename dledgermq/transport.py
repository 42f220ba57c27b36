"""Peer links between broker nodes: one-way, length-prefixed msgpack frames over TCP.

Owns: every peer socket of the process. That is the listening server, one outbound
connection per peer (dialled lazily by a per-peer writer task and redialled with
tenacity's exponential backoff plus jitter), one bounded send queue per peer, and the
HMAC handshake that keeps anything outside the cluster from speaking to a node.

Protocol (etcd style): messages are one-way; a response is just another message.
A frame is a 4-byte big-endian length followed by a msgpack map. On every new
connection the listener first sends a fresh 16-byte challenge; the dialer answers with a
fixed-size hello::

    node_id (8 bytes, big-endian) | nonce (16 random bytes) |
    HMAC-SHA256(secret, b"dledgermq-peer-v2" + node_id + nonce + challenge + listener_node_id)

The listener checks it with ``hmac.compare_digest`` against a known peer id, within
``HANDSHAKE_TIMEOUT_S``, and otherwise closes the connection and counts a rejected
handshake. After the challenge the listener never writes on an inbound connection. The
hello binds the dialer to the listener and to this connection's challenge, so a recorded
hello cannot be replayed. (Frames themselves are not encrypted or authenticated one by
one: someone able to rewrite traffic on the cluster's network could still inject them.)

Delivery is at-most-once per frame and in order per peer while a connection lasts. A
frame posted from an actor thread while its peer's connection is idle (connected, nothing
queued, posted or buffered) is written to the socket by that thread at once, without
waking the loop: on a one-message path that is one thread hand-off less per hop (see
`post`). Otherwise it goes through the loop, which writes it at once while the socket
keeps up; the pump task drains only what queued up behind a busy socket. Inbound
frames are cut from whole chunks read off the socket, so a burst costs one read, not two
awaits per frame.
A full queue (``send_queue_max`` frames or ``send_queue_max_bytes`` bytes, whichever comes
first: AppendEntries and HA pushes carry megabytes) drops the new frame (``send`` returns
False); frames queued while a peer is
down stay queued and go out after the reconnect; frames that fail mid-write are dropped,
never resent. Raft repairs every loss with its next heartbeat or append.

Must not: know message types (the codec owns those; we carry ``dict`` payloads), retry
anything above the connection level, block the loop, import pykka or any actor/API
module. Actor threads reach it only through the thread-safe ``post``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential,
    wait_random,
)

log = logging.getLogger(__name__)

Payload = dict[Any, Any]
OnMessage = Callable[[int, Payload], None]
Address = tuple[str, int]

HELLO_CONTEXT = b"dledgermq-peer-v2"
NONCE_BYTES = 16
HELLO_BYTES = 8 + NONCE_BYTES + hashlib.sha256().digest_size
FRAME_HEADER = struct.Struct(">I")
FRAME_MAX_BYTES = 64 * 1024 * 1024

HANDSHAKE_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0
WRITE_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
IDLE_POLL_S = 1.0
CLOSE_TIMEOUT_S = 1.0
STOP_TIMEOUT_S = 3.0
BACKOFF_INITIAL_S = 0.05
BACKOFF_MAX_S = 1.0
BACKOFF_JITTER_S = 0.05
# A link that lived at least this long counts as healthy: the next dial is immediate.
# Shorter-lived links (e.g. rejected handshakes) keep backing off, so no busy redial.
HEALTHY_LINK_S = 1.0
BATCH_MAX_FRAMES = 128
# A frame is written straight to a connected peer's socket while its queue is empty and
# the socket's own buffer holds less than this; beyond, frames queue (bounded) for the pump.
WRITE_THROUGH_MAX_BYTES = 1024 * 1024
READ_CHUNK_BYTES = 256 * 1024
SEND_QUEUE_MAX_BYTES = 64 * 1024 * 1024
# An inbound link with no frame for this long is closed (a dead peer's half-open socket
# would otherwise hold a task and a socket until stop); Raft traffic is never this quiet
# on a live link, and a quiet peer simply redials.
INBOUND_IDLE_CLOSE_S = 120.0


class _LinkDown(Exception):
    """A connection ended too soon to count as healthy; back off before the next dial."""


def build_hello(
    secret: bytes, node_id: int, listener_id: int, challenge: bytes, nonce: bytes | None = None
) -> bytes:
    """The dialer's hello: its node id, a nonce and the HMAC binding both to the listener
    and to the `challenge` the listener sent on this very connection (no replay)."""
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    assert len(nonce) == NONCE_BYTES
    assert len(challenge) == NONCE_BYTES
    mac = _hello_mac(secret, node_id, nonce, challenge, listener_id)
    return _id_bytes(node_id) + nonce + mac


def encode_frame(payload: Payload) -> bytes:
    """Length prefix + msgpack body (what goes on the wire for one message)."""
    body = msgpack.packb(payload, use_bin_type=True)
    return FRAME_HEADER.pack(len(body)) + body


def _id_bytes(node_id: int) -> bytes:
    return node_id.to_bytes(8, "big")


def _hello_mac(
    secret: bytes, node_id: int, nonce: bytes, challenge: bytes, listener_id: int
) -> bytes:
    signed = HELLO_CONTEXT + _id_bytes(node_id) + nonce + challenge + _id_bytes(listener_id)
    return hmac.new(secret, signed, hashlib.sha256).digest()


def _decode_body(body: bytes | memoryview) -> Payload | None:
    """The frame's dict, or None when it is not a msgpack map."""
    try:
        payload = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    return payload if isinstance(payload, dict) else None


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT_S)


class _PeerLink:
    """Outbound state for one peer: its address, bounded frame queue and wake-up event."""

    def __init__(self, peer_id: int, address: Address) -> None:
        self.peer_id = peer_id
        self.address = address
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.wake = asyncio.Event()
        # The connection while it is up: frames may be written through (see `send`).
        self.writer: asyncio.StreamWriter | None = None
        # Every write to the connection's socket, from the loop or an actor thread, holds
        # `lock`. `sock` is our own duplicate of the connection's descriptor (so it is never
        # a number reused after asyncio closed its own), for the whole session; `direct` is
        # it while an actor thread may write a frame itself: connected, and nothing queued,
        # posted to the loop or buffered by asyncio that the frame could overtake.
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.direct: socket.socket | None = None
        self.posted = 0  # Frames handed to the loop by `post` and not yet written.
        # The socket took only part of a frame an actor wrote: until the loop wrote the
        # rest (`_write_rest`), nothing else may be written to this connection.
        self.rest_pending = False
        self.sent = 0

    def update_direct(self) -> None:
        """Allow direct writes while the connection is idle (call holding `lock`)."""
        writer = self.writer
        idle = (
            writer is not None
            and not self.queue
            and self.posted == 0
            and not self.rest_pending
            and not writer.transport.is_closing()
            and writer.transport.get_write_buffer_size() == 0
        )
        self.direct = self.sock if idle else None


class Transport:
    """All peer sockets of one node: send frames to peers, deliver theirs to `on_message`."""

    def __init__(  # noqa: PLR0913 - the interface fixed by the design (two limits are kw-only)
        self,
        node_id: int,
        listen: Address,
        peers: dict[int, Address],
        secret: bytes,
        on_message: OnMessage,
        *,
        send_queue_max: int = 4096,
        frame_max_bytes: int = FRAME_MAX_BYTES,
        send_queue_max_bytes: int = SEND_QUEUE_MAX_BYTES,
    ) -> None:
        if not 0 <= node_id < 2**64 or not all(0 <= p < 2**64 for p in peers):
            raise ValueError("node ids must fit in 8 unsigned bytes")
        if not secret:
            raise ValueError("the cluster secret must not be empty")
        if send_queue_max < 1 or frame_max_bytes < 1 or send_queue_max_bytes < 1:
            raise ValueError("queue and frame limits must be positive")
        self.node_id = node_id
        self._listen = listen
        self._secret = secret
        self._on_message = on_message
        self._queue_max = send_queue_max
        self._frame_max = frame_max_bytes
        self._queue_max_bytes = send_queue_max_bytes
        self._links = {p: _PeerLink(p, a) for p, a in peers.items() if p != node_id}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = False
        self._closed = False
        self.address: Address | None = None
        self.dropped = 0
        self.received = 0
        self.rejected_handshakes = 0
        self.connections = 0

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on `listen` and start one writer task per peer."""
        assert self._loop is None, "a Transport starts once"
        assert not self._closed, "a stopped Transport cannot start again"
        self._loop = asyncio.get_running_loop()
        host, port = self._listen
        self._server = await asyncio.start_server(self._serve, host, port)
        self.address = self._server.sockets[0].getsockname()[:2]
        self._running = True
        for link in self._links.values():
            self._track(self._loop.create_task(self._run_link(link)))
        log.info("transport %d listening on %s:%d", self.node_id, *self.address)

    async def stop(self) -> None:
        """Close the server and every connection; cancel all tasks (bounded)."""
        if self._closed:
            return
        self._closed = True
        self._running = False
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), STOP_TIMEOUT_S)
        for link in self._links.values():
            self.dropped += len(link.queue)
            link.queue.clear()
            link.queued_bytes = 0

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._untrack)

    def _untrack(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.critical("transport %d task died", self.node_id, exc_info=task.exception())

    # -- sending -----------------------------------------------------------------------

    @property
    def sent(self) -> int:
        """Frames written to a socket (counted per link, under its lock)."""
        return sum(link.sent for link in self._links.values())

    def send(self, peer: int, payload: Payload) -> bool:
        """Queue one frame for `peer` (loop thread only). False: dropped (full or closed)."""
        return self._send_frame(self._links[peer], encode_frame(payload))

    def _send_frame(self, link: _PeerLink, frame: bytes) -> bool:
        if self._closed or len(link.queue) >= self._queue_max:
            self.dropped += 1
            return False
        if len(frame) - FRAME_HEADER.size > self._frame_max:
            log.error(
                "dropping a %d-byte frame to peer %d (limit %d)",
                len(frame),
                link.peer_id,
                self._frame_max,
            )
            self.dropped += 1
            return False
        if link.queue and link.queued_bytes + len(frame) > self._queue_max_bytes:
            self.dropped += 1  # One frame always fits, so a big one cannot starve a link.
            return False
        writer = link.writer
        if (
            writer is not None
            and not link.queue
            and not link.rest_pending
            and not writer.transport.is_closing()
            and writer.transport.get_write_buffer_size() < WRITE_THROUGH_MAX_BYTES
        ):
            with link.lock:
                writer.write(frame)  # In order: nothing is queued ahead of it.
                link.sent += 1
                link.update_direct()
            return True
        with link.lock:
            link.direct = None  # Nothing may overtake what queues now.
        link.queue.append(frame)
        link.queued_bytes += len(frame)
        link.wake.set()
        return True

    def post(self, peer: int, payload: Payload) -> bool:
        """Thread-safe `send` for actor threads. Never blocks, never raises on a closed loop.

        While the peer's connection is idle, this thread writes the frame to the socket
        itself (non-blocking); a frame the socket does not take whole, and every frame
        while the connection is busy, goes through the loop, in order.
        True means the frame was written or handed to the loop, not that it was queued.
        """
        loop = self._loop
        if loop is None or self._closed:
            return False
        link = self._links[peer]
        frame = encode_frame(payload)
        with link.lock:
            sock = link.direct
            if sock is not None and len(frame) - FRAME_HEADER.size <= self._frame_max:
                try:
                    written = sock.send(frame)
                except OSError:  # Full, or broken (then the loop queues it for the redial).
                    written = 0
                if written == len(frame):
                    link.sent += 1
                    return True
                link.direct = None
                if written:  # The rest must be the next bytes on this very connection.
                    link.rest_pending = True
                    return self._post(loop, self._write_rest, link, link.writer, frame[written:])
            link.posted += 1
            return self._post(loop, self._send_posted, link, frame)

    @staticmethod
    def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> bool:
        """Hand `callback(*args)` to the loop (in the link's lock, so posts keep order)."""
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed during shutdown
            return False
        return True

    def _send_posted(self, link: _PeerLink, frame: bytes) -> None:
        with link.lock:
            link.posted -= 1
        self._send_frame(link, frame)

    def _write_rest(
        self, link: _PeerLink, writer: asyncio.StreamWriter | None, rest: bytes
    ) -> None:
        """Write the part of a frame the socket did not take (else the stream is cut)."""
        with link.lock:
            if writer is not None and writer is link.writer and not writer.transport.is_closing():
                writer.write(rest)
                link.sent += 1
            else:
                self.dropped += 1  # That connection is gone, and the frame with it.
            link.rest_pending = False
            link.update_direct()
        link.wake.set()  # The pump may write what queued behind it.

    # -- outbound links ----------------------------------------------------------------

    async def _run_link(self, link: _PeerLink) -> None:
        """Keep one connection to `link`'s peer while running; back off between failures."""
        while self._running:
            retrying = AsyncRetrying(
                wait=wait_exponential(multiplier=BACKOFF_INITIAL_S, max=BACKOFF_MAX_S)
                + wait_random(0, BACKOFF_JITTER_S),
                retry=retry_if_exception_type((OSError, TimeoutError, _LinkDown)),
                stop=self._stopped,
                reraise=True,
            )
            try:
                async for attempt in retrying:
                    with attempt:
                        await self._session(link)
            except (OSError, TimeoutError, _LinkDown):
                return  # only reached once stopped

    def _stopped(self, _state: RetryCallState) -> bool:
        return not self._running

    async def _session(self, link: _PeerLink) -> None:
        """One connection: dial, pump frames until it breaks. Raises `_LinkDown` if short."""
        reader, writer = await self._dial(link)
        started = asyncio.get_running_loop().time()
        down = asyncio.Event()
        watcher = asyncio.create_task(self._watch_eof(reader, down, link))
        sock = None
        try:
            sock = socket.socket(fileno=os.dup(writer.get_extra_info("socket").fileno()))
            sock.setblocking(False)
            link.sock = sock
            await self._pump(link, writer, down)
        finally:
            with link.lock:  # No actor thread writes to it from here on.
                link.writer = link.direct = link.sock = None
                link.rest_pending = False
            if sock is not None:
                sock.close()
            writer.close()  # Now: a stop that cancels the waits below must not leak it.
            watcher.cancel()
            await asyncio.wait([watcher], timeout=CLOSE_TIMEOUT_S)
            await _close_writer(writer)
        if self._running and asyncio.get_running_loop().time() - started < HEALTHY_LINK_S:
            raise _LinkDown

    async def _dial(self, link: _PeerLink) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = link.address
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
        )
        try:
            challenge = await asyncio.wait_for(reader.readexactly(NONCE_BYTES), HANDSHAKE_TIMEOUT_S)
            writer.write(build_hello(self._secret, self.node_id, link.peer_id, challenge))
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
        except asyncio.IncompleteReadError:
            # Closed before its challenge (a peer restarting, a proxy without upstream):
            # a failed dial like any other, retried with backoff.
            await _close_writer(writer)
            raise _LinkDown from None
        except BaseException:
            await _close_writer(writer)
            raise
        self.connections += 1
        log.debug("transport %d connected to peer %d", self.node_id, link.peer_id)
        return reader, writer

    async def _watch_eof(
        self, reader: asyncio.StreamReader, down: asyncio.Event, link: _PeerLink
    ) -> None:
        """Notice a closed connection while idle (the listener never writes to us)."""
        try:
            while self._running:
                with contextlib.suppress(TimeoutError):
                    if not await asyncio.wait_for(reader.read(4096), IDLE_POLL_S):
                        break
        except OSError:
            pass
        with link.lock:
            link.writer = link.direct = None
        down.set()
        link.wake.set()

    async def _pump(
        self, link: _PeerLink, writer: asyncio.StreamWriter, down: asyncio.Event
    ) -> None:
        """Write queued frames in batches until stopped or the connection breaks; frames
        sent while nothing is queued go straight to the socket meanwhile (`send`)."""
        while self._running and not down.is_set():
            if not link.queue or link.rest_pending:
                with link.lock:
                    link.writer = writer
                    link.update_direct()
                link.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(IDLE_POLL_S):
                        await link.wake.wait()
                continue
            count = min(len(link.queue), BATCH_MAX_FRAMES)
            batch = [link.queue.popleft() for _ in range(count)]
            link.queued_bytes -= sum(len(frame) for frame in batch)
            try:
                with link.lock:
                    writer.writelines(batch)
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    await writer.drain()
            except (OSError, TimeoutError) as exc:
                self.dropped += count  # at-most-once: never resend a frame that may be out
                log.info("link %d->%d broke mid-write: %r", self.node_id, link.peer_id, exc)
                return
            with link.lock:
                link.sent += count

    # -- inbound connections -----------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._track(task)
        try:
            if not self._running:
                return
            challenge = os.urandom(NONCE_BYTES)  # Fresh per connection: no hello replays.
            writer.write(challenge)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
            src = await self._accept_hello(reader, challenge)
            if src is None:
                self.rejected_handshakes += 1
                log.warning(
                    "transport %d rejected a handshake from %s",
                    self.node_id,
                    writer.get_extra_info("peername"),
                )
                return
            await self._read_frames(src, reader)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the peer went away; it will redial
        except asyncio.CancelledError:
            if not self._closed:
                raise
            # Stopping: end normally, or asyncio's stream callback logs the cancellation
            # as an error.
        finally:
            await _close_writer(writer)

    async def _accept_hello(self, reader: asyncio.StreamReader, challenge: bytes) -> int | None:
        """The dialer's node id if its hello is valid, else None."""
        try:
            hello = await asyncio.wait_for(reader.readexactly(HELLO_BYTES), HANDSHAKE_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError):
            return None
        src = int.from_bytes(hello[:8], "big")
        nonce, mac = hello[8 : 8 + NONCE_BYTES], hello[8 + NONCE_BYTES :]
        if src not in self._links:
            return None
        expected = _hello_mac(self._secret, src, nonce, challenge, self.node_id)
        return src if hmac.compare_digest(mac, expected) else None

    async def _read_frames(self, src: int, reader: asyncio.StreamReader) -> None:
        """Deliver frames from an authenticated peer until EOF, a bad frame or stop."""
        buffer = bytearray()
        quiet_s = 0.0
        while self._running:
            try:
                async with asyncio.timeout(IDLE_POLL_S):
                    chunk = await reader.read(READ_CHUNK_BYTES)
            except TimeoutError:
                quiet_s += IDLE_POLL_S
                if buffer and quiet_s >= BODY_TIMEOUT_S:
                    log.warning("peer %d stalled inside a frame; closing", src)
                    return
                if quiet_s >= INBOUND_IDLE_CLOSE_S:  # A half-open link (peer lost power):
                    log.info("peer %d silent for %.0fs; closing", src, INBOUND_IDLE_CLOSE_S)
                    return  # it redials when it has something to say.
                continue
            if not chunk:
                return  # EOF
            quiet_s = 0.0
            buffer += chunk
            used = self._deliver_whole_frames(src, buffer)
            if used is None:
                return
            del buffer[:used]

    def _deliver_whole_frames(self, src: int, buffer: bytearray) -> int | None:
        """Deliver every complete frame at the start of `buffer`; the bytes they used, or
        None when the connection must close (an oversized or malformed frame)."""
        pos = 0
        with memoryview(buffer) as view:
            while len(view) - pos >= FRAME_HEADER.size:
                (size,) = FRAME_HEADER.unpack_from(view, pos)
                if size > self._frame_max:
                    log.warning(
                        "peer %d sent a %d-byte frame (limit %d); closing",
                        src,
                        size,
                        self._frame_max,
                    )
                    return None
                end = pos + FRAME_HEADER.size + size
                if end > len(view):
                    break
                payload = _decode_body(view[pos + FRAME_HEADER.size : end])
                if payload is None:
                    log.warning("peer %d sent a malformed frame; closing", src)
                    return None
                self.received += 1
                if not self._deliver(src, payload):
                    return None
                pos = end
        return pos

    def _deliver(self, src: int, payload: Payload) -> bool:
        """Hand one message to the owner; a failing handler closes only this connection."""
        try:
            self._on_message(src, payload)
        except Exception:
            log.exception("on_message failed for a frame from peer %d; closing link", src)
            return False
        return True
