"""Orderly and broadcasting consumption on the client side.

Goal: the client's lease view stops a queue before the broker's lease can end and claims
only what it still holds; local retries pause, count and give up after
`max_reconsume_times`; the local offset file round-trips atomically and refuses garbage;
against fake brokers an orderly consumer delivers one message at a time in order and moves
a poison message to the DLQ, and a broadcasting consumer never heartbeats or sends back,
skips a failing message and resumes from its offset file.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dledgermq.client import PushConsumer, PushOptions
from dledgermq.client.leases import LEASE_SAFETY, QueueLeases
from dledgermq.client.local_retry import Consumed, GaveUp, Interrupted, gives_up, retry_locally
from dledgermq.client.message import MessageQueue
from dledgermq.client.offset_store import LocalOffsetStore, OffsetFileError, default_offset_file
from tests.unit.client.client_fakes import wait_until

Q0 = MessageQueue("T", "broker-a", 0)
Q1 = MessageQueue("T", "broker-a", 1)
QB = MessageQueue("T", "broker-b", 0)


@given(sent_at=st.floats(0, 1e6), lease_s=st.floats(0.5, 600), later=st.floats(0, 1000))
def test_a_lease_is_used_only_within_its_safe_share_from_the_send_time(sent_at, lease_s, later):
    leases = QueueLeases()
    leases.granted([Q0], sent_at, lease_s)
    now = sent_at + later
    safe_s = lease_s * LEASE_SAFETY
    if leases.valid(Q0, now):  # (Up to float rounding of sent_at + ...)
        assert later < safe_s + 1e-6
    else:
        assert later >= safe_s - 1e-6
    assert leases.left_s(Q0, now) <= safe_s + 1e-6


def test_an_older_answer_never_shortens_a_lease_and_claims_name_valid_queues_only():
    leases = QueueLeases()
    leases.granted([Q0, QB], 10.0, 20.0)
    leases.granted([Q0], 5.0, 20.0)  # A late answer to an earlier heartbeat.
    assert leases.valid(Q0, 24.9)
    assert leases.held("broker-a", [Q0, Q1, QB], 20.0) == {"T": [0]}
    assert leases.held("broker-a", [Q0], 25.0) == {}
    leases.forget(Q0)
    assert not leases.valid(Q0, 11.0)


def test_giving_up_counts_the_first_try_and_every_retry():
    assert not gives_up(0, 0)
    assert gives_up(1, 0)
    assert not gives_up(3, 3)
    assert gives_up(4, 3)


async def test_local_retries_pause_and_give_up_after_the_maximum():
    seen: list[int] = []

    async def failing(failures: int) -> bool:
        seen.append(failures)
        return False

    outcome = await retry_locally(
        failing, max_reconsume_times=2, may_go_on=lambda: True, suspend_s=0
    )
    assert outcome == GaveUp(3)
    assert seen == [0, 1, 2]

    async def third_time_lucky(failures: int) -> bool:
        return failures == 2

    assert await retry_locally(
        third_time_lucky, max_reconsume_times=5, may_go_on=lambda: True, suspend_s=0
    ) == Consumed(2)
    assert (
        await retry_locally(failing, max_reconsume_times=5, may_go_on=lambda: False, suspend_s=0)
        == Interrupted()
    )


def test_the_offset_file_round_trips_and_is_replaced_atomically(tmp_path):
    path = tmp_path / "sub" / "offsets.json"
    store = LocalOffsetStore(path, "G")
    assert store.load() == {}
    store.save({Q0: 5, QB: 7})
    store.save({Q0: 6})
    assert LocalOffsetStore(path, "G").load() == {Q0: 6, QB: 7}
    assert not list(path.parent.glob("*.tmp"))
    assert json.loads(path.read_text())["group"] == "G"


def test_a_broken_or_foreign_offset_file_is_refused(tmp_path):
    path = tmp_path / "offsets.json"
    path.write_text("{not json")
    with pytest.raises(OffsetFileError):
        LocalOffsetStore(path, "G").load()
    LocalOffsetStore(path, "OTHER").save({Q0: 1})
    with pytest.raises(OffsetFileError, match="OTHER"):
        LocalOffsetStore(path, "G").load()


def test_the_default_offset_file_is_per_group_and_client():
    assert default_offset_file("G", "c/1").parts[-2:] == ("G", "c_1.json")
    assert default_offset_file("G").name == "default.json"


def test_bad_modes_are_refused():
    with pytest.raises(ValueError, match="mode"):
        PushConsumer(["x:1"], "G", "T", callback=print, mode="fanout")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="offset_file"):
        PushConsumer(["x:1"], "G", "T", callback=print, offset_file="/tmp/x.json")


def fill(broker, count, queues=2):
    for i in range(count):
        broker.store("T", i % queues, {"body": f"m{i}"})


async def test_orderly_delivers_one_at_a_time_in_order_and_dead_letters_a_poison(cluster):
    broker = await cluster.add_broker("broker-a", {"T": 2})
    fill(broker, 10)
    calls: list[list[str]] = []

    async def on_messages(messages):
        calls.append([m.body.decode() for m in messages])
        if messages[0].body == b"m4":
            raise RuntimeError("poison")

    options = PushOptions(wait_ms=100, max_reconsume_times=2, suspend_s=0)
    consumer = PushConsumer(
        [cluster.namesrv_addr],
        "G",
        "T",
        callback=on_messages,
        from_where="first",
        options=options,
        orderly=True,
    )
    await consumer.start()
    try:
        await wait_until(lambda: consumer.offsets == {Q0: 5, Q1: 5}, what="all consumed")
    finally:
        await consumer.close()
    assert all(len(c) == 1 for c in calls)
    queue0 = [c[0] for c in calls if int(c[0][1:]) % 2 == 0]
    assert queue0 == ["m0", "m2", "m4", "m4", "m4", "m6", "m8"]
    [(group, body)] = broker.sent_back
    assert group == "G"
    assert body["dead_letter"] is True
    assert body["reconsume_times"] == 2
    assert broker.offsets["G", "T"] == {"0": 5, "1": 5}


async def test_broadcasting_keeps_offsets_locally_and_skips_a_failing_message(cluster, tmp_path):
    broker = await cluster.add_broker("broker-a", {"T": 2})
    fill(broker, 6)
    got: list[str] = []

    async def on_messages(messages):
        for m in messages:
            if m.body == b"m3":
                raise RuntimeError("fails every time")
            got.append(m.body.decode())

    path = tmp_path / "offsets.json"

    def consumer():
        return PushConsumer(
            [cluster.namesrv_addr],
            "G",
            "T",
            callback=on_messages,
            from_where="first",
            options=PushOptions(wait_ms=100, max_messages=1, max_reconsume_times=1, suspend_s=0),
            mode="broadcasting",
            offset_file=path,
        )

    first = consumer()
    await first.start()
    try:
        await wait_until(lambda: first.offsets == {Q0: 3, Q1: 3}, what="all consumed")
    finally:
        await first.close()
    assert sorted(got) == ["m0", "m1", "m2", "m4", "m5"]
    assert broker.heartbeats == []
    assert broker.sent_back == []
    assert "G" not in {g for g, _ in broker.offsets}
    assert LocalOffsetStore(path, "G").load() == {Q0: 3, Q1: 3}
    broker.store("T", 0, {"body": "m6"})
    second = consumer()
    await second.start()
    try:
        await wait_until(lambda: second.offsets.get(Q0) == 4, what="the new message")
    finally:
        await second.close()
    assert sorted(got) == ["m0", "m1", "m2", "m4", "m5", "m6"]
