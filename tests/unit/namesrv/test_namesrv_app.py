"""The NameServer HTTP contract (API.md) against a real aiohttp test server.

Checks the routes end to end in JSON and msgpack, the error shapes (codes, statuses) and
the background expiry scan, driven by an injected clock and awaited with a deadline.
"""

import asyncio

import msgpack
import pytest
from aiohttp.test_utils import TestClient, TestServer

from dledgermq.namesrv.app import make_namesrv_app, run_namesrv
from dledgermq.namesrv.registry import RouteRegistry

MSGPACK = "application/msgpack"

REGISTRATION = {
    "cluster": "c1",
    "broker_name": "broker-a",
    "broker_id": 0,
    "addr": "127.0.0.1:10911",
    "topics": [{"topic": "T", "read_queues": 4, "write_queues": 4, "perm": 6}],
}


class FakeClock:
    def __init__(self) -> None:
        self.now_ms = 1_000

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
async def client(clock):
    app = make_namesrv_app(RouteRegistry(expiry_ms=1_000), scan_interval_ms=5, clock_ms=clock)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_register_then_route_json(client):
    response = await client.post("/brokers", json=REGISTRATION)
    assert response.status == 200
    assert await response.json() == {}
    response = await client.get("/routes/T")
    assert response.status == 200
    assert await response.json() == {
        "topic": "T",
        "queues": [{"broker_name": "broker-a", "read_queues": 4, "write_queues": 4, "perm": 6}],
        "brokers": [
            {
                "broker_name": "broker-a",
                "cluster": "c1",
                "addrs": {"0": "127.0.0.1:10911"},
                "perm": 6,
                "zone": None,
            }
        ],
    }
    assert await (await client.get("/topics")).json() == {"topics": ["T"]}
    assert await (await client.get("/status")).json() == {"brokers": 1, "topics": 1}
    brokers = await (await client.get("/brokers")).json()
    assert brokers == {
        "brokers": [
            {
                "cluster": "c1",
                "broker_name": "broker-a",
                "addrs": {"0": "127.0.0.1:10911"},
                "last_seen_ms": 1_000,
                "perm": 6,
                "zone": None,
                "auto_create_topic": False,
            }
        ]
    }


async def test_msgpack_round_trip(client):
    response = await client.post(
        "/brokers",
        data=msgpack.packb(REGISTRATION),
        headers={"Content-Type": MSGPACK, "Accept": MSGPACK},
    )
    assert response.status == 200
    assert response.content_type == MSGPACK
    assert msgpack.unpackb(await response.read()) == {}
    response = await client.get("/routes/T", headers={"Accept": MSGPACK})
    assert response.content_type == MSGPACK
    assert msgpack.unpackb(await response.read())["queues"][0]["write_queues"] == 4


async def test_unknown_topic_is_404_no_route(client):
    response = await client.get("/routes/nope")
    assert response.status == 404
    body = await response.json()
    assert body["code"] == "NO_ROUTE"
    assert body["topic"] == "nope"


async def test_errors_follow_accept_header(client):
    response = await client.get("/routes/nope", headers={"Accept": MSGPACK})
    assert response.status == 404
    assert msgpack.unpackb(await response.read())["code"] == "NO_ROUTE"


async def test_malformed_json_is_400_bad_request(client):
    response = await client.post(
        "/brokers", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert (await response.json())["code"] == "BAD_REQUEST"


async def test_malformed_msgpack_is_400_bad_request(client):
    response = await client.post("/brokers", data=b"\xc1", headers={"Content-Type": MSGPACK})
    assert response.status == 400
    assert (await response.json())["code"] == "BAD_REQUEST"


async def test_non_object_body_is_400(client):
    response = await client.post("/brokers", json=[1, 2])
    assert response.status == 400
    assert (await response.json())["code"] == "BAD_REQUEST"


async def test_invalid_registration_is_400(client):
    response = await client.post("/brokers", json={**REGISTRATION, "broker_id": "x"})
    assert response.status == 400
    body = await response.json()
    assert body["code"] == "BAD_REQUEST"
    assert body["field"] == "broker_id"


async def test_unknown_path_and_method_have_codes(client):
    response = await client.get("/nowhere")
    assert response.status == 404
    assert (await response.json())["code"] == "NOT_FOUND"
    response = await client.put("/brokers")
    assert response.status == 405
    assert (await response.json())["code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in response.headers["Allow"]


async def test_unregister(client):
    await client.post("/brokers", json=REGISTRATION)
    response = await client.delete("/brokers/broker-a/0")
    assert response.status == 200
    assert (await client.get("/routes/T")).status == 404
    response = await client.delete("/brokers/broker-a/zero")
    assert response.status == 400


async def test_background_scan_expires_silent_broker(client, clock):
    await client.post("/brokers", json=REGISTRATION)
    clock.now_ms += 1_001
    deadline = asyncio.get_running_loop().time() + 5
    while (await (await client.get("/status")).json())["brokers"]:
        assert asyncio.get_running_loop().time() < deadline, "broker never expired"
        await asyncio.sleep(0.01)
    assert (await client.get("/routes/T")).status == 404


async def test_run_namesrv_serves_until_stopped(unused_tcp_port):
    import aiohttp

    stop = asyncio.Event()
    server = asyncio.create_task(
        run_namesrv("127.0.0.1", unused_tcp_port, expiry_ms=1_000, scan_interval_ms=50, stop=stop)
    )
    url = f"http://127.0.0.1:{unused_tcp_port}/status"
    async with aiohttp.ClientSession() as session:
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            try:
                async with session.get(url) as response:
                    assert await response.json() == {"brokers": 0, "topics": 0}
                    break
            except aiohttp.ClientConnectionError:
                assert asyncio.get_running_loop().time() < deadline, "namesrv never came up"
                await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(server, 5)
