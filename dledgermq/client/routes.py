"""Finding brokers: NameServer failover and a cache of topic routes.

Owns: the order in which NameServers are tried (start at a random one so clients spread
out, move on round-robin when one is unreachable) and the per-topic route cache, which
refreshes a route older than `refresh_s` on its next use or after a send/pull error
(`invalidate`). While the NameServers are unreachable a stale route is still served:
brokers usually outlive a NameServer outage.

Must not: choose queues (`selector.py`) or talk to brokers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from dledgermq.client.http import HttpSession
from dledgermq.client.topic_route import BrokerData, TopicRouteData
from dledgermq.errors import MQError, NoRoute, Timeout, Unavailable

log = logging.getLogger(__name__)

DEFAULT_ROUTE_REFRESH_S = 30.0
NAMESRV_TIMEOUT_S = 3.0
# After every NameServer failed, serve the stale route this long before asking again, so
# a NameServer outage does not add a failed round of requests to every send.
STALE_HOLD_S = 1.0


class Rotation:
    """Round-robin order over addresses; a failed current address hands over to the next."""

    def __init__(self, addrs: Sequence[str], start: int = 0) -> None:
        assert addrs, "at least one address is needed"
        self.addrs = list(addrs)
        self._current = start % len(self.addrs)

    @property
    def current(self) -> str:
        return self.addrs[self._current]

    def order(self) -> list[str]:
        """Every address once, starting with the current one."""
        return self.addrs[self._current :] + self.addrs[: self._current]

    def failed(self, addr: str) -> None:
        """Move past `addr` if it is the current one (a concurrent caller may have already)."""
        if addr == self.current:
            self._current = (self._current + 1) % len(self.addrs)


class NameServerClient:
    """GETs against the NameServers, failing over on connection errors and timeouts."""

    def __init__(
        self,
        addrs: Sequence[str],
        *,
        http: HttpSession,
        rng: random.Random | None = None,
        timeout_s: float = NAMESRV_TIMEOUT_S,
    ) -> None:
        if not addrs:
            raise ValueError("at least one NameServer address is needed")
        start = (rng or random.Random()).randrange(len(addrs))
        self._rotation = Rotation(addrs, start)
        self._http = http
        self._timeout_s = timeout_s

    @property
    def current(self) -> str:
        return self._rotation.current

    async def get(self, path: str) -> dict[str, Any]:
        """GET `path` from the first NameServer that answers.

        Raises:
            Unavailable: no NameServer answered.
            MQError: a NameServer answered with an error (e.g. NoRoute); not failed over.
        """
        last: MQError | None = None
        for addr in self._rotation.order():
            try:
                return await self._http.request("GET", addr, path, timeout_s=self._timeout_s)
            except (Unavailable, Timeout) as err:
                log.warning("NameServer %s failed (%s); trying the next", addr, err.code)
                self._rotation.failed(addr)
                last = err
        raise Unavailable(
            f"no NameServer answered: {self._rotation.addrs}", addrs=self._rotation.addrs
        ) from last

    async def route(self, topic: str) -> TopicRouteData:
        """Raises NoRoute when no live broker group serves `topic`."""
        return TopicRouteData.from_wire(await self.get(f"/routes/{quote(topic, safe='')}"))

    async def brokers(self) -> list[dict[str, Any]]:
        """The live broker groups: `{cluster, broker_name, addrs, last_seen_ms}` each."""
        return list((await self.get("/brokers"))["brokers"])

    async def broker_groups(self) -> list[BrokerData]:
        return [BrokerData.from_wire(raw) for raw in await self.brokers()]

    async def topics(self) -> list[str]:
        return list((await self.get("/topics"))["topics"])


@dataclass(slots=True)
class _Entry:
    route: TopicRouteData
    fetched_at_s: float
    stale: bool = False
    hold_until_s: float = 0.0


class RouteCache:
    """Topic routes, refreshed when older than `refresh_s` or after an error."""

    def __init__(
        self,
        nameserver: NameServerClient,
        *,
        refresh_s: float = DEFAULT_ROUTE_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nameserver = nameserver
        self._refresh_s = refresh_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _fresh(self, topic: str) -> TopicRouteData | None:
        entry = self._entries.get(topic)
        if entry is None:
            return None
        now = self._clock()
        if entry.hold_until_s > now:
            return entry.route
        if entry.stale or now - entry.fetched_at_s >= self._refresh_s:
            return None
        return entry.route

    async def get(self, topic: str) -> TopicRouteData:
        """The topic's route; one NameServer call at a time per topic.

        Raises:
            NoRoute: the NameServer knows no broker for the topic.
            Unavailable: no NameServer answered and nothing is cached.
        """
        route = self._fresh(topic)
        if route is not None:
            return route
        async with self._locks.setdefault(topic, asyncio.Lock()):
            route = self._fresh(topic)  # Another caller may have refreshed meanwhile.
            if route is not None:
                return route
            return await self._refresh(topic)

    async def _refresh(self, topic: str) -> TopicRouteData:
        try:
            route = await self._nameserver.route(topic)
        except NoRoute:
            self._entries.pop(topic, None)
            raise
        except (Unavailable, Timeout):
            entry = self._entries.get(topic)
            if entry is None:
                raise
            log.warning("keeping the stale route of %s: NameServers unreachable", topic)
            entry.hold_until_s = self._clock() + STALE_HOLD_S
            return entry.route
        self._entries[topic] = _Entry(route, self._clock())
        return route

    def invalidate(self, topic: str) -> None:
        """Refresh the topic's route on its next use (called after a send or pull error)."""
        entry = self._entries.get(topic)
        if entry is not None:
            entry.stale = True

    def cached(self, topic: str) -> TopicRouteData | None:
        entry = self._entries.get(topic)
        return None if entry is None else entry.route

    def broker(self, broker_name: str) -> BrokerData | None:
        """A broker group as known from any cached route (None if none mentions it)."""
        for entry in self._entries.values():
            broker = entry.route.brokers.get(broker_name)
            if broker is not None:
                return broker
        return None
