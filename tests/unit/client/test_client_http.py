"""HttpSession's mapping of transport failures and error bodies to typed errors.

Goal: refused connections are Unavailable, slow answers Timeout, error bodies rebuild
their class with details, and bare 5xx answers still map by status.
"""

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from dledgermq.client.http import HttpSession, base_url
from dledgermq.errors import Busy, MQError, Timeout, Unavailable
from dledgermq.wire import error_middleware


@pytest.fixture
async def server():
    never = asyncio.Event()

    async def slow(request):
        await never.wait()

    async def busy(request):
        raise Busy("full", in_flight=3)

    async def bare_503(request):
        return web.Response(status=503, text="overloaded")

    async def teapot(request):
        return web.Response(status=418, text="no")

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/slow", slow)
    app.router.add_get("/busy", busy)
    app.router.add_get("/bare", bare_503)
    app.router.add_get("/teapot", teapot)
    test_server = TestServer(app)
    await test_server.start_server()
    yield f"127.0.0.1:{test_server.port}"
    await test_server.close()


@pytest.fixture
async def http():
    session = HttpSession(timeout_s=2)
    yield session
    await session.close()


def test_base_url_accepts_host_port_and_urls():
    assert base_url("h:1") == "http://h:1"
    assert base_url("https://h:1/") == "https://h:1"


async def test_refused_connection_is_unavailable(http, dead_addr):
    with pytest.raises(Unavailable):
        await http.request("GET", dead_addr, "/status")


async def test_slow_answer_is_timeout(http, server):
    with pytest.raises(Timeout):
        await http.request("GET", server, "/slow", timeout_s=0.1)


async def test_error_body_rebuilds_the_class_with_details(http, server):
    with pytest.raises(Busy) as caught:
        await http.request("GET", server, "/busy")
    assert caught.value.details == {"in_flight": 3}
    assert caught.value.retryable


async def test_bare_error_statuses_map_by_status(http, server):
    with pytest.raises(Unavailable):
        await http.request("GET", server, "/bare")
    with pytest.raises(MQError) as caught:
        await http.request("GET", server, "/teapot")
    assert caught.value.code == "HTTP_418"
    assert not caught.value.retryable


async def test_closed_session_refuses_requests(server):
    session = HttpSession()
    await session.close()
    with pytest.raises(Unavailable):
        await session.request("GET", server, "/busy")
