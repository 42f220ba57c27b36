"""Send-back, retry topics and dead letters through the HTTP API of a real broker.

Goal: a message sent back comes again through `%RETRY%<group>` after its delay level
(here 1 s: the broker runs with short levels), keeping its unique key and recording its
original topic, msg_id and growing `reconsume_times`; after `max_reconsume_times` it lands
in `%DLQ%<group>`; the DLQ lists it and resends it to its topic, and "resend all" never
resends a letter twice. Every bad request gets its status and code and stores nothing.
Method: HTTP calls against an in-process broker; waits are bounded conditions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from dledgermq.config import parse_config
from dledgermq.node import BrokerHooks, BrokerNode, open_broker
from tests.conftest import wait_until_async
from tests.support import SMALL_STORE

pytestmark = pytest.mark.timeout(60)
LEVEL_MS = 1_000


@pytest.fixture
def broker_node(tmp_path: Path) -> Iterator[BrokerNode]:
    """The API tests' broker, with three 1 s delay levels (every retry waits 1 s)."""
    text = f"""
cluster: TestCluster
data_dir: {tmp_path / "data"}
heartbeat_interval_ms: 1000
tick_ms: 20
namesrvs: [{{id: ns1, port: 19876}}]
brokers: [{{name: broker-a, nodes: [{{id: n1, port: 20911}}]}}]
""" + SMALL_STORE.format(flush="sync").replace(
        "store:\n", "store:\n  message_delay_level: 1s 1s 1s\n", 1
    )
    config = parse_config(text, base_dir=tmp_path)
    group, node = config.node("n1")
    fatal: list[tuple[str, BaseException]] = []
    hooks = BrokerHooks(on_fatal=lambda name, error: fatal.append((name, error)))
    broker = open_broker(config, group, node, hooks=hooks)
    yield broker
    broker.stop()
    assert fatal == [], f"an actor failed: {fatal}"


async def post(client: TestClient, path: str, body: dict) -> dict:
    response = await client.post(path, json=body)
    assert response.status == 200, await response.text()
    return await response.json()


async def get(client: TestClient, path: str, **params) -> dict:
    response = await client.get(path, params=params)
    assert response.status == 200, await response.text()
    return await response.json()


async def failure(client: TestClient, path: str, body: dict) -> tuple[int, str]:
    response = await client.post(path, json=body)
    answer = await response.json()
    assert set(answer) >= {"code", "message"}, answer
    return response.status, answer["code"]


async def arrival(client: TestClient, topic: str, offset: int) -> dict:
    """The message at `offset` of queue 0 of `topic`, once it is there."""

    async def pulled() -> dict | None:
        page = await client.get(
            f"/topics/{topic}/queues/0/messages", params={"offset": offset, "max": 1}
        )
        if page.status != 200:  # The topic is created with the first send-back.
            return None
        messages = (await page.json())["messages"]
        return messages[0] if messages else None

    return await wait_until_async(pulled, timeout_s=10, what=f"{topic} offset {offset}")


async def test_a_failed_message_is_retried_twice_then_dead_lettered_then_resent(
    client: TestClient, topic: str
) -> None:
    [sent] = (await post(client, f"/topics/{topic}/messages", {"messages": [{"body": "m"}]}))[
        "results"
    ]
    original = sent["msg_id"]
    current = original
    for attempt in (1, 2):
        before_ms = time.time_ns() // 1_000_000
        [result] = (
            await post(
                client, "/groups/G/send-back", {"msg_ids": [current], "max_reconsume_times": 2}
            )
        )["results"]
        assert result["status"] == "RETRY"
        assert (result["topic"], result["reconsume_times"]) == ("%RETRY%G", attempt)
        assert result["deliver_at_ms"] >= before_ms + LEVEL_MS
        retried = await arrival(client, "%RETRY%G", attempt - 1)
        assert retried["store_timestamp_ms"] >= before_ms + LEVEL_MS, "redelivered early"
        assert retried["reconsume_times"] == attempt
        assert retried["unique_key"] == sent["unique_key"]
        assert retried["body"] == "m"
        assert retried["properties"]["RETRY_TOPIC"] == topic
        assert retried["properties"]["ORIGIN_MESSAGE_ID"] == original
        current = retried["msg_id"]
    retry_config = await get(client, "/topics/%RETRY%G")
    assert (retry_config["read_queues"], retry_config["write_queues"]) == (1, 1)

    [result] = (
        await post(client, "/groups/G/send-back", {"msg_ids": [current], "max_reconsume_times": 2})
    )["results"]
    assert (result["status"], result["topic"], result["deliver_at_ms"]) == ("DLQ", "%DLQ%G", None)
    page = await get(client, "/groups/G/dlq")
    [letter] = page["messages"]
    assert letter["msg_id"] == result["dead_letter_id"]
    assert (letter["topic"], letter["reconsume_times"]) == ("%DLQ%G", 2)
    assert letter["properties"]["RETRY_TOPIC"] == topic
    assert letter["unique_key"] == sent["unique_key"]
    assert (page["min_offset"], page["max_offset"], page["resend_offset"]) == (0, 1, None)

    answer = await post(client, "/groups/G/dlq/resend", {"all": True})
    [resent] = answer["resent"]
    assert (answer["skipped"], answer["next_offset"], answer["remaining"]) == ([], 1, 0)
    assert (resent["msg_id"], resent["topic"]) == (letter["msg_id"], topic)
    back = await get(client, f"/messages/{resent['new_msg_id']}")
    assert (back["topic"], back["reconsume_times"], back["body"]) == (topic, 0, "m")
    assert back["unique_key"] == sent["unique_key"]
    assert "RETRY_TOPIC" not in back["properties"]
    # "all" goes on from the group's resend mark: nothing is resent twice.
    again = await post(client, "/groups/G/dlq/resend", {"all": True})
    assert (again["resent"], again["next_offset"]) == ([], 1)
    assert (await get(client, "/groups/G/dlq"))["resend_offset"] == 1
    # Named letters are resent whatever the mark says.
    by_id = await post(client, "/groups/G/dlq/resend", {"msg_ids": [letter["msg_id"]]})
    assert [r["topic"] for r in by_id["resent"]] == [topic]


async def test_zero_retries_dead_letters_at_once_and_a_batch_is_one_decision_each(
    client: TestClient, topic: str
) -> None:
    sent = (
        await post(
            client,
            f"/topics/{topic}/messages",
            {"messages": [{"body": "a"}, {"body": "b"}], "queue_id": 1},
        )
    )["results"]
    ids = [s["msg_id"] for s in sent]
    results = (
        await post(client, "/groups/G/send-back", {"msg_ids": ids, "max_reconsume_times": 0})
    )["results"]
    assert [(r["msg_id"], r["status"]) for r in results] == [(i, "DLQ") for i in ids]
    page = await get(client, "/groups/G/dlq", max=1)
    assert ([m["body"] for m in page["messages"]], page["next_offset"]) == (["a"], 1)
    page = await get(client, "/groups/G/dlq", offset=1)
    assert [m["body"] for m in page["messages"]] == ["b"]
    assert (await get(client, "/groups/OTHER/dlq"))["messages"] == []


async def test_a_dead_letter_whose_topic_is_gone_is_skipped_not_lost(
    client: TestClient, topic: str
) -> None:
    [sent] = (await post(client, f"/topics/{topic}/messages", {"messages": [{"body": "x"}]}))[
        "results"
    ]
    await post(
        client, "/groups/G/send-back", {"msg_ids": [sent["msg_id"]], "max_reconsume_times": 0}
    )
    assert (await client.delete(f"/topics/{topic}")).status == 200
    answer = await post(client, "/groups/G/dlq/resend", {"all": True})
    assert answer["resent"] == []
    assert [s["code"] for s in answer["skipped"]] == ["TOPIC_NOT_FOUND"]
    assert len((await get(client, "/groups/G/dlq"))["messages"]) == 1


async def test_bad_send_backs_and_resends_get_codes_and_store_nothing(
    client: TestClient, topic: str
) -> None:
    [sent] = (await post(client, f"/topics/{topic}/messages", {"messages": [{"body": "x"}]}))[
        "results"
    ]
    msg_id = sent["msg_id"]
    other_broker = "00000000" + msg_id[8:]
    past_the_end = msg_id[:8] + "0000000000100000" + msg_id[24:]
    cases = [
        ("/groups/G/send-back", {}, 400, "BAD_REQUEST"),
        ("/groups/G/send-back", {"msg_ids": []}, 400, "BAD_REQUEST"),
        ("/groups/G/send-back", {"msg_ids": [msg_id, msg_id]}, 400, "BAD_REQUEST"),
        ("/groups/G/send-back", {"msg_ids": ["nothex"]}, 400, "BAD_REQUEST"),
        ("/groups/G/send-back", {"msg_ids": [sent["unique_key"] + "0"]}, 400, "BAD_REQUEST"),
        ("/groups/G/send-back", {"msg_ids": [other_broker]}, 400, "BAD_REQUEST"),
        ("/groups/G/send-back", {"msg_ids": [past_the_end]}, 404, "MESSAGE_NOT_FOUND"),
        ("/groups/G/send-back", {"msg_ids": [msg_id], "extra": 1}, 400, "BAD_REQUEST"),
        (
            "/groups/G/send-back",
            {"msg_ids": [msg_id], "max_reconsume_times": 1001},
            400,
            "BAD_REQUEST",
        ),
        (
            "/groups/G/send-back",
            {"msg_ids": [msg_id], "max_reconsume_times": "3"},
            400,
            "BAD_REQUEST",
        ),
        ("/groups/bad group/send-back", {"msg_ids": [msg_id]}, 400, "BAD_REQUEST"),
        (f"/groups/{'g' * 125}/send-back", {"msg_ids": [msg_id]}, 400, "BAD_REQUEST"),
        ("/groups/G/dlq/resend", {}, 400, "BAD_REQUEST"),
        ("/groups/G/dlq/resend", {"all": True, "msg_ids": [msg_id]}, 400, "BAD_REQUEST"),
        ("/groups/G/dlq/resend", {"all": "yes"}, 400, "BAD_REQUEST"),
        ("/groups/G/dlq/resend", {"all": True, "max": 0}, 400, "BAD_REQUEST"),
        ("/groups/G/dlq/resend", {"msg_ids": [msg_id], "max": 3}, 400, "BAD_REQUEST"),
        # Not a dead letter of G: resending it would duplicate a live message.
        ("/groups/G/dlq/resend", {"msg_ids": [msg_id]}, 400, "BAD_REQUEST"),
    ]
    for path, body, status, code in cases:
        assert await failure(client, path, body) == (status, code), (path, body)
    topics = {t["topic"] for t in (await get(client, "/topics"))["topics"]}
    assert topics == {topic}, "a refused request created a topic"
    for params in ({"offset": "x"}, {"max": 0}, {"offset": 5}, {"other": 1}):
        response = await client.get("/groups/G/dlq", params=params)
        assert response.status == 400, params
    # A dead letter cannot be sent back again, nor a message of another group's retry.
    await post(client, "/groups/G/send-back", {"msg_ids": [msg_id], "max_reconsume_times": 0})
    [letter] = (await get(client, "/groups/G/dlq"))["messages"]
    assert await failure(client, "/groups/G/send-back", {"msg_ids": [letter["msg_id"]]}) == (
        400,
        "BAD_REQUEST",
    )
    await post(client, "/groups/H/send-back", {"msg_ids": [msg_id]})
    retried = await arrival(client, "%RETRY%H", 0)
    assert await failure(client, "/groups/G/send-back", {"msg_ids": [retried["msg_id"]]}) == (
        400,
        "BAD_REQUEST",
    )
