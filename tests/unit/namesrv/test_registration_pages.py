"""A broker with thousands of topics keeps its routes (security probe D10).

Goal: 6,500 topics of 127-character names (a registration of about 1.2 MB, over the 1 MiB
that made the NameServer answer 413 until the broker expired) all have routes; pages of
one round swap the table in at once and out-of-order pages are refused; a refused
registration is recorded for the broker's /status and logged at error level, rate-limited.

Method: the pure registry with explicit times, and the NameServer app behind an aiohttp
test server driven by the broker's own sending code (`node.register_once`).
"""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from dledgermq.api.registration import (
    FAILURE_LOG_INTERVAL_MS,
    PAGE_TOPICS_MAX,
    RegistrationHealth,
    body_bytes,
    encode_body,
    paginate,
)
from dledgermq.errors import BadRequest
from dledgermq.namesrv.app import make_namesrv_app
from dledgermq.namesrv.registry import BrokerRegistration, RouteRegistry
from dledgermq.node import register_once

pytestmark = pytest.mark.timeout(60)

TOPICS = 6_500
ONE_MIB = 1024 * 1024
JSON = {"Content-Type": "application/json"}


def topic_name(i: int) -> str:
    return f"T{i:06d}".ljust(127, "x")


def broker_body(topics: int, broker_id: int = 0) -> dict[str, Any]:
    return {
        "cluster": "c1",
        "broker_name": "broker-a",
        "broker_id": broker_id,
        "addr": "127.0.0.1:10911",
        "perm": 6,
        "auto_create_topic": False,
        "topics": [
            {"topic": topic_name(i), "read_queues": 1024, "write_queues": 1024, "perm": 6}
            for i in range(topics)
        ],
    }


def register(registry: RouteRegistry, page: dict[str, Any], now_ms: int) -> bool:
    return registry.register(BrokerRegistration.from_wire(page), now_ms)


def test_the_probe_body_no_longer_fits_one_mib_but_every_page_does() -> None:
    body = broker_body(TOPICS)
    assert body_bytes(body) > ONE_MIB
    pages = paginate(body, "r1")
    assert len(pages) == -(-TOPICS // PAGE_TOPICS_MAX)
    assert all(body_bytes(page) < ONE_MIB // 2 for page in pages)
    assert [t for page in pages for t in page["topics"]] == body["topics"]
    assert paginate(broker_body(3), "r1") == [broker_body(3)]  # Small: unchanged, unpaged.


def test_a_round_swaps_the_table_in_at_its_last_page() -> None:
    registry = RouteRegistry(expiry_ms=1_000)
    assert register(registry, broker_body(1), now_ms=0)
    pages = paginate(broker_body(5), "r2", page_topics=2)
    assert [register(registry, page, now_ms=500) for page in pages] == [False, False, True]
    assert registry.topics() == [topic_name(i) for i in range(5)]
    assert registry.brokers()[0].last_seen_ms == 500


def test_pages_keep_the_old_table_and_the_broker_alive_until_the_round_completes() -> None:
    registry = RouteRegistry(expiry_ms=1_000)
    register(registry, broker_body(1), now_ms=0)
    first, *_ = paginate(broker_body(5), "r2", page_topics=2)
    register(registry, first, now_ms=900)
    assert registry.topics() == [topic_name(0)]
    assert registry.expire(now_ms=1_500) == []  # The page was a heartbeat.


def test_a_page_out_of_order_is_refused_and_the_round_starts_again() -> None:
    registry = RouteRegistry(expiry_ms=1_000)
    pages = paginate(broker_body(5), "r3", page_topics=2)
    with pytest.raises(BadRequest, match="send the round again from page 0"):
        register(registry, pages[1], now_ms=0)
    register(registry, pages[0], now_ms=0)
    other = paginate(broker_body(5), "r4", page_topics=2)
    with pytest.raises(BadRequest):
        register(registry, other[1], now_ms=0)  # Another round's page.
    with pytest.raises(BadRequest):
        register(registry, pages[1], now_ms=0)  # The round was dropped with it.
    assert [register(registry, page, now_ms=0) for page in other] == [False, False, True]
    assert registry.route(topic_name(4)) is not None


def test_an_abandoned_round_is_forgotten_at_expiry() -> None:
    registry = RouteRegistry(expiry_ms=1_000)
    pages = paginate(broker_body(5), "r5", page_topics=2)
    register(registry, pages[0], now_ms=0)
    registry.expire(now_ms=2_000)
    with pytest.raises(BadRequest):
        register(registry, pages[1], now_ms=2_000)


@pytest.mark.parametrize(
    "page",
    [
        {"round": "r", "index": 1, "count": 1},
        {"round": "r", "index": 0, "count": 0},
        {"round": "r", "index": 0, "count": 1025},
        {"round": "no spaces", "index": 0, "count": 2},
        {"round": "r", "index": -1, "count": 2},
        {"round": "r", "index": 0},
        "r",
    ],
)
def test_a_malformed_page_is_a_bad_request(page: object) -> None:
    with pytest.raises(BadRequest):
        BrokerRegistration.from_wire({**broker_body(1), "page": page})


@pytest.fixture
async def namesrv() -> AsyncIterator[TestServer]:
    async with TestServer(make_namesrv_app(RouteRegistry())) as server:
        yield server


async def test_thousands_of_long_topic_names_keep_their_routes(namesrv: TestServer) -> None:
    health = RegistrationHealth([f"{namesrv.host}:{namesrv.port}"])
    pages = paginate(broker_body(TOPICS), "round-1")
    async with aiohttp.ClientSession() as session:
        for _ in range(2):  # The first round and a heartbeat round.
            assert await register_once(session, f"{namesrv.host}:{namesrv.port}", pages, health)
        base = f"http://{namesrv.host}:{namesrv.port}"
        async with session.get(f"{base}/topics") as response:
            assert len((await response.json())["topics"]) == TOPICS
        for i in (0, PAGE_TOPICS_MAX, TOPICS - 1):
            async with session.get(f"{base}/routes/{topic_name(i)}") as response:
                assert response.status == 200, await response.text()
    assert health.to_wire()["ok"] is True
    assert health.to_wire()["namesrvs"][0]["pages"] == len(pages)


async def test_an_unpaged_registration_of_thousands_of_topics_fits_the_bound(
    namesrv: TestServer,
) -> None:
    async with TestClient(namesrv) as client:
        data = io.BytesIO(encode_body(broker_body(TOPICS)))
        response = await client.post("/brokers", data=data, headers=JSON)
        assert response.status == 200, await response.text()
        assert (await client.get(f"/routes/{topic_name(TOPICS - 1)}")).status == 200


async def test_a_refused_registration_is_loud_and_in_the_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_namesrv_app(RouteRegistry(), body_max_bytes=ONE_MIB)  # An older NameServer.
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        addr = f"{server.host}:{server.port}"
        health = RegistrationHealth([addr])
        whole = [broker_body(TOPICS)]
        with caplog.at_level(logging.DEBUG, logger="dledgermq.node"):
            assert not await register_once(session, addr, whole, health)
            assert not await register_once(session, addr, whole, health)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1, "a streak of failures is logged once a minute"
        assert "HTTP 413" in errors[0].getMessage()
        assert str(body_bytes(whole[0])) in errors[0].getMessage()
        outcome = health.to_wire()["namesrvs"][0]
        assert health.to_wire()["ok"] is False
        assert (outcome["ok"], outcome["status"], outcome["failures"]) == (False, 413, 2)
        assert outcome["body_bytes"] == body_bytes(whole[0])
        assert await register_once(session, addr, paginate(whole[0], "r"), health)
        assert health.to_wire()["ok"] is True


def test_failures_are_logged_again_after_the_interval() -> None:
    health = RegistrationHealth(["ns"])
    kwargs: dict[str, Any] = {"status": 413, "error": "too large", "largest_bytes": 1, "pages": 1}
    assert health.failed("ns", 0, **kwargs)
    assert not health.failed("ns", FAILURE_LOG_INTERVAL_MS - 1, **kwargs)
    assert health.failed("ns", FAILURE_LOG_INTERVAL_MS, **kwargs)
    health.accepted("ns", FAILURE_LOG_INTERVAL_MS + 1, largest_bytes=1, pages=1)
    assert health.failed("ns", FAILURE_LOG_INTERVAL_MS + 2, **kwargs)  # A new streak.
