"""A real broker (actors + store in a temp dir) behind an aiohttp test client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from dledgermq.api.broker_app import make_broker_app
from dledgermq.node import BrokerNode, open_broker
from tests.support import small_cluster


@pytest.fixture
def broker_node(tmp_path: Path) -> BrokerNode:
    config = small_cluster(tmp_path)
    group, node = config.node("n1")
    broker = open_broker(config, group, node)
    yield broker
    broker.stop()


@pytest.fixture
async def client(broker_node: BrokerNode) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_broker_app(broker_node.context))) as test_client:
        yield test_client


@pytest.fixture
async def topic(client: TestClient) -> str:
    response = await client.post("/topics", json={"topic": "T", "queues": 4})
    assert response.status == 201, await response.text()
    return "T"
