"""The NameServer's HTTP face (API.md, NameServer section) and its expiry scan.

Owns: routes that translate HTTP into `RouteRegistry` calls, the background task that
expires silent brokers every `scan_interval_ms`, and `run_namesrv` for embedding.

Must not: hold route logic (that is `registry.py`) or encode bodies by hand (`wire.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from dledgermq.clock import SYSTEM_CLOCK
from dledgermq.connections import GuardedTCPSite
from dledgermq.errors import BadRequest, NoRoute
from dledgermq.namesrv.openapi import BROKER_ID_PATTERN, build_namesrv_openapi
from dledgermq.namesrv.registry import BrokerRegistration, RouteRegistry
from dledgermq.wire import error_middleware, read_body, respond

log = logging.getLogger(__name__)

Clock = Callable[[], int]

REGISTRY_KEY = web.AppKey("registry", RouteRegistry)
CLOCK_KEY: web.AppKey[Clock] = web.AppKey("clock_ms")
# Only `POST /brokers` has a body. A broker pages its registration (2,000 topics, about
# 400 KB a page: registration.py), so this bound is for brokers that send their whole
# table in one body (older ones): 8 MiB holds about 40,000 topics of 127-character names,
# where aiohttp's default 1 MiB refused 5,721 and the broker's routes expired (probe D10).
# Memory per request stays bounded.
NAMESRV_BODY_MAX_BYTES = 8 * 1024 * 1024
BROKER_ID = re.compile(BROKER_ID_PATTERN)
OPENAPI = build_namesrv_openapi()


def wall_clock_ms() -> int:
    """Milliseconds since the epoch; `last_seen_ms` is shown to operators, so wall time."""
    return SYSTEM_CLOCK.wall_ms()


async def register_broker(request: web.Request) -> web.Response:
    info = BrokerRegistration.from_wire(await read_body(request))
    request.app[REGISTRY_KEY].register(info, request.app[CLOCK_KEY]())
    return respond(request, {})


async def unregister_broker(request: web.Request) -> web.Response:
    raw_id = request.match_info["broker_id"]
    # ASCII digits only, and few enough for int(): str.isdigit() took "²" (int() raised).
    if not BROKER_ID.fullmatch(raw_id):
        raise BadRequest(f"broker_id must be a non-negative integer, got {raw_id!r}")
    request.app[REGISTRY_KEY].unregister(request.match_info["broker_name"], int(raw_id))
    return respond(request, {})


async def list_brokers(request: web.Request) -> web.Response:
    groups = request.app[REGISTRY_KEY].brokers()
    return respond(request, {"brokers": [g.to_wire() for g in groups]})


async def get_route(request: web.Request) -> web.Response:
    topic = request.match_info["topic"]
    route = request.app[REGISTRY_KEY].route(topic)
    if route is None:
        raise NoRoute(f"no route for topic {topic!r}", topic=topic)
    return respond(request, route.to_wire())


async def list_topics(request: web.Request) -> web.Response:
    return respond(request, {"topics": request.app[REGISTRY_KEY].topics()})


async def status(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY_KEY]
    return respond(request, {"brokers": len(registry.brokers()), "topics": len(registry.topics())})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


async def _expire_forever(registry: RouteRegistry, clock: Clock, scan_interval_ms: int) -> None:
    while True:
        await asyncio.sleep(scan_interval_ms / 1000)
        for broker_name, broker_id in registry.expire(clock()):
            log.warning("broker %s/%d expired: no heartbeat", broker_name, broker_id)


def make_namesrv_app(
    registry: RouteRegistry,
    *,
    scan_interval_ms: int = 10_000,
    clock_ms: Clock = wall_clock_ms,
    body_max_bytes: int = NAMESRV_BODY_MAX_BYTES,
) -> web.Application:
    """Build the NameServer app; `clock_ms` is injectable so tests control expiry."""
    assert scan_interval_ms > 0, scan_interval_ms
    assert body_max_bytes > 0, body_max_bytes
    app = web.Application(middlewares=[error_middleware], client_max_size=body_max_bytes)
    app[REGISTRY_KEY] = registry
    app[CLOCK_KEY] = clock_ms

    async def expiry_scan(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_expire_forever(registry, clock_ms, scan_interval_ms))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(expiry_scan)
    app.router.add_post("/brokers", register_broker)
    app.router.add_delete("/brokers/{broker_name}/{broker_id}", unregister_broker)
    app.router.add_get("/brokers", list_brokers)
    app.router.add_get("/routes/{topic}", get_route)
    app.router.add_get("/topics", list_topics)
    app.router.add_get("/status", status)
    app.router.add_get("/openapi.json", openapi)
    return app


async def run_namesrv(
    host: str,
    port: int,
    *,
    expiry_ms: int = 120_000,
    scan_interval_ms: int = 10_000,
    stop: asyncio.Event,
) -> None:
    """Serve a NameServer on host:port until `stop` is set, then shut down cleanly."""
    app = make_namesrv_app(RouteRegistry(expiry_ms), scan_interval_ms=scan_interval_ms)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = GuardedTCPSite(runner, host, port)  # Default connection bounds (D9).
        await site.start()
        log.info("namesrv listening on %s", ", ".join(str(a) for a in runner.addresses))
        await stop.wait()
    finally:
        await runner.cleanup()
