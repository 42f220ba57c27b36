"""Peer transport over loopback: ordering, handshake rejection, reconnects, drops, limits.

Every wait is an awaited condition with a deadline; no sleep is used to synchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from dledgermq import transport as transport_module
from dledgermq.transport import NONCE_BYTES, Transport, build_hello, encode_frame

SECRET = b"cluster-secret"
DEADLINE_S = 5.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def eventually(predicate: Callable[[], bool], *, what: str, timeout_s: float = DEADLINE_S):
    """Await a condition with a deadline (polled; the condition is the synchronisation)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.01)


class Inbox:
    """on_message sink that tests can await."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, dict[Any, Any]]] = []
        self._changed = asyncio.Event()

    def __call__(self, src: int, payload: dict[Any, Any]) -> None:
        self.messages.append((src, payload))
        self._changed.set()

    def seqs_from(self, src: int) -> list[int]:
        return [p["seq"] for s, p in self.messages if s == src]

    async def wait_count(self, src: int, count: int, timeout_s: float = DEADLINE_S) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.seqs_from(src)) < count:
                self._changed.clear()
                await self._changed.wait()


class Net:
    """Builds transports on loopback ports and stops every one of them at teardown."""

    def __init__(self, ids: tuple[int, ...]) -> None:
        self.ports = {i: free_port() for i in ids}
        self.made: list[Transport] = []

    def addresses(self) -> dict[int, tuple[str, int]]:
        return {i: ("127.0.0.1", p) for i, p in self.ports.items()}

    def make(
        self,
        node_id: int,
        *,
        secret: bytes = SECRET,
        peers: dict[int, tuple[str, int]] | None = None,
        **limits: int,
    ) -> tuple[Transport, Inbox]:
        inbox = Inbox()
        listen = ("127.0.0.1", self.ports.get(node_id, 0))
        peers = self.addresses() if peers is None else peers
        node = Transport(node_id, listen, peers, secret, inbox, **limits)
        self.made.append(node)
        return node, inbox

    async def start(self, node_id: int, **kwargs: Any) -> tuple[Transport, Inbox]:
        node, inbox = self.make(node_id, **kwargs)
        await node.start()
        return node, inbox


@pytest.fixture
async def net() -> AsyncIterator[Callable[..., Net]]:
    nets: list[Net] = []

    def build(*ids: int) -> Net:
        nets.append(Net(ids))
        return nets[-1]

    yield build
    for each in nets:
        for node in each.made:
            await node.stop()


@contextlib.asynccontextmanager
async def raw_peer(
    target: Transport, as_node: int, *, secret: bytes = SECRET
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A hand-driven socket that has sent a hello to `target` (valid if the secret matches)."""
    assert target.address is not None
    reader, writer = await asyncio.open_connection(*target.address)
    try:
        challenge = await asyncio.wait_for(reader.readexactly(NONCE_BYTES), DEADLINE_S)
        writer.write(build_hello(secret, as_node, target.node_id, challenge))
        await writer.drain()
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def closed_by_remote(reader: asyncio.StreamReader) -> bool:
    """True once the remote end closes (EOF or reset) within the deadline."""
    async with asyncio.timeout(DEADLINE_S):
        try:
            while await reader.read(1024):
                pass  # e.g. the listener's challenge
        except ConnectionResetError:
            pass
        return True


async def test_two_nodes_exchange_frames_in_order(net) -> None:
    cluster = net(1, 2)
    a, a_inbox = await cluster.start(1)
    b, b_inbox = await cluster.start(2)

    assert all(a.send(2, {"seq": i, "blob": b"x" * i}) for i in range(200))
    assert all(b.send(1, {"seq": i}) for i in range(50))

    await b_inbox.wait_count(1, 200)
    await a_inbox.wait_count(2, 50)
    assert b_inbox.seqs_from(1) == list(range(200))
    assert b_inbox.messages[7][1]["blob"] == b"x" * 7
    assert a_inbox.seqs_from(2) == list(range(50))
    await eventually(lambda: a.sent == 200, what="a.sent")
    assert (a.received, b.received, a.dropped, b.dropped) == (50, 200, 0, 0)


async def test_frames_written_through_and_queued_behind_a_full_socket_keep_their_order(
    net,
) -> None:
    """On a live connection frames go straight to the socket until its buffer passes
    WRITE_THROUGH_MAX_BYTES, then queue for the pump: the peer still gets them in order."""
    cluster = net(1, 2)
    a, _ = await cluster.start(1)
    _, b_inbox = await cluster.start(2)
    assert a.send(2, {"seq": 0})
    await b_inbox.wait_count(1, 1)  # connected, idle: the next frames may be written through
    blob = b"y" * (256 * 1024)
    count = 129  # 32 MiB: more than loopback's kernel buffers and WRITE_THROUGH_MAX_BYTES
    assert all(a.send(2, {"seq": i, "blob": blob}) for i in range(1, count))
    assert a.sent > 1, "the first frames went straight to the socket"
    assert a._links[2].queue, "frames behind a full socket buffer queued"
    await b_inbox.wait_count(1, count, timeout_s=20)
    assert b_inbox.seqs_from(1) == list(range(count))
    assert a.dropped == 0


async def test_three_nodes_keep_order_per_peer(net) -> None:
    cluster = net(1, 2, 3)
    nodes = {i: await cluster.start(i) for i in (1, 2, 3)}

    for i, (node, _) in nodes.items():
        for seq in range(60):
            for peer in (1, 2, 3):
                if peer != i:
                    assert node.send(peer, {"seq": seq, "from": i})

    for i, (_, inbox) in nodes.items():
        for src in (1, 2, 3):
            if src != i:
                await inbox.wait_count(src, 60)
                assert inbox.seqs_from(src) == list(range(60))
                assert all(p["from"] == s for s, p in inbox.messages)


async def test_wrong_secret_is_rejected(net) -> None:
    cluster = net(1, 2)
    a, a_inbox = await cluster.start(1)
    intruder, _ = await cluster.start(2, secret=b"not-the-secret")

    intruder.send(1, {"seq": 0})
    await eventually(lambda: a.rejected_handshakes >= 1, what="a rejected handshake")
    assert a_inbox.messages == []
    assert a.received == 0


async def test_unknown_node_id_is_rejected(net) -> None:
    cluster = net(1, 2)
    a, a_inbox = await cluster.start(1)
    stranger, _ = await cluster.start(9, peers={1: ("127.0.0.1", cluster.ports[1])})

    stranger.send(1, {"seq": 0})
    await eventually(lambda: a.rejected_handshakes >= 1, what="a rejected handshake")
    assert a_inbox.messages == []


async def test_raw_hello_with_bad_mac_is_closed(net) -> None:
    cluster = net(1, 2)
    a, a_inbox = await cluster.start(1)

    async with raw_peer(a, as_node=2, secret=b"guess") as (reader, writer):
        writer.write(encode_frame({"seq": 0}))
        assert await closed_by_remote(reader)
    assert a.rejected_handshakes == 1
    assert a_inbox.messages == []


async def test_silent_dialer_is_cut_off_by_the_handshake_timeout(net, monkeypatch) -> None:
    monkeypatch.setattr(transport_module, "HANDSHAKE_TIMEOUT_S", 0.1)
    cluster = net(1, 2)
    a, _ = await cluster.start(1)
    assert a.address is not None
    reader, writer = await asyncio.open_connection(*a.address)
    try:
        assert await closed_by_remote(reader)
    finally:
        writer.close()
        await writer.wait_closed()
    assert a.rejected_handshakes == 1


async def test_peer_that_starts_later_receives_queued_frames(net) -> None:
    cluster = net(1, 2)
    a, _ = await cluster.start(1)
    assert all(a.send(2, {"seq": i}) for i in range(20))
    assert a.connections == 0

    _, b_inbox = await cluster.start(2)

    await b_inbox.wait_count(1, 20)
    assert b_inbox.seqs_from(1) == list(range(20))
    assert a.dropped == 0


async def test_restarted_peer_is_reconnected_to(net) -> None:
    cluster = net(1, 2)
    a, _ = await cluster.start(1)
    b, b_inbox = await cluster.start(2)
    a.send(2, {"seq": 0})
    await b_inbox.wait_count(1, 1)

    await b.stop()
    b_again, again_inbox = await cluster.start(2)
    await eventually(lambda: a.connections >= 2, what="a reconnecting to the new peer 2")
    assert all(a.send(2, {"seq": i}) for i in range(1, 11))

    await again_inbox.wait_count(1, 10)
    assert again_inbox.seqs_from(1) == list(range(1, 11))
    assert b_again.received == 10


async def test_full_queue_drops_and_send_returns_false(net) -> None:
    cluster = net(1, 2)
    a, _ = cluster.make(1, send_queue_max=3)  # never started: nothing drains the queue

    assert [a.send(2, {"seq": i}) for i in range(5)] == [True, True, True, False, False]
    assert a.dropped == 2
    assert a.sent == 0


async def test_full_queue_while_peer_is_down_then_delivers_what_was_kept(net) -> None:
    cluster = net(1, 2)
    a, _ = await cluster.start(1, send_queue_max=5)
    results = [a.send(2, {"seq": i}) for i in range(8)]
    assert results == [True] * 5 + [False] * 3

    _, b_inbox = await cluster.start(2)
    await b_inbox.wait_count(1, 5)
    assert b_inbox.seqs_from(1) == list(range(5))
    assert a.dropped == 3


async def test_oversized_frame_closes_that_connection_and_node_keeps_serving(net) -> None:
    cluster = net(1, 2, 3)
    a, a_inbox = await cluster.start(1, frame_max_bytes=1024)
    c, _ = await cluster.start(3)

    async with raw_peer(a, as_node=2) as (reader, writer):
        writer.write(encode_frame({"seq": 0}))
        await a_inbox.wait_count(2, 1)  # the valid hello was accepted
        writer.write((1025).to_bytes(4, "big"))
        assert await closed_by_remote(reader)

    c.send(1, {"seq": 0})
    await a_inbox.wait_count(3, 1)
    assert a.received == 2
    assert a.rejected_handshakes == 0


@pytest.mark.parametrize("body", [b"\xc1", b"\x93\x01\x02\x03", b"\x81\xa1k"])
async def test_malformed_frame_closes_that_connection(net, body: bytes) -> None:
    cluster = net(1, 2)
    a, a_inbox = await cluster.start(1)

    async with raw_peer(a, as_node=2) as (reader, writer):
        writer.write(len(body).to_bytes(4, "big") + body)
        assert await closed_by_remote(reader)
    assert a_inbox.messages == []


async def test_failing_handler_closes_only_that_connection(net) -> None:
    cluster = net(1, 2)
    seen: list[int] = []

    def explode(src: int, payload: dict[Any, Any]) -> None:
        seen.append(payload["seq"])
        raise RuntimeError("handler bug")

    a = Transport(1, ("127.0.0.1", cluster.ports[1]), cluster.addresses(), SECRET, explode)
    cluster.made.append(a)
    await a.start()
    async with raw_peer(a, as_node=2) as (reader, writer):
        writer.write(encode_frame({"seq": 1}) + encode_frame({"seq": 2}))
        assert await closed_by_remote(reader)
    assert seen == [1]


async def test_post_from_a_plain_thread_delivers(net) -> None:
    cluster = net(1, 2)
    a, _ = await cluster.start(1)
    _, b_inbox = await cluster.start(2)
    posted: list[bool] = []

    def actor_thread() -> None:
        posted.extend(a.post(2, {"seq": i}) for i in range(30))

    thread = threading.Thread(target=actor_thread)
    thread.start()
    await b_inbox.wait_count(1, 30)
    await asyncio.to_thread(thread.join, DEADLINE_S)
    assert posted == [True] * 30
    assert b_inbox.seqs_from(1) == list(range(30))


async def idle_link(net) -> tuple[Transport, Inbox]:
    """Node 1 connected to node 2, which got frame 0, and the link idle again (an actor
    thread may write to it directly)."""
    cluster = net(1, 2)
    a, _ = await cluster.start(1)
    _, b_inbox = await cluster.start(2)
    assert a.send(2, {"seq": 0})
    await b_inbox.wait_count(1, 1)
    await eventually(lambda: a._links[2].direct is not None, what="the link to go idle")
    return a, b_inbox


async def test_post_on_an_idle_connection_writes_the_frame_itself(net) -> None:
    """The posting thread writes to an idle connection's socket: the frame is out before
    the loop runs again (no hand-off), and it arrives like any other."""
    a, b_inbox = await idle_link(net)

    sent = a.sent
    assert a.post(2, {"seq": 1})  # from the loop's own thread, which does not yield here
    assert a.sent == sent + 1, "written by the posting thread, not handed to the loop"
    await b_inbox.wait_count(1, 2)
    assert b_inbox.seqs_from(1) == [0, 1]


async def test_posts_larger_than_the_socket_takes_keep_their_order(net) -> None:
    """A frame the socket takes only in part is finished by the loop before anything
    else is written; what a thread posts meanwhile waits behind it, in order."""
    a, b_inbox = await idle_link(net)
    blob = b"z" * (4 * 1024 * 1024)  # more than loopback's socket buffer takes at once
    count = 40
    posted: list[bool] = []

    def actor_thread() -> None:
        for i in range(1, count):
            posted.append(a.post(2, {"seq": i, "blob": blob if i % 4 == 1 else b""}))

    thread = threading.Thread(target=actor_thread)
    thread.start()
    await b_inbox.wait_count(1, count, timeout_s=20)
    await asyncio.to_thread(thread.join, DEADLINE_S)
    assert posted == [True] * (count - 1)
    assert b_inbox.seqs_from(1) == list(range(count))
    assert all(len(p["blob"]) == len(blob) for _, p in b_inbox.messages if p["seq"] % 4 == 1)
    assert a.dropped == 0


async def test_a_send_from_the_loop_waits_behind_the_rest_of_a_partly_written_post(
    net,
) -> None:
    """While the loop has yet to write the rest of a frame an actor wrote only in part,
    a frame sent from the loop itself queues behind it instead of cutting into it."""
    a, b_inbox = await idle_link(net)
    link = a._links[2]
    real = link.direct
    assert real is not None

    class TakesHalf:  # a socket whose buffer takes half of what is offered
        def send(self, data: bytes) -> int:
            return real.send(data[: len(data) // 2])

    link.direct = TakesHalf()  # type: ignore[assignment]
    assert a.post(2, {"seq": 1, "blob": b"q" * 1000})  # half now, the rest via the loop
    assert link.rest_pending
    assert a.send(2, {"seq": 2})  # same loop turn, before the rest was written
    await b_inbox.wait_count(1, 3)
    assert b_inbox.seqs_from(1) == [0, 1, 2]
    assert b_inbox.messages[1][1]["blob"] == b"q" * 1000
    assert a.dropped == 0


async def test_post_after_the_peer_went_away_and_came_back(net) -> None:
    """A post to a connection that broke is lost like any frame on a broken link (Raft
    resends), or kept in the queue until the redial; then posts arrive again, in order."""
    cluster = net(1, 2)
    a, _ = await cluster.start(1)
    b, b_inbox = await cluster.start(2)
    assert a.send(2, {"seq": 0})
    await b_inbox.wait_count(1, 1)
    await b.stop()
    for i in range(1, 5):  # may be written to the dying socket or queued: never an error
        assert await asyncio.to_thread(a.post, 2, {"seq": i})
    _, again = await cluster.start(2)
    await eventually(lambda: a.connections >= 2, what="a reconnecting to the new peer 2")
    assert await asyncio.to_thread(a.post, 2, {"seq": 100})
    await eventually(lambda: 100 in again.seqs_from(1), what="the post after the redial")
    assert again.seqs_from(1) == sorted(again.seqs_from(1))


async def test_after_stop_send_and_post_refuse_without_raising(net) -> None:
    cluster = net(1, 2)
    a, _ = await cluster.start(1)
    await a.stop()
    await a.stop()  # idempotent

    assert a.send(2, {"seq": 0}) is False
    assert await asyncio.to_thread(a.post, 2, {"seq": 0}) is False


def test_post_on_a_closed_loop_does_not_raise() -> None:
    node = Transport(1, ("127.0.0.1", 0), {2: ("127.0.0.1", 9)}, SECRET, lambda s, p: None)
    assert node.post(2, {"seq": 0}) is False  # never started: no loop yet

    async def start_and_stop() -> None:
        await node.start()
        await node.stop()

    asyncio.run(start_and_stop())
    node._closed = False  # simulate a post racing the shutdown, after the loop closed
    assert node.post(2, {"seq": 0}) is False


async def test_send_to_an_unknown_peer_is_a_bug(net) -> None:
    cluster = net(1, 2)
    a, _ = cluster.make(1)
    with pytest.raises(KeyError):
        a.send(7, {"seq": 0})


def test_constructor_rejects_an_empty_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        Transport(1, ("127.0.0.1", 0), {}, b"", lambda s, p: None)


async def test_a_recorded_hello_cannot_be_replayed(net) -> None:
    """A hello answers one connection's challenge; replayed on a new one it is refused."""
    cluster = net(1, 2)
    a, a_inbox = await cluster.start(1)
    assert a.address is not None
    reader, writer = await asyncio.open_connection(*a.address)
    challenge = await asyncio.wait_for(reader.readexactly(NONCE_BYTES), DEADLINE_S)
    recorded = build_hello(SECRET, 2, 1, challenge)  # what an eavesdropper would capture
    writer.close()
    await writer.wait_closed()
    reader, writer = await asyncio.open_connection(*a.address)
    try:
        writer.write(recorded + encode_frame({"seq": 0}))
        await writer.drain()
        assert await closed_by_remote(reader)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    assert a.rejected_handshakes == 2  # the recording connection (no hello), the replay
    assert a_inbox.messages == []


async def test_a_listener_that_hangs_up_before_its_challenge_is_redialled(net) -> None:
    """Regression: the dialer's link task died on an early EOF and never dialled again."""
    cluster = net(1, 2)
    hung_up = 0

    async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal hung_up
        hung_up += 1
        writer.close()

    impostor = await asyncio.start_server(hang_up, "127.0.0.1", cluster.ports[2])
    a, _ = await cluster.start(1)
    a.send(2, {"seq": 0})
    await eventually(lambda: hung_up >= 2, what="a redialling after an early hang-up")
    impostor.close()
    await impostor.wait_closed()
    _, b_inbox = await cluster.start(2)
    assert a.send(2, {"seq": 1})
    await b_inbox.wait_count(1, 1)


async def test_queue_is_bounded_in_bytes_as_well_as_frames(net) -> None:
    cluster = net(1, 2)
    a, _ = cluster.make(1, send_queue_max_bytes=10_000)  # never started: nothing drains
    big = {"data": b"x" * 4_000}
    assert a.send(2, big)
    assert a.send(2, big)
    assert not a.send(2, big)  # a third would pass 10,000 bytes
    assert a.dropped == 1
    lonely, _ = cluster.make(2, send_queue_max_bytes=100)
    assert lonely.send(1, big)  # one frame always fits, however large
