"""Stalled and slow clients cannot exhaust the broker (security probe D9).

A real broker app behind `GuardedTCPSite` on a free port, and raw asyncio connections that
send a request head with `Content-Length: 1000` and a few body bytes, then stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from dledgermq import wire
from dledgermq.api.broker_app import make_broker_app
from dledgermq.connections import ConnectionLimits, GuardedTCPSite
from dledgermq.node import BrokerNode
from tests.conftest import wait_until_async

pytestmark = pytest.mark.timeout(60)

STALLED = 200  # More than the slots below: today each stalled send held one.
HEAD = (
    "POST /topics/{topic}/messages HTTP/1.1\r\nHost: broker\r\n"
    "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
)


@dataclass
class Served:
    site: GuardedTCPSite
    url: str
    entered: list[str]  # Paths of requests whose handler started.


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve(broker_node: BrokerNode) -> AsyncIterator[Serve]:
    """Start the broker app on a guarded site with the given limits; stop it afterwards."""
    runners: list[web.AppRunner] = []

    async def start(
        *,
        body_read_timeout_ms: int = 60_000,
        appends_in_flight_max: int = 50,
        connection_limits: ConnectionLimits | None = None,
    ) -> Served:
        context = broker_node.context
        context.limits = dataclasses.replace(
            context.limits,
            body_read_timeout_ms=body_read_timeout_ms,
            appends_in_flight_max=appends_in_flight_max,
        )
        entered: list[str] = []

        @web.middleware
        async def note_entry(request: web.Request, handler: wire.Handler) -> web.StreamResponse:
            entered.append(request.path)  # The handler runs on to its first await now.
            return await handler(request)

        app = make_broker_app(context)
        app.middlewares.append(note_entry)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = GuardedTCPSite(runner, "127.0.0.1", 0, limits=connection_limits)
        await site.start()
        return Served(site, f"http://127.0.0.1:{site.port}", entered)

    yield start
    for runner in runners:
        await runner.cleanup()


async def stall_send(port: int, topic: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A send whose head promises 1000 body bytes, of which 11 are sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEAD.format(topic=topic).encode() + b'{"messages"')
    await writer.drain()
    return reader, writer


async def close_all(connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
    for _, writer in connections:
        writer.close()
    for _, writer in connections:
        with contextlib.suppress(ConnectionError):  # The server may have closed first.
            await writer.wait_closed()


def open_count(site: GuardedTCPSite, n: int) -> Callable[[], Awaitable[bool]]:
    """A condition for `wait_until_async`: exactly `n` client connections are open."""

    async def check() -> bool:
        return site.open_connections == n

    return check


async def create_topic(session: aiohttp.ClientSession, url: str) -> str:
    async with session.post(f"{url}/topics", json={"topic": "T", "queues": 4}) as response:
        assert response.status == 201, await response.text()
    return "T"


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info is not None or r.levelno >= logging.ERROR]


async def test_stalled_bodies_hold_no_admission_slot(serve: Serve) -> None:
    """Today: each stalled send held a slot, so with 200 stalled and 50 slots every real
    send got 503 BUSY. Now the slot is taken only after the body is read."""
    served = await serve(appends_in_flight_max=50)
    async with aiohttp.ClientSession() as session:
        topic = await create_topic(session, served.url)
        stalled = [await stall_send(served.site.port, topic) for _ in range(STALLED)]

        async def all_entered() -> bool:
            return served.entered.count(f"/topics/{topic}/messages") >= STALLED

        await wait_until_async(all_entered, what="every stalled send inside its handler")
        body = {"messages": [{"body": "still served"}]}
        async with session.post(f"{served.url}/topics/{topic}/messages", json=body) as response:
            assert response.status == 200, await response.text()
            assert len((await response.json())["results"]) == 1
        await close_all(stalled)


async def test_stalled_bodies_get_408_and_are_closed_quietly(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    served = await serve(body_read_timeout_ms=300)
    before = wire.BODY_READS.totals["timed out (408)"]
    async with aiohttp.ClientSession() as session:
        topic = await create_topic(session, served.url)
    stalled = [await stall_send(served.site.port, topic) for _ in range(STALLED)]

    # Each connection answers 408 and then closes: read() returns at EOF.
    answers = await asyncio.wait_for(asyncio.gather(*(r.read() for r, _ in stalled)), 20)
    for answer in answers:
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert json.loads(payload)["code"] == "REQUEST_TIMEOUT"
    await close_all(stalled)
    assert wire.BODY_READS.totals["timed out (408)"] - before == STALLED
    assert tracebacks(caplog) == []

    wire.BODY_READS.flush()  # The window's summary: one line with the count.
    summaries = [r for r in caplog.records if r.getMessage().startswith("request bodies not")]
    assert len(summaries) == 1
    assert "timed out (408)" in summaries[0].getMessage()


async def test_clients_leaving_mid_body_are_counted_not_logged(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """Today each of these logged a ConnectionResetError traceback (10 MB for 10,050)."""
    caplog.set_level(logging.INFO)
    served = await serve()
    before = wire.BODY_READS.totals["abandoned by the client"]
    async with aiohttp.ClientSession() as session:
        topic = await create_topic(session, served.url)
    stalled = [await stall_send(served.site.port, topic) for _ in range(STALLED)]

    async def all_entered() -> bool:
        return served.entered.count(f"/topics/{topic}/messages") >= STALLED

    await wait_until_async(all_entered, what="every stalled send inside its handler")
    await close_all(stalled)

    async def all_counted() -> bool:
        return wire.BODY_READS.totals["abandoned by the client"] - before >= STALLED

    await wait_until_async(all_counted, what="every abandoned body counted")
    await wait_until_async(open_count(served.site, 0), what="every connection closed")
    assert tracebacks(caplog) == []


async def test_connections_beyond_the_cap_are_closed_at_once(serve: Serve) -> None:
    served = await serve(connection_limits=ConnectionLimits(max_connections=5))
    site = served.site
    idle = [await asyncio.open_connection("127.0.0.1", site.port) for _ in range(5)]
    await wait_until_async(open_count(site, 5), what="five connections open")

    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    assert await asyncio.wait_for(reader.read(), 10) == b""  # Closed without an answer.
    writer.close()
    assert site.tally.totals["refused over the cap of 5"] == 1

    idle.pop()[1].close()
    await wait_until_async(open_count(site, 4), what="a slot freed")
    async with aiohttp.ClientSession() as session, session.get(f"{served.url}/status") as response:
        assert response.status == 200
    await close_all(idle)


async def test_an_incomplete_head_is_closed_after_the_head_timeout(serve: Serve) -> None:
    limits = ConnectionLimits(head_timeout_s=0.3)
    served = await serve(connection_limits=limits)
    site = served.site
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(b"GET /status HTTP/1.1\r\nHost: bro")  # And never the rest.
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    assert site.tally.totals["without a complete request head in time"] == 1

    # A complete head stops the clock: a long poll outlives the head timeout.
    async with aiohttp.ClientSession() as session:
        topic = await create_topic(session, served.url)
        url = f"{served.url}/topics/{topic}/queues/0/messages?offset=0&wait_ms=800"
        async with session.get(url) as response:
            assert response.status == 200, await response.text()
    assert site.tally.totals["without a complete request head in time"] == 1
