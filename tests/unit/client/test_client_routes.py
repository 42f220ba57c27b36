"""NameServer rotation and the route cache, driven by fakes and an explicit clock.

Goal: the client fails over round-robin between NameServers, refreshes a route when it
ages out or after an error, and keeps serving a stale route while no NameServer answers.
"""

import pytest

from dledgermq.client.routes import STALE_HOLD_S, Rotation, RouteCache
from dledgermq.client.topic_route import TopicRouteData
from dledgermq.errors import NoRoute, Unavailable


def route(topic, queues=1):
    return TopicRouteData.from_wire(
        {
            "topic": topic,
            "queues": [
                {"broker_name": "a", "read_queues": queues, "write_queues": queues, "perm": 6}
            ],
            "brokers": [{"broker_name": "a", "addrs": {"0": "h:1"}}],
        }
    )


def test_rotation_order_and_failover():
    rotation = Rotation(["n1", "n2", "n3"], start=1)
    assert rotation.order() == ["n2", "n3", "n1"]
    rotation.failed("n2")
    assert rotation.current == "n3"
    rotation.failed("n2")  # A late report about a server already passed changes nothing.
    assert rotation.current == "n3"
    rotation.failed("n3")
    assert rotation.order() == ["n1", "n2", "n3"]


class FakeNameServer:
    def __init__(self):
        self.calls = 0
        self.answer = route("T")

    async def route(self, topic):
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def parts():
    nameserver, clock = FakeNameServer(), Clock()
    return nameserver, clock, RouteCache(nameserver, refresh_s=30, clock=clock)


async def test_route_is_cached_until_it_ages_out(parts):
    nameserver, clock, cache = parts
    await cache.get("T")
    await cache.get("T")
    assert nameserver.calls == 1
    clock.now += 30
    nameserver.answer = route("T", queues=4)
    assert len((await cache.get("T")).readable_queues()) == 4
    assert nameserver.calls == 2


async def test_invalidate_forces_a_refresh(parts):
    nameserver, _, cache = parts
    await cache.get("T")
    cache.invalidate("T")
    await cache.get("T")
    assert nameserver.calls == 2


async def test_stale_route_served_while_nameservers_are_down(parts):
    nameserver, clock, cache = parts
    await cache.get("T")
    cache.invalidate("T")
    nameserver.answer = Unavailable("down")
    assert (await cache.get("T")).topic == "T"
    assert nameserver.calls == 2
    await cache.get("T")  # Within the hold: no new round of failing requests.
    assert nameserver.calls == 2
    clock.now += STALE_HOLD_S
    await cache.get("T")
    assert nameserver.calls == 3


async def test_nothing_cached_and_nameservers_down_raises(parts):
    nameserver, _, cache = parts
    nameserver.answer = Unavailable("down")
    with pytest.raises(Unavailable):
        await cache.get("T")


async def test_no_route_drops_the_cached_route(parts):
    nameserver, _, cache = parts
    await cache.get("T")
    cache.invalidate("T")
    nameserver.answer = NoRoute("gone")
    with pytest.raises(NoRoute):
        await cache.get("T")
    assert cache.cached("T") is None
