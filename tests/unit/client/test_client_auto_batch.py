"""Auto-batching of concurrent sends (`client/auto_batch.py`, `Producer(auto_batch=True)`).

Goal: a lone send leaves at once; sends arriving while `max_inflight` requests are out
wait and leave together, each answered with its own result; batches respect the count
and byte limits; a batch refused for its content is resent in halves so only the bad
message fails; a topic-wide error reaches every sender; a sender that gave up is not
sent; topics do not share batches; sharding-key sends are never batched.
Method: a flush whose answers the test releases (asyncio futures), no sockets; the
producer part uses the scripted fake transport of test_client_producer_logic.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from dledgermq.client.auto_batch import MESSAGE_OVERHEAD_BYTES, AutoBatcher, BatchLimits
from dledgermq.client.message import MessageQueue, OutgoingMessage, SendResult
from dledgermq.client.producer import Producer
from dledgermq.errors import MessageTooLarge, NoPermission
from tests.unit.client.test_client_producer_logic import FakeHttp

QUEUE = MessageQueue("T", "a", 0)


class GatedFlush:
    """Records each batch and answers it only when the test calls `answer`."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[bytes]]] = []
        self._gates: list[asyncio.Future[BaseException | None]] = []
        self.arrived = asyncio.Event()

    async def __call__(self, topic: str, messages: list[OutgoingMessage]) -> list[SendResult]:
        gate = asyncio.get_running_loop().create_future()
        self.batches.append((topic, [m.body for m in messages]))
        self._gates.append(gate)
        self.arrived.set()
        error = await gate
        if error is not None:
            raise error
        return [SendResult(f"id-{m.body.decode()}", m.unique_key, QUEUE, 0, 0) for m in messages]

    def answer(self, batch: int, error: BaseException | None = None) -> None:
        self._gates[batch].set_result(error)

    async def wait_batches(self, count: int) -> None:
        async with asyncio.timeout(5):  # Fail with a clear place rather than hang.
            while len(self.batches) < count:
                self.arrived.clear()
                await self.arrived.wait()


def message(text: str, size: int = 0) -> OutgoingMessage:
    return OutgoingMessage.build(text.encode() if not size else text.encode().ljust(size, b"."))


def batcher(flush: GatedFlush, **limits: int) -> tuple[AutoBatcher, set[asyncio.Task]]:
    tasks: set[asyncio.Task] = set()

    def spawn(coro):
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        return task

    return AutoBatcher(flush, spawn, BatchLimits(**limits)), tasks


def submit_all(b: AutoBatcher, texts: list[str], topic: str = "T") -> list[asyncio.Task]:
    return [asyncio.ensure_future(b.submit(topic, message(t))) for t in texts]


async def one_slot_taken() -> tuple[GatedFlush, AutoBatcher, set[asyncio.Task], list[asyncio.Task]]:
    """A batcher with one request slot, taken by "m0" (batch 0, unanswered): what is
    submitted next waits. Returns the flush, the batcher, its tasks and m0's send."""
    flush = GatedFlush()
    b, tasks = batcher(flush, max_inflight=1)
    first = submit_all(b, ["m0"])
    await flush.wait_batches(1)
    return flush, b, tasks, first


async def test_a_lone_send_leaves_at_once_and_later_ones_wait_for_a_free_slot():
    flush, b, _, first = await one_slot_taken()
    rest = submit_all(b, ["m1", "m2", "m3"])
    await asyncio.sleep(0)  # Let the three reach the batcher (nothing is awaited there).
    assert flush.batches == [("T", [b"m0"])]  # They wait: the one slot is taken.
    flush.answer(0)
    await flush.wait_batches(2)
    assert flush.batches[1] == ("T", [b"m1", b"m2", b"m3"])
    flush.answer(1)
    results = await asyncio.gather(*first, *rest)
    assert [r.msg_id for r in results] == ["id-m0", "id-m1", "id-m2", "id-m3"]


async def test_up_to_max_inflight_sends_leave_alone_before_any_waits():
    flush = GatedFlush()
    b, _ = batcher(flush, max_inflight=3)
    sends = submit_all(b, ["a", "b", "c", "d", "e"])
    await flush.wait_batches(3)
    assert [batch for _, batch in flush.batches] == [[b"a"], [b"b"], [b"c"]]
    flush.answer(1)
    await flush.wait_batches(4)
    assert flush.batches[3] == ("T", [b"d", b"e"])
    for i in (0, 2, 3):
        flush.answer(i)
    assert [r.msg_id for r in await asyncio.gather(*sends)] == [f"id-{t}" for t in "abcde"]


async def test_batches_are_cut_by_count_and_by_bytes():
    flush = GatedFlush()
    b, _ = batcher(flush, max_inflight=1, max_messages=2)
    sends = submit_all(b, ["x", "1", "2", "3"])
    await flush.wait_batches(1)
    for i in range(2):
        flush.answer(i)
        await flush.wait_batches(i + 2)
    assert [batch for _, batch in flush.batches] == [[b"x"], [b"1", b"2"], [b"3"]]
    flush.answer(2)
    await asyncio.gather(*sends)

    flush = GatedFlush()
    per_message = 100 + MESSAGE_OVERHEAD_BYTES
    b, _ = batcher(flush, max_inflight=1, max_bytes=2 * per_message)
    big = 5 * per_message  # Larger than a batch: goes alone, never refused here.
    texts = [("x", 100), ("1", 100), ("2", 100), ("3", big), ("4", 100)]
    sends = [asyncio.ensure_future(b.submit("T", message(t, n))) for t, n in texts]
    await flush.wait_batches(1)
    for i in range(3):
        flush.answer(i)
        await flush.wait_batches(i + 2)
    flush.answer(3)
    await asyncio.gather(*sends)
    assert [[m[:1] for m in batch] for _, batch in flush.batches] == [
        [b"x"],
        [b"1", b"2"],
        [b"3"],
        [b"4"],
    ]


async def test_a_batch_refused_for_its_content_is_resent_in_halves_down_to_the_bad_one():
    flush, b, _, first = await one_slot_taken()
    sends = submit_all(b, ["ok1", "bad", "ok2"])
    flush.answer(0)
    await flush.wait_batches(2)
    flush.answer(1, MessageTooLarge("one message is too large"))
    await flush.wait_batches(4)
    assert [batch for _, batch in flush.batches[2:]] == [[b"ok1"], [b"bad", b"ok2"]]
    flush.answer(2)
    flush.answer(3, MessageTooLarge("one message is too large"))
    await flush.wait_batches(6)
    assert [batch for _, batch in flush.batches[4:]] == [[b"bad"], [b"ok2"]]
    flush.answer(4, MessageTooLarge("too large"))
    flush.answer(5)
    outcomes = await asyncio.gather(*first, *sends, return_exceptions=True)
    stored = [o.msg_id for o in outcomes if isinstance(o, SendResult)]
    assert stored == ["id-m0", "id-ok1", "id-ok2"]
    assert isinstance(outcomes[2], MessageTooLarge)


async def test_a_topic_wide_error_reaches_every_sender_of_the_batch():
    flush, b, _, sends = await one_slot_taken()
    sends += submit_all(b, ["m1", "m2"])
    flush.answer(0, NoPermission("topic T is not writable"))
    await flush.wait_batches(2)
    flush.answer(1, NoPermission("topic T is not writable"))
    outcomes = await asyncio.gather(*sends, return_exceptions=True)
    assert all(isinstance(o, NoPermission) for o in outcomes)
    assert len(flush.batches) == 2  # Not resent: the error is not about a message.


async def test_a_sender_that_gave_up_before_its_batch_left_is_not_sent():
    flush, b, tasks, first = await one_slot_taken()
    gone, kept = submit_all(b, ["gone", "kept"])
    await asyncio.sleep(0)
    gone.cancel()
    flush.answer(0)
    await flush.wait_batches(2)
    assert flush.batches[1] == ("T", [b"kept"])
    flush.answer(1)
    assert (await kept).msg_id == "id-kept"
    await asyncio.gather(*first, *tasks)
    assert not b._lanes  # Idle lanes are dropped.


async def test_topics_do_not_share_batches_or_slots():
    flush = GatedFlush()
    b, _ = batcher(flush, max_inflight=1)
    sends = submit_all(b, ["t1"], topic="T") + submit_all(b, ["u1"], topic="U")
    await flush.wait_batches(2)
    assert sorted(flush.batches) == [("T", [b"t1"]), ("U", [b"u1"])]
    flush.answer(0)
    flush.answer(1)
    await asyncio.gather(*sends)


def test_limits_below_one_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="max_inflight must be at least 1"):
        BatchLimits(max_inflight=0)


async def test_the_producer_batches_concurrent_sends_but_not_sharding_key_ones():
    http = FakeHttp()
    producer = Producer(
        ["ns:1"],
        http=http,
        rng=random.Random(7),
        auto_batch=True,
        batch_limits=BatchLimits(max_inflight=1),
    )
    results = await asyncio.gather(*(producer.send("T", f"m{i}") for i in range(20)))
    assert len(http.sends) < 20  # Fewer requests than messages ...
    assert sum(len(msgs) for _, _, msgs in http.sends) == 20  # ... carrying each once.
    sent_keys = [m["properties"]["UNIQ_KEY"] for _, _, msgs in http.sends for m in msgs]
    assert sorted(r.unique_key for r in results) == sorted(sent_keys)
    assert len(set(sent_keys)) == 20

    http.sends.clear()
    await asyncio.gather(*(producer.send("T", f"k{i}", sharding_key="order-1") for i in range(5)))
    assert [len(msgs) for _, _, msgs in http.sends] == [1] * 5
    await producer.close()
    assert http.closed
