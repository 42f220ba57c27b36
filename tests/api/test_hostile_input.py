"""What a hostile (or merely buggy) client sends is refused at the edge, alone.

Goal: the findings of the security probe (`shared/probes/security-probe.md`, D1-D8, D12
and its minor list) as regressions: each request below crashed an actor, poisoned the log,
bypassed a permission or was accepted against the contract on the code the probe ran.
Method: a real broker (actors and store in a temp dir) behind aiohttp's test client; the
`broker_node` fixture fails the test if any actor died.
"""

from __future__ import annotations

import msgpack
import pytest
from aiohttp.test_utils import TestClient

from dledgermq.broker.reserved import BROKER_ONLY, FROM_FIELDS
from tests.conftest import wait_until_async

pytestmark = pytest.mark.timeout(30)


async def status_and_code(response) -> tuple[int, str]:
    body = await response.json()
    return response.status, body["code"]


async def send(client: TestClient, topic: str, message: dict, **extra) -> tuple[int, str]:
    response = await client.post(
        f"/topics/{topic}/messages", json={"messages": [message], **extra}
    )
    if response.status == 200:
        return 200, "OK"
    return await status_and_code(response)


async def test_a_lone_surrogate_client_id_is_refused_and_the_rebalancer_lives(
    client: TestClient, topic: str
) -> None:
    """D1: consistent_hash hashed the id and the RebalancerActor died of it."""
    beat = {"client_id": "\ud800", "subscriptions": {topic: "*"}, "strategy": "consistent_hash"}
    response = await client.post("/groups/g1/heartbeat", json=beat)
    assert await status_and_code(response) == (400, "BAD_REQUEST")
    for bad in (
        {"client_id": "a\nforged log line"},
        {"zone": "\ud800"},
        {"client_id": ""},
        {"subscriptions": {topic: "a||\ud800"}},  # The 30-minute chaos run's 500.
    ):
        response = await client.post("/groups/g1/heartbeat", json={**beat, "client_id": "c"} | bad)
        assert response.status == 400, bad

    async def accepted() -> dict | None:  # 503 UNAVAILABLE until the rebalancer's first tick
        fine = await client.post("/groups/g1/heartbeat", json={**beat, "client_id": "c1@host"})
        return await fine.json() if fine.status == 200 else None

    answer = await wait_until_async(accepted, what="a heartbeat answered")
    assert answer["assignment"][topic] == [0, 1, 2, 3]


@pytest.mark.parametrize("name", sorted(BROKER_ONLY))
async def test_every_broker_only_property_is_refused(
    client: TestClient, topic: str, name: str
) -> None:
    """D2-D6: REAL_TOPIC/REAL_QID on a delayed message steered the scheduler into the
    broker's state topics (every replica then died), past a topic's permission, or into a
    queue that cannot exist (the delay queue stopped). No user message may carry them."""
    message = {"body": "x", "delay_level": 1, "properties": {name: "%SYS%TOPIC"}}
    assert await send(client, topic, message) == (400, "RESERVED_PROPERTY")
    assert await send(client, topic, {"body": "x", "properties": {name: "0"}}) == (
        400,
        "RESERVED_PROPERTY",
    )


async def test_the_probes_poison_request_is_refused_before_it_reaches_the_log(
    client: TestClient, topic: str
) -> None:
    """D3, verbatim: acknowledged on the probed code, fatal to every replica a second later."""
    message = {
        "body": "not msgpack",
        "delay_level": 1,
        "properties": {"REAL_TOPIC": "%SYS%TOPIC", "REAL_QID": "0"},
    }
    assert await send(client, topic, message) == (400, "RESERVED_PROPERTY")
    for name in sorted(FROM_FIELDS):
        assert await send(client, topic, {"body": "x", "properties": {name: "a"}}) == (
            400,
            "RESERVED_PROPERTY",
        )


async def test_msgpack_keys_of_other_types_are_a_400(client: TestClient, topic: str) -> None:
    """D7: a message map with an integer key answered 500 (sorting str against int)."""
    for body in (
        b"\x83\xa8messages\x91\x81\xa4body\xa1x\x01\x02\xc4\x01k\x03",  # the probe's bytes
        msgpack.packb({"messages": [{"body": "x", b"k": 1}]}, use_bin_type=True),
        msgpack.packb({"messages": [{"body": "x"}], b"queue_id": 0}, use_bin_type=True),
    ):
        response = await client.post(
            f"/topics/{topic}/messages",
            data=body,
            headers={"content-type": "application/msgpack"},
        )
        assert response.status == 400, body


@pytest.mark.parametrize("value", ["²", "\u0660", " 5", "5_0", "-1", "99999999999"])
async def test_a_check_immunity_that_is_not_ascii_digits_in_range_is_a_400(
    client: TestClient, topic: str, value: str
) -> None:
    """D8: "²" passes str.isdigit() but not int(): 500."""
    payload = {
        "producer_group": "pg1",
        "message": {"body": "x", "properties": {"CHECK_IMMUNITY_TIME_IN_SECONDS": value}},
    }
    response = await client.post(f"/topics/{topic}/transactions", json=payload)
    assert response.status == 400, await response.text()
    payload["message"]["properties"]["CHECK_IMMUNITY_TIME_IN_SECONDS"] = "30"
    assert (await client.post(f"/topics/{topic}/transactions", json=payload)).status == 200
    payload["message"]["properties"] = {"other": "property"}  # None given: no immunity.
    assert (await client.post(f"/topics/{topic}/transactions", json=payload)).status == 200


async def test_half_messages_and_due_less_delayed_copies_are_not_readable_by_id(
    client: TestClient, topic: str
) -> None:
    """D12: both were served by `GET /messages/{id}`, internal properties and all."""
    half = await client.post(
        f"/topics/{topic}/transactions",
        json={"producer_group": "pg1", "message": {"body": "secret"}},
    )
    half_sent = await half.json()
    delayed = await client.post(
        f"/topics/{topic}/messages",
        json={"messages": [{"body": "later", "delay_level": 18}]},  # due in 2 h
    )
    [delayed_sent] = (await delayed.json())["results"]
    for sent in (half_sent, delayed_sent):
        for msg_id in (sent["msg_id"], sent["unique_key"]):
            response = await client.get(f"/messages/{msg_id}")
            assert await status_and_code(response) == (404, "MESSAGE_NOT_FOUND"), msg_id
    plain = await client.post(f"/topics/{topic}/messages", json={"messages": [{"body": "now"}]})
    [plain_sent] = (await plain.json())["results"]
    assert (await client.get(f"/messages/{plain_sent['msg_id']}")).status == 200


async def test_clients_cannot_create_or_write_the_brokers_topics(
    client: TestClient, topic: str
) -> None:
    """Minor: `%DLQ%*` and `%RETRY%*` topics could be created (and then written) by anyone."""
    for name in ("%DLQ%g1", "%RETRY%g1", "%SYS%TOPIC", "%DELAY%SCHEDULE", "%TRANS%HALF"):
        created = await client.post("/topics", json={"topic": name, "queues": 1})
        assert await status_and_code(created) == (400, "INVALID_TOPIC"), name
        path = name.replace("%", "%25")
        assert await send(client, path, {"body": "x"}) == (400, "INVALID_TOPIC"), name


@pytest.mark.parametrize("offset", ["\u0660", " 0", "0 ", "+0", "1_0", "²"])
async def test_numeric_query_parameters_take_ascii_digits_only(
    client: TestClient, topic: str, offset: str
) -> None:
    """Minor: `offset=` with an Arabic-Indic zero, and `offset=%200` were read as 0."""
    response = await client.get(
        f"/topics/{topic}/queues/0/messages", params={"offset": offset, "max": "1"}
    )
    assert await status_and_code(response) == (400, "BAD_REQUEST")


async def test_property_limits_count_utf8_bytes(client: TestClient, topic: str) -> None:
    """Minor: 128 KB of emoji passed the 32 KiB properties limit (it counted characters)."""
    emoji = "\U0001f600" * 2_100  # 2,100 characters, 8,400 bytes
    heavy = {f"p{i}": emoji for i in range(4)}  # 8,400 characters, 33,600 bytes
    assert await send(client, topic, {"body": "x", "properties": heavy}) == (
        400,
        "INVALID_MESSAGE",
    )
    light = {f"p{i}": emoji for i in range(3)}
    assert await send(client, topic, {"body": "x", "properties": light}) == (200, "OK")


async def test_keys_per_message_are_bounded(client: TestClient, topic: str) -> None:
    """Minor: one message carried 500,000 keys (11.7 MB of index on every replica)."""
    many = [f"k{i}" for i in range(33)]
    assert await send(client, topic, {"body": "x", "keys": many}) == (400, "INVALID_MESSAGE")
    assert await send(client, topic, {"body": "x", "keys": many[:32]}) == (200, "OK")


@pytest.mark.parametrize("unique_key", ["", "a b", "\u00e9", "x" * 65, "../etc", "%SYS%"])
async def test_a_client_unique_key_is_an_id(
    client: TestClient, topic: str, unique_key: str
) -> None:
    """Minor: clients set UNIQ_KEY to anything. It stays client-settable (RocketMQ's
    clients set it, ours too) but must be an id: indexed, printed, used in a path."""
    message = {"body": "x", "properties": {"UNIQ_KEY": unique_key}}
    assert await send(client, topic, message) == (400, "INVALID_MESSAGE")
    message["properties"]["UNIQ_KEY"] = "0A1B2C3D4E5F60718293A4B5C6D7E8F9"
    assert await send(client, topic, message) == (200, "OK")
