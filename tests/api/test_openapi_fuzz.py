"""Property-based fuzzing of our OpenAPI documents with Schemathesis (security probe).

Goal: no request a client can build from the broker's or the NameServer's own
`/openapi.json` gets a 5xx, and every answer matches the document's response schemas;
and the schemas are tight enough that most generated requests are accepted, not refused
with 400 (the probe saw ~80 % 400s: the documents were looser than the validation).

Method: each app is served on 127.0.0.1 (random port) by an event loop on its own thread,
a real broker (actors and store in a temp dir) as in conftest.py, or a NameServer with a
registered broker. For every operation of the served document Hypothesis generates
`MAX_EXAMPLES` cases, derandomized (reproducible in CI; `DLEDGERMQ_FUZZ_SEED=N` explores
other cases), without deadline, and checks not_a_server_error and
response_schema_conformance (every other request asks for a msgpack answer, which is
validated as well). Statuses are counted; the 400 share is printed (`-s`) and
bounded. Long polls are cut to 50 ms so the file runs in well under 90 s.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from dledgermq.api.broker_app import make_broker_app
from dledgermq.namesrv.app import make_namesrv_app
from dledgermq.namesrv.registry import RouteRegistry
from dledgermq.node import BrokerNode

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

MAX_EXAMPLES = int(os.environ.get("DLEDGERMQ_FUZZ_EXAMPLES", "40"))
FUZZ_SEED = os.environ.get("DLEDGERMQ_FUZZ_SEED")
WAIT_MS_MAX = 50  # A pull with no messages waits this long, not the 15 s the schema allows.
CHECKS = [not_a_server_error, response_schema_conformance]


def _int64(value: Any) -> Any:
    """msgpack has no integers beyond 64 bits: a msgpack client cannot send them."""
    if isinstance(value, dict):
        return {k: _int64(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_int64(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return max(-(2**63), min(value, 2**64 - 1))
    return value


@schemathesis.serializer("application/msgpack")
def _to_msgpack(_ctx: Any, value: Any) -> bytes:
    return msgpack.packb(_int64(value), use_bin_type=True)


@schemathesis.deserializer("application/msgpack")
def _from_msgpack(_ctx: Any, response: Any) -> Any:
    return msgpack.unpackb(response.content, raw=False, strict_map_key=False)


class LiveServer:
    """An aiohttp app on 127.0.0.1 (random port), served by a loop on its own thread."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="live-server", daemon=True)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def __enter__(self) -> LiveServer:
        self._thread.start()
        assert self._ready.wait(10), "the server did not start"
        return self

    def __exit__(self, *_exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def _stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def fuzz(base_url: str, prepare: Callable[[Any], None] = lambda _case: None) -> Counter[int]:
    """Every operation of the served document; returns how often each status was answered."""
    document = requests.get(f"{base_url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    statuses: Counter[int] = Counter()
    refused: Counter[str] = Counter()  # 400s per operation, for the printed report.
    reasons: dict[str, str] = {}
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()

            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                derandomize=FUZZ_SEED is None,
                database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def call(case: Any) -> None:
                prepare(case)
                if sum(statuses.values()) % 2:  # Every other answer in msgpack, validated too.
                    case.headers = {**(case.headers or {}), "Accept": "application/msgpack"}
                response = case.call(base_url=base_url, session=session, timeout=20)
                statuses[response.status_code] += 1
                if response.status_code == 400:
                    refused[case.operation.label] += 1
                    reasons[case.operation.label] = response.text[:160]
                case.validate_response(response, checks=CHECKS)

            if FUZZ_SEED is not None:
                call = seed(int(FUZZ_SEED))(call)
            call()
    for label, count in refused.most_common():
        print(f"  {count:4d} x 400 {label}: {reasons[label]}")
    return statuses


def report(name: str, statuses: Counter[int]) -> float:
    total = sum(statuses.values())
    share = statuses[400] / total
    print(f"\n{name}: {total} requests, 400 share {share:.0%}, statuses {sorted(statuses.items())}")
    return share


def cap_long_polls(case: Any) -> None:
    wait_ms = (case.query or {}).get("wait_ms")
    if isinstance(wait_ms, int) or (
        isinstance(wait_ms, str) and wait_ms.isascii() and wait_ms.isdigit()
    ):
        case.query["wait_ms"] = min(int(wait_ms), WAIT_MS_MAX)


@pytest.fixture
def broker_url(broker_node: BrokerNode) -> Iterator[str]:
    with LiveServer(make_broker_app(broker_node.context)) as server:
        response = requests.post(
            f"{server.base_url}/topics", json={"topic": "T", "queues": 4}, timeout=10
        )
        assert response.status_code == 201, response.text
        yield server.base_url


def test_the_broker_api_answers_every_generated_request_without_a_5xx(broker_url: str) -> None:
    share = report("broker", fuzz(broker_url, cap_long_polls))
    assert share < 0.3, "the schema is looser than the validation again (it was 91 % 400s)"


def test_the_namesrv_api_answers_every_generated_request_without_a_5xx(tmp_path: Path) -> None:
    with LiveServer(make_namesrv_app(RouteRegistry())) as server:
        broker = {"cluster": "c", "broker_name": "b", "broker_id": 0, "addr": "127.0.0.1:1"}
        broker["topics"] = [{"topic": "T", "read_queues": 4, "write_queues": 4, "perm": 6}]
        assert requests.post(f"{server.base_url}/brokers", json=broker, timeout=10).ok
        share = report("namesrv", fuzz(server.base_url))
    assert share < 0.3
