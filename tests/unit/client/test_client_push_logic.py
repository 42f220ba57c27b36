"""Push consumer helpers as pure functions, and the `assign_queues` rebalancing seam.

Goal: a moved offset resumes at the nearest valid end, backoff is bounded, async and sync
callbacks are told apart, and a consumer pulls only the queues its strategy assigns.
"""

from dledgermq.client import PushConsumer, PushOptions
from dledgermq.client.admin import merge_newest_first
from dledgermq.client.message import Message
from dledgermq.client.push_consumer import backoff_s, corrected_offset, is_async_callable
from tests.unit.client.client_fakes import wait_until


def test_corrected_offset_clamps_into_the_valid_range():
    assert corrected_offset(3, 10, 20) == 10
    assert corrected_offset(25, 10, 20) == 20
    assert corrected_offset(15, 10, 20) == 15


def test_backoff_grows_and_is_capped():
    assert backoff_s(1) == 0.1
    assert backoff_s(2) == 0.2
    assert backoff_s(100) == 5.0


def test_async_callables_are_recognised():
    async def coro(messages):
        pass

    class AsyncCallable:
        async def __call__(self, messages):
            pass

    assert is_async_callable(coro)
    assert is_async_callable(AsyncCallable())
    assert not is_async_callable(print)
    assert not is_async_callable(lambda messages: None)


def message(msg_id, stored_ms, offset=0):
    return Message(msg_id, "", "T", 0, 0, offset, b"", store_timestamp_ms=stored_ms)


def test_query_results_merge_newest_first_without_duplicates():
    merged = merge_newest_first(
        [[message("a", 1), message("b", 3)], [message("c", 2), message("b", 3)]], limit=2
    )
    assert [m.msg_id for m in merged] == ["b", "c"]


async def test_consumer_pulls_only_the_queues_it_is_assigned(cluster):
    await cluster.add_broker("broker-a", {"T": 4})
    received = []

    async def on_messages(messages):
        received.extend(messages)

    def even_queues(queues):
        return [q for q in queues if q.queue_id % 2 == 0]

    consumer = PushConsumer(
        [cluster.namesrv_addr],
        "G",
        "T",
        callback=on_messages,
        from_where="first",
        assign_queues=even_queues,
        options=PushOptions(wait_ms=200),
    )
    await consumer.start()
    try:
        assert [q.queue_id for q in consumer.assigned_queues] == [0, 2]
        await wait_until(lambda: len(consumer.offsets) == 2, what="both loops started")
    finally:
        await consumer.close()
    assert cluster.brokers["broker-a"].offsets["G", "T"] == {"0": 0, "2": 0}
