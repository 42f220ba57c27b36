"""The broker's NameServer client: register (in pages, `api/registration.py`) every
heartbeat and whenever the topic table or the role changes; unregister on the way out."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import secrets
from typing import Any

import aiohttp

from dledgermq.api.context import BrokerContext
from dledgermq.api.registration import RegistrationHealth, encode_body, paginate, registration
from dledgermq.clock import SYSTEM_CLOCK, Clock
from dledgermq.config import ClusterConfig

log = logging.getLogger(__name__)

REGISTER_RETRY_S = 2.0


REGISTER_TIMEOUT_S = 5.0


JSON = {"Content-Type": "application/json"}


async def register_forever(
    config: ClusterConfig,
    context: BrokerContext,
    topics_changed: asyncio.Event,
    health: RegistrationHealth,
) -> None:
    """Heartbeat every NameServer; register at once when the topic table changes."""
    timeout = aiohttp.ClientTimeout(total=REGISTER_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            topics_changed.clear()
            pages = paginate(registration(context), secrets.token_hex(8))
            results = await asyncio.gather(
                *(
                    register_once(session, addr, pages, health, clock=context.clock)
                    for addr in config.namesrv_addrs
                )
            )
            wait_s = config.heartbeat_interval_ms / 1000 if all(results) else REGISTER_RETRY_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(topics_changed.wait(), wait_s)


async def register_once(
    session: aiohttp.ClientSession,
    addr: str,
    pages: list[dict[str, Any]],
    health: RegistrationHealth,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> bool:
    """Send one registration round (its pages in order) to the NameServer at `addr`.

    A failure is recorded in `health` (the broker's /status) and logged at error level with
    the status and body size (rate-limited by `health`): a broker that keeps failing
    expires from the NameServer's routes, and its topics get NO_ROUTE.
    """
    bodies = [encode_body(page) for page in pages]
    sizes = [len(body) for body in bodies]
    status: int | None = None
    try:
        for number, body in enumerate(bodies, start=1):
            data = io.BytesIO(body)  # aiohttp warns that large bytes bodies block the loop.
            async with session.post(f"http://{addr}/brokers", data=data, headers=JSON) as response:
                if response.status < 300:
                    continue
                status = response.status
                reason = (await response.text())[:500]
                error = f"page {number}/{len(pages)} ({sizes[number - 1]} bytes): {reason}"
                break
        else:
            health.accepted(addr, clock.wall_ms(), largest_bytes=max(sizes), pages=len(pages))
            return True
    except (aiohttp.ClientError, TimeoutError) as exc:
        error = f"unreachable: {exc!r}"
    now_ms, largest = clock.wall_ms(), max(sizes)
    loud = health.failed(
        addr, now_ms, status=status, error=error, largest_bytes=largest, pages=len(pages)
    )
    level = logging.ERROR if loud else logging.DEBUG
    log.log(
        level,
        "namesrv %s refused or missed registration (HTTP %s, %d topics in %d pages, largest "
        "%d bytes, %d failures in a row; the broker expires from its routes unless one "
        "succeeds): %s",
        addr,
        status,
        sum(len(page["topics"]) for page in pages),
        len(pages),
        max(sizes),
        health.outcome(addr).failures,
        error,
    )
    return False


async def unregister(config: ClusterConfig, context: BrokerContext) -> None:
    identity = context.identity
    timeout = aiohttp.ClientTimeout(total=1.0)
    broker_id = context.role.value.broker_id
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for addr in config.namesrv_addrs:
            url = f"http://{addr}/brokers/{identity.broker_name}/{broker_id}"
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.delete(url):
                    pass
