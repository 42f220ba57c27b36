"""The NameServer serves its own OpenAPI document, and it matches what the app serves.

Method: the app's router against the document's paths; the document against the
registry's validation for the bounds it states; hostile path ids found while fuzzing it.
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from dledgermq.namesrv.app import make_namesrv_app
from dledgermq.namesrv.openapi import build_namesrv_openapi
from dledgermq.namesrv.registry import RouteRegistry

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def client():
    async with TestClient(TestServer(make_namesrv_app(RouteRegistry()))) as test_client:
        yield test_client


async def test_openapi_documents_exactly_the_served_routes(client: TestClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document == build_namesrv_openapi()
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    served = {
        (route.method, route.resource.canonical)
        for route in client.server.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert documented == served


@pytest.mark.parametrize("broker_id", ["\u00b2", "\u0660", "1" * 5000, "-1", "x"])
async def test_a_broker_id_that_is_not_ascii_digits_is_400(
    client: TestClient, broker_id: str
) -> None:
    response = await client.delete(f"/brokers/broker-a/{broker_id}")
    assert response.status == 400
    assert (await response.json())["code"] == "BAD_REQUEST"


async def test_a_topic_name_outside_the_brokers_rule_is_400(client: TestClient) -> None:
    body = {
        "cluster": "c",
        "broker_name": "b",
        "broker_id": 0,
        "addr": "a",
        "topics": [{"topic": "no spaces", "read_queues": 1, "write_queues": 1, "perm": 6}],
    }
    response = await client.post("/brokers", json=body)
    assert response.status == 400
    assert (await response.json())["field"] == "topic"
