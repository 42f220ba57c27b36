"""Transactional messages through the HTTP API of a real in-process broker.

Goal: a half message is stored but never pulled; commit makes it visible once (however
often, or concurrently, it is repeated), rollback never; a repeated end answers the
outcome that stands, a contrary one 409; an end bound to another id, offset or group
touches nothing (404). A producer polling for check-backs is asked after the check
immunity and decides by answering; a transaction nobody answers is rolled back after
`max_check_times`. Pending transactions and outcomes survive a restart (they are
replayed from the log). Every bad request gets its status and code.
Method: HTTP calls; waits are bounded conditions; the broker checks every 1 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from dledgermq.api.broker_app import make_broker_app
from dledgermq.config import ClusterConfig, parse_config
from dledgermq.node import BrokerHooks, BrokerNode, open_broker
from tests.conftest import wait_until_async
from tests.support import SMALL_STORE

pytestmark = pytest.mark.timeout(60)
TRANSACTIONS = """
transactions: {check_immunity_s: 1, check_interval_s: 1, max_check_times: 2}
"""


def config_in(tmp_path: Path) -> ClusterConfig:
    text = f"""
cluster: TestCluster
data_dir: {tmp_path / "data"}
heartbeat_interval_ms: 1000
tick_ms: 20
namesrvs: [{{id: ns1, port: 19876}}]
brokers: [{{name: broker-a, nodes: [{{id: n1, port: 20911}}]}}]
"""
    return parse_config(text + SMALL_STORE.format(flush="sync") + TRANSACTIONS, base_dir=tmp_path)


def start(config: ClusterConfig, fatal: list[Any]) -> BrokerNode:
    group, node = config.node("n1")
    hooks = BrokerHooks(on_fatal=lambda name, error: fatal.append((name, error)))
    return open_broker(config, group, node, hooks=hooks)


@pytest.fixture
def broker_node(tmp_path: Path) -> Iterator[BrokerNode]:
    fatal: list[Any] = []
    broker = start(config_in(tmp_path), fatal)
    yield broker
    broker.stop()
    assert fatal == [], f"an actor failed: {fatal}"


async def call(client: TestClient, method: str, path: str, body: Any = None, **params: Any) -> Any:
    response = await client.request(method, path, json=body, params=params)
    answer = await response.json()
    return response.status, answer


async def ok(client: TestClient, method: str, path: str, body: Any = None, **params: Any) -> Any:
    status, answer = await call(client, method, path, body, **params)
    assert status == 200, answer
    return answer


async def half(client: TestClient, body: str, group: str = "pg", **extra: Any) -> dict[str, Any]:
    payload = {"producer_group": group, "message": {"body": body, "keys": [body]}, **extra}
    return await ok(client, "POST", "/topics/T/transactions", payload)


async def end(client: TestClient, sent: dict[str, Any], outcome: str, **over: Any) -> Any:
    body = {
        "producer_group": sent["producer_group"],
        "commitlog_offset": sent["commitlog_offset"],
        "outcome": outcome,
        **over,
    }
    return await call(client, "POST", f"/transactions/{sent['transaction_id']}/end", body)


async def visible(client: TestClient) -> list[str]:
    """Every body a consumer can pull from T (all four queues)."""
    bodies = []
    for queue_id in range(4):
        page = await ok(client, "GET", f"/topics/T/queues/{queue_id}/messages", offset=0, max=64)
        bodies += [m["body"] for m in page["messages"]]
    return sorted(bodies)


async def listing(client: TestClient, **params: Any) -> dict[str, Any]:
    return await ok(client, "GET", "/transactions", **params)


async def test_commit_makes_a_half_message_visible_once_and_rollback_never(
    client: TestClient, topic: str
) -> None:
    a, b = await half(client, "a"), await half(client, "b")
    assert a["transaction_id"] != b["transaction_id"]
    assert await visible(client) == [], "a half message was delivered"
    pending = (await listing(client, state="pending"))["pending"]
    assert [(p["commitlog_offset"], p["topic"], p["checks"]) for p in pending] == [
        (a["commitlog_offset"], "T", 0),
        (b["commitlog_offset"], "T", 0),
    ]

    status, committed = await end(client, a, "commit")
    assert (status, committed["outcome"], committed["already_ended"]) == (200, "commit", False)
    status, rolled = await end(client, b, "rollback")
    assert (status, rolled["outcome"], rolled["msg_id"]) == (200, "rollback", None)
    assert await visible(client) == ["a"]
    copy = await ok(client, "GET", f"/messages/{committed['msg_id']}")
    assert (copy["topic"], copy["queue_id"], copy["body"]) == ("T", a["queue_id"], "a")
    assert copy["unique_key"] == a["unique_key"]
    assert copy["properties"]["TRANSACTION_ID"] == a["transaction_id"]

    # Repeated ends answer the outcome that stands; contrary ones are refused.
    status, again = await end(client, a, "commit")
    assert (status, again["already_ended"], again["msg_id"]) == (200, True, committed["msg_id"])
    status, error = await end(client, a, "rollback")
    assert (status, error["code"], error["outcome"]) == (409, "TRANSACTION_CONFLICT", "commit")
    status, error = await end(client, b, "commit")
    assert (status, error["code"], error["outcome"]) == (409, "TRANSACTION_CONFLICT", "rollback")
    assert (await end(client, b, "rollback"))[0] == 200
    assert await visible(client) == ["a"]
    ended = (await listing(client))["ended"]
    assert [(e["commitlog_offset"], e["outcome"], e["by"]) for e in ended] == [
        (b["commitlog_offset"], "rollback", "producer"),
        (a["commitlog_offset"], "commit", "producer"),
    ]


async def test_concurrent_duplicate_commits_deliver_the_message_once(
    client: TestClient, topic: str
) -> None:
    sent = await half(client, "dup")
    answers = await asyncio.gather(*(end(client, sent, "commit") for _ in range(6)))
    assert {status for status, _ in answers} == {200}
    assert len({a["msg_id"] for _, a in answers}) == 1
    assert await visible(client) == ["dup"]
    # A commit racing a rollback: exactly one outcome stands, the loser gets 409.
    raced = await half(client, "race")
    (s1, a1), (s2, a2) = await asyncio.gather(
        end(client, raced, "commit"), end(client, raced, "rollback")
    )
    assert sorted([s1, s2]) == [200, 409]
    winner = a1["outcome"] if s1 == 200 else a2["outcome"]
    assert await visible(client) == (["dup", "race"] if winner == "commit" else ["dup"])


async def test_an_end_bound_to_another_transaction_touches_nothing(
    client: TestClient, topic: str
) -> None:
    a, b = await half(client, "a"), await half(client, "b")
    for wrong in (
        {"commitlog_offset": b["commitlog_offset"]},  # a's id with b's offset
        {"commitlog_offset": a["commitlog_offset"] + 1},
        {"producer_group": "someone-else"},
    ):
        status, error = await end(client, a, "commit", **wrong)
        assert (status, error["code"]) == (404, "TRANSACTION_NOT_FOUND"), wrong
    status, error = await end(client, {**a, "transaction_id": b["transaction_id"]}, "commit")
    assert (status, error["code"]) == (404, "TRANSACTION_NOT_FOUND")
    status, unknown = await end(client, a, "unknown")
    assert (status, unknown["state"]) == (200, "pending")
    assert await visible(client) == []
    assert (await listing(client))["pending_total"] == 2


async def test_bad_requests_get_a_status_and_code(client: TestClient, topic: str) -> None:
    sent = await half(client, "x")
    bad_sends = [
        ("/topics/T/transactions", {"message": {"body": "m"}}, 400, "BAD_REQUEST"),
        ("/topics/T/transactions", {"producer_group": "g", "message": "m"}, 400, "BAD_REQUEST"),
        (
            "/topics/T/transactions",
            {"producer_group": "g", "message": {"body": "m", "delay_level": 1}},
            400,
            "BAD_REQUEST",
        ),
        (
            "/topics/T/transactions",
            {"producer_group": "g", "message": {"body": "m"}, "check_immunity_s": -1},
            400,
            "BAD_REQUEST",
        ),
        (
            "/topics/T/transactions",
            {"producer_group": "g", "message": {"body": ""}},
            400,
            "INVALID_MESSAGE",
        ),
        (
            "/topics/Nope/transactions",
            {"producer_group": "g", "message": {"body": "m"}},
            404,
            "TOPIC_NOT_FOUND",
        ),
        (
            "/topics/%25TRANS%25HALF/transactions",
            {"producer_group": "g", "message": {"body": "m"}},
            400,
            "INVALID_TOPIC",
        ),
        (
            f"/transactions/{sent['transaction_id']}/end",
            {"producer_group": "pg", "outcome": "commit"},
            400,
            "BAD_REQUEST",
        ),
        (
            f"/transactions/{sent['transaction_id']}/end",
            {
                "producer_group": "pg",
                "commitlog_offset": sent["commitlog_offset"],
                "outcome": "maybe",
            },
            400,
            "BAD_REQUEST",
        ),
        (
            "/transactions/not%20an%20id/end",
            {"producer_group": "pg", "commitlog_offset": 0, "outcome": "commit"},
            400,
            "BAD_REQUEST",
        ),
    ]
    for path, body, status, code in bad_sends:
        got_status, error = await call(client, "POST", path, body)
        assert (got_status, error["code"]) == (status, code), (path, body, error)
        assert error["message"]
    for params in ({"state": "nope"}, {"max": 0}, {"typo": 1}):
        status, error = await call(client, "GET", "/transactions", **params)
        assert (status, error["code"]) == (400, "BAD_REQUEST"), params
    status, error = await call(client, "GET", "/topics/%25TRANS%25HALF/queues/0/messages", offset=0)
    assert (status, error["code"]) == (400, "INVALID_TOPIC")
    status, error = await call(client, "GET", "/producers/pg/checks")
    assert (status, error["code"]) == (400, "BAD_REQUEST")
    assert (await listing(client))["pending_total"] == 1


async def test_a_polling_producer_is_asked_and_its_answer_decides(
    client: TestClient, topic: str
) -> None:
    sent = await half(client, "checked")

    async def asked() -> list[dict[str, Any]]:
        page = await ok(client, "GET", "/producers/pg/checks", client_id="p1", wait_ms=3000)
        return page["checks"]

    [check] = await wait_until_async(asked, timeout_s=15, what="a check-back")
    assert (check["transaction_id"], check["commitlog_offset"]) == (
        sent["transaction_id"],
        sent["commitlog_offset"],
    )
    assert check["check_times"] == 1
    message = check["message"]
    assert (message["topic"], message["queue_id"], message["body"]) == (
        "T",
        sent["queue_id"],
        "checked",
    )
    assert message["keys"] == ["checked"]
    assert (await end(client, check, "commit"))[0] == 200
    assert await visible(client) == ["checked"]


async def test_a_transaction_nobody_answers_is_rolled_back_after_max_checks(
    client: TestClient, topic: str
) -> None:
    sent = await half(client, "orphan", check_immunity_s=0)

    async def ended() -> list[dict[str, Any]]:
        return (await listing(client, state="ended"))["ended"]

    [outcome] = await wait_until_async(ended, timeout_s=20, what="the rollback")
    assert (outcome["commitlog_offset"], outcome["outcome"], outcome["by"]) == (
        sent["commitlog_offset"],
        "rollback",
        "max_checks",
    )
    assert outcome["checks"] == 2
    status, error = await end(client, sent, "commit")
    assert (status, error["code"], error["by"]) == (409, "TRANSACTION_CONFLICT", "max_checks")
    assert await visible(client) == []


async def test_pending_transactions_and_outcomes_survive_a_restart(tmp_path: Path) -> None:
    config, fatal = config_in(tmp_path), []
    broker = await asyncio.to_thread(start, config, fatal)
    try:
        async with TestClient(TestServer(make_broker_app(broker.context))) as client:
            assert (await call(client, "POST", "/topics", {"topic": "T", "queues": 4}))[0] == 201
            kept, committed = (
                await half(client, "kept", check_immunity_s=3600),
                await half(client, "c"),
            )
            await end(client, committed, "commit")
    finally:
        await asyncio.to_thread(broker.stop)
    broker = await asyncio.to_thread(start, config, fatal)
    try:
        async with TestClient(TestServer(make_broker_app(broker.context))) as client:
            answer = await listing(client)
            assert [p["transaction_id"] for p in answer["pending"]] == [kept["transaction_id"]]
            assert [e["outcome"] for e in answer["ended"]] == ["commit"]
            status, again = await end(client, committed, "commit")
            assert (status, again["already_ended"]) == (200, True)
            assert (await end(client, kept, "commit"))[0] == 200
            assert await visible(client) == ["c", "kept"]
    finally:
        await asyncio.to_thread(broker.stop)
    assert fatal == []
