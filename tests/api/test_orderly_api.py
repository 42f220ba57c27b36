"""Orderly locks and direct dead letters through the HTTP API of a real broker.

Goal: a writer that just began (here: a broker that just started) grants an orderly
member only the queues it says it holds, first claim wins, and nothing else until its
grace ends, while a concurrent member is served as before; `dead_letter: true` moves a
message straight to the group's DLQ recording the consumer's local reconsume count; bad
orderly fields get 400 with a code and a message.

Method: HTTP calls against an in-process broker (consumer lease 20 s, so the grace is
21 s and lasts the whole test); waits are bounded conditions.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api.test_retry_api import broker_node, failure, get, post
from tests.conftest import wait_until_async

pytestmark = pytest.mark.timeout(60)
__all__ = ["broker_node"]  # The fixture, used by the tests below.


async def heartbeat(
    client: TestClient, topic: str, client_id: str, group: str = "OG", **fields: Any
) -> dict:
    body = {"client_id": client_id, "subscriptions": {topic: "*"}, **fields}

    async def answered() -> dict | None:
        response = await client.post(f"/groups/{group}/heartbeat", json=body)
        return await response.json() if response.status == 200 else None

    return await wait_until_async(answered, what="the rebalancer's first tick")


async def test_a_new_writer_grants_orderly_members_only_what_they_hold(
    client: TestClient, topic: str
) -> None:
    fresh = await heartbeat(client, topic, "a", orderly=True)
    assert fresh["assignment"] == {topic: []}  # Allocated, but in the grace: withheld.
    assert 0 < fresh["grace_ms"] <= 21_000
    claimed = await heartbeat(client, topic, "a", orderly=True, held={topic: [1, 2]})
    assert claimed["assignment"] == {topic: [1, 2]}  # Whatever the allocation says.
    second = await heartbeat(client, topic, "b", orderly=True, held={topic: [2, 3]})
    assert second["assignment"] == {topic: [3]}  # Queue 2: first claim wins.
    members = await get(client, "/groups/OG/members")
    assert members["owners"][topic] == {"0": None, "1": "a", "2": "a", "3": "b"}
    concurrent = await heartbeat(client, topic, "c", group="CG")  # Not orderly: as before.
    assert concurrent["assignment"] == {topic: [0, 1, 2, 3]}


async def test_bad_orderly_fields_are_refused(client: TestClient, topic: str) -> None:
    beat = {"client_id": "a", "subscriptions": {topic: "*"}}
    for body in [
        {**beat, "orderly": "yes"},
        {**beat, "held": {topic: [0]}},  # held without orderly
        {**beat, "orderly": True, "held": [0]},
        {**beat, "orderly": True, "held": {topic: [-1]}},
    ]:
        assert await failure(client, "/groups/OG/heartbeat", body) == (400, "BAD_REQUEST"), body
    bad_topic = {**beat, "orderly": True, "held": {"bad topic!": [0]}}
    assert await failure(client, "/groups/OG/heartbeat", bad_topic) == (400, "INVALID_TOPIC")


async def test_dead_letter_moves_a_message_straight_to_the_dlq(
    client: TestClient, topic: str
) -> None:
    sent = await post(client, f"/topics/{topic}/messages", {"messages": [{"body": "x"}]})
    msg_id = sent["results"][0]["msg_id"]
    body = {"msg_ids": [msg_id], "dead_letter": True, "reconsume_times": 5}
    [result] = (await post(client, "/groups/OG/send-back", body))["results"]
    assert (result["status"], result["topic"], result["reconsume_times"]) == (
        "DLQ",
        "%DLQ%OG",
        5,
    )
    [letter] = (await get(client, "/groups/OG/dlq"))["messages"]
    assert letter["reconsume_times"] == 5
    assert letter["properties"]["RETRY_TOPIC"] == topic
    for bad in [
        {"msg_ids": [msg_id], "dead_letter": "yes"},
        {"msg_ids": [msg_id], "reconsume_times": 3},  # without dead_letter
        {"msg_ids": [msg_id], "dead_letter": True, "reconsume_times": -1},
    ]:
        assert await failure(client, "/groups/OG/send-back", bad) == (400, "BAD_REQUEST"), bad
