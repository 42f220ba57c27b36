"""Fixtures for client tests: a cluster of the REAL NameServer app plus fake brokers."""

from __future__ import annotations

import socket

import pytest
from aiohttp.test_utils import TestServer

from dledgermq.namesrv.app import make_namesrv_app
from dledgermq.namesrv.registry import RouteRegistry
from tests.unit.client.client_fakes import Cluster


@pytest.fixture
async def cluster():
    registry = RouteRegistry()
    namesrv = TestServer(make_namesrv_app(registry))
    await namesrv.start_server()
    cluster = Cluster(namesrv, registry)
    try:
        yield cluster
    finally:
        for broker in cluster.brokers.values():
            assert broker.server is not None
            await broker.server.close()
        await namesrv.close()


@pytest.fixture
def dead_addr() -> str:
    """An address nothing listens on (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"
