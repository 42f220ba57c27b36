"""`dledgermq.wire`: content negotiation and the error middleware, on a throwaway app.

The NameServer and broker apps share this module, so it is tested on its own with
handlers that raise each kind of failure.
"""

import logging

import msgpack
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dledgermq.errors import Busy
from dledgermq.wire import error_middleware, read_body, respond


async def echo(request: web.Request) -> web.Response:
    return respond(request, {"got": await read_body(request)})


async def busy(request: web.Request) -> web.Response:
    raise Busy("too many appends in flight", in_flight=5)


async def crash(request: web.Request) -> web.Response:
    raise RuntimeError("boom")


@pytest.fixture
async def client():
    app = web.Application(middlewares=[error_middleware])
    app.router.add_post("/echo", echo)
    app.router.add_get("/busy", busy)
    app.router.add_get("/crash", crash)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_empty_body_reads_as_empty_object(client):
    response = await client.post("/echo")
    assert await response.json() == {"got": {}}


async def test_msgpack_body_with_binary_and_accept_params(client):
    response = await client.post(
        "/echo",
        data=msgpack.packb({"body": b"\x00\xff"}, use_bin_type=True),
        headers={
            "Content-Type": "application/x-msgpack",
            "Accept": "text/html, application/msgpack;q=0.9",
        },
    )
    assert response.content_type == "application/msgpack"
    assert msgpack.unpackb(await response.read()) == {"got": {"body": b"\x00\xff"}}


async def test_json_is_the_default_response(client):
    response = await client.post("/echo", json={"a": 1}, headers={"Accept": "*/*"})
    assert response.content_type == "application/json"
    assert await response.json() == {"got": {"a": 1}}


async def test_mq_error_keeps_status_code_and_details(client):
    response = await client.get("/busy")
    assert response.status == 503
    assert await response.json() == {
        "code": "BUSY",
        "message": "too many appends in flight",
        "in_flight": 5,
    }


async def test_unexpected_exception_is_logged_500_internal(client, caplog):
    with caplog.at_level(logging.ERROR, logger="dledgermq.wire"):
        response = await client.get("/crash")
    assert response.status == 500
    assert (await response.json())["code"] == "INTERNAL"
    assert "boom" in caplog.text
