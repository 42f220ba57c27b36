"""The client's side of retries: how retried messages look, how send-backs are cut, and
the push consumer sending failed batches back instead of skipping them.

Goal: a message from `%RETRY%<group>` reaches the callback with its original topic, msg_id
and reconsume count; a failing callback's batch is sent back (with the consumer's
`max_reconsume_times`) and the offset moves past it only then; retry queues are consumed
from their first message; the client's names agree with the broker's. Method: pure
functions, and the push consumer over the real NameServer with fake brokers.
"""

from dledgermq.broker import retry as broker_retry
from dledgermq.broker import send_back as broker_send_back
from dledgermq.client import PullConsumer, PushConsumer, PushOptions
from dledgermq.client import retry as client_retry
from dledgermq.client.message import Message, MessageQueue
from dledgermq.client.retry import as_delivered, send_back_chunks
from tests.unit.client.client_fakes import wait_until


def message(topic="T", body=b"x", **fields):
    return Message("A" * 32, "K", topic, 0, 0, 0, body, **fields)


def test_client_and_broker_agree_on_names():
    assert client_retry.retry_topic("G") == broker_retry.retry_topic("G")
    assert client_retry.dlq_topic("G") == broker_retry.dlq_topic("G")
    assert client_retry.PROPERTY_RETRY_TOPIC == broker_send_back.PROPERTY_RETRY_TOPIC
    assert client_retry.TOPIC_NAME_MAX == broker_retry.TOPIC_NAME_MAX
    assert client_retry.PROPERTY_ORIGIN_MESSAGE_ID == broker_send_back.PROPERTY_ORIGIN_MESSAGE_ID
    assert (
        client_retry.MAX_RECONSUME_TIMES_DEFAULT == broker_retry.MAX_RECONSUME_TIMES_DEFAULT == 16
    )


def test_a_retried_message_is_delivered_as_the_original():
    retried = message(
        "%RETRY%G",
        properties={"RETRY_TOPIC": "T", "ORIGIN_MESSAGE_ID": "B" * 32},
        reconsume_times=3,
    )
    shown = as_delivered(retried)
    assert (shown.topic, shown.msg_id, shown.reconsume_times) == ("T", "B" * 32, 3)
    assert (shown.queue_offset, shown.unique_key) == (retried.queue_offset, "K")
    plain = message("T")
    assert as_delivered(plain) is plain


def test_send_backs_are_cut_by_count_and_bytes_in_order():
    small = [message(body=bytes([i])) for i in range(5)]
    assert send_back_chunks(small, messages_max=2) == [small[:2], small[2:4], small[4:]]
    big = [message(body=b"x" * 600) for _ in range(3)]
    assert [len(c) for c in send_back_chunks(big, bytes_max=1000)] == [1, 1, 1]
    huge = message(body=b"x" * 5000)
    assert send_back_chunks([huge], bytes_max=1000) == [[huge]]
    assert send_back_chunks([]) == []


async def test_a_failed_batch_is_sent_back_and_then_consumed_past(cluster):
    broker = await cluster.add_broker("broker-a", {"T": 1})
    calls = []

    def fails_once(messages):
        calls.append([m.msg_id for m in messages])
        if len(calls) == 1:
            raise RuntimeError("the application failed")

    stored = [broker.store("T", 0, {"body": b"a"}), broker.store("T", 0, {"body": b"b"})]
    consumer = PushConsumer(
        [cluster.namesrv_addr],
        "G",
        "T",
        callback=fails_once,
        from_where="first",
        options=PushOptions(wait_ms=200, max_reconsume_times=5),
    )
    await consumer.start()
    try:
        mq = MessageQueue("T", "broker-a", 0)
        await wait_until(lambda: consumer.offsets.get(mq) == 2, what="offset past the batch")
    finally:
        await consumer.close()
    ids = [m["msg_id"] for m in stored]
    assert calls == [ids], "a sent-back batch is not delivered again locally"
    assert broker.sent_back == [("G", {"msg_ids": ids, "max_reconsume_times": 5})]
    assert broker.offsets["G", "T"] == {"0": 2}


async def test_retry_queues_are_consumed_from_the_start_and_show_the_original(cluster):
    broker = await cluster.add_broker("broker-a", {"T": 1, "%RETRY%G": 1})
    retried = broker.store(
        "%RETRY%G",
        0,
        {"body": b"again", "properties": {"RETRY_TOPIC": "T", "ORIGIN_MESSAGE_ID": "C" * 32}},
    )
    retried["reconsume_times"] = 2
    seen = []
    consumer = PushConsumer(
        [cluster.namesrv_addr],
        "G",
        "T",
        callback=seen.extend,
        from_where="last",
        options=PushOptions(wait_ms=200),
    )
    await consumer.start()
    try:
        assert MessageQueue("%RETRY%G", "broker-a", 0) in consumer.assigned_queues
        await wait_until(lambda: len(seen) == 1, what="the retried message")
    finally:
        await consumer.close()
    [shown] = seen
    assert (shown.topic, shown.msg_id, shown.reconsume_times) == ("T", "C" * 32, 2)
    assert broker.offsets["G", "%RETRY%G"] == {"0": 1}


async def test_pull_consumer_sends_back_to_the_broker_group_of_the_msg_id(cluster):
    a = await cluster.add_broker("broker-a", {"T": 1})
    b = await cluster.add_broker("broker-b", {"T": 1})
    stored = b.store("T", 0, {"body": b"x"})
    async with PullConsumer([cluster.namesrv_addr], "G") as consumer:
        [pulled] = (await consumer.pull(MessageQueue("T", "broker-b", 0), 0)).messages
        [result] = await consumer.send_back(pulled, max_reconsume_times=0)
    assert result == {"msg_id": stored["msg_id"], "status": "RETRY"}
    assert (a.sent_back, [g for g, _ in b.sent_back]) == ([], ["G"])
