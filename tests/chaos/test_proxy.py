"""The partition proxy cuts the real peer transport, link by link, and heals it.

Method: three real `Transport`s on 127.0.0.1; each listens on a private port behind a
`NodeProxy` on the port its peers dial. Frames are counted at the receiver; waits are
bounded conditions.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from chaos.proxy import Links, NodeProxy, partition
from dledgermq.transport import Transport
from tests.conftest import wait_until_async

SECRET = b"proxy-test-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Net:
    def __init__(self) -> None:
        self.links = Links()
        self.received: Counter[tuple[int, int]] = Counter()  # (src, dst) -> frames
        private = {i: ("127.0.0.1", free_port()) for i in (1, 2, 3)}
        public = {i: ("127.0.0.1", free_port()) for i in (1, 2, 3)}
        self.proxies = [NodeProxy(i, public[i], private[i], self.links) for i in (1, 2, 3)]
        self.nodes = {
            i: Transport(i, private[i], public, SECRET, self._on_message(i)) for i in (1, 2, 3)
        }

    def _on_message(self, dst: int):
        def deliver(src: int, payload: dict) -> None:
            self.received[src, dst] += 1

        return deliver

    async def delivered(self, src: int, dst: int, *, after: int) -> bool:
        """Send one more frame; whether more than `after` frames arrived so far."""
        self.nodes[src].send(dst, {"n": after})
        return self.received[src, dst] > after

    async def flows(self, src: int, dst: int) -> None:
        after = self.received[src, dst]
        await wait_until_async(lambda: self.delivered(src, dst, after=after), what=f"{src}->{dst}")


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    n = Net()
    for proxy in n.proxies:
        await proxy.start()
    for node in n.nodes.values():
        await node.start()
    yield n
    for node in n.nodes.values():
        await node.stop()
    for proxy in n.proxies:
        await proxy.stop()


async def test_frames_flow_through_the_proxies_until_a_link_is_cut(net: Net) -> None:
    await net.flows(1, 2)
    await net.flows(2, 1)
    net.links.set_cut(partition([1], [2, 3]))
    before = dict(net.received)
    for _ in range(20):
        for src, dst in ((1, 2), (2, 1), (1, 3), (3, 1)):
            net.nodes[src].send(dst, {"cut": True})
    await net.flows(2, 3)
    for link in ((1, 2), (2, 1), (1, 3), (3, 1)):
        assert net.received[link] == before.get(link, 0), f"{link} still delivers"
    net.links.heal()
    await net.flows(1, 2)
    await net.flows(3, 1)


async def test_an_asymmetric_cut_stops_one_direction_only(net: Net) -> None:
    await net.flows(1, 2)
    net.links.set_cut({(1, 2)})
    cut_at = net.received[1, 2]
    await net.flows(2, 1)
    for _ in range(10):
        net.nodes[1].send(2, {"x": 1})
    await net.flows(1, 3)
    assert net.received[1, 2] == cut_at

    async def redial_swallowed() -> bool:
        return sum(proxy.blackholed for proxy in net.proxies) >= 1

    await wait_until_async(redial_swallowed, what="a redial on the cut link is black-holed")
    assert net.received[1, 2] == cut_at
    # Healing closes the swallowed connection: the dialer cannot tell, so it must be made
    # to dial again, or the link would stay dead after the partition ends.
    net.links.heal()
    await net.flows(1, 2)


def test_partition_cuts_every_link_between_sides() -> None:
    assert partition([1], [2, 3]) == {(1, 2), (1, 3), (2, 1), (3, 1)}
    assert partition([1, 2], [3, 4]) == {
        (a, b) for a, b in [(1, 3), (1, 4), (2, 3), (2, 4), (3, 1), (3, 2), (4, 1), (4, 2)]
    }
