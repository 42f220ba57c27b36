"""A real broker (actors + store in a temp dir) behind an aiohttp test client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from blockbuster import BlockBuster, blockbuster_ctx

from dledgermq.api.broker_app import make_broker_app
from dledgermq.node import BrokerHooks, BrokerNode, open_broker
from tests.support import small_cluster


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail any test whose dledgermq code blocks the event loop (DESIGN.md rule 7).

    Activated after the broker is built (opening the store blocks, off the loop) and
    scoped to the dledgermq package, as aiohttp does in its own test suite.
    """
    with blockbuster_ctx("dledgermq") as guard:
        yield guard


@pytest.fixture
def broker_node(tmp_path: Path) -> Iterator[BrokerNode]:
    """A broker whose actor failures are recorded, not fatal: none may happen."""
    config = small_cluster(tmp_path)
    group, node = config.node("n1")
    fatal: list[tuple[str, BaseException]] = []
    hooks = BrokerHooks(on_fatal=lambda name, error: fatal.append((name, error)))
    broker = open_broker(config, group, node, hooks=hooks)
    yield broker
    broker.stop()
    assert fatal == [], f"an actor failed: {fatal}"


@pytest.fixture
async def client(broker_node: BrokerNode) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_broker_app(broker_node.context))) as test_client:
        yield test_client


@pytest.fixture
async def topic(client: TestClient) -> str:
    response = await client.post("/topics", json={"topic": "T", "queues": 4})
    assert response.status == 201, await response.text()
    return "T"
