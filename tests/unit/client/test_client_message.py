"""Message value types and their wire forms (API.md "Msg", "Message", "SendResult")."""

import base64

from dledgermq.client.message import (
    UNIQ_KEY,
    Message,
    MessageQueue,
    OutgoingMessage,
    PullResult,
    SendResult,
)


def test_outgoing_message_wire_form():
    msg = OutgoingMessage.build("héllo", tags="TagA", keys="k1", properties={"p": "v"})
    wire = msg.to_wire()
    assert wire["body"] == "héllo".encode()
    assert wire["tags"] == "TagA"
    assert wire["keys"] == ["k1"]
    assert wire["properties"] == {"p": "v", UNIQ_KEY: msg.unique_key}
    assert len(msg.unique_key) == 32
    int(msg.unique_key, 16)


def test_unique_keys_differ_and_optional_fields_are_left_out():
    a, b = OutgoingMessage.build(b"x"), OutgoingMessage.build(b"x")
    assert a.unique_key != b.unique_key
    assert set(a.to_wire()) == {"body", "properties"}


def test_batch_items_of_every_shape():
    built = OutgoingMessage.build(b"1")
    assert OutgoingMessage.from_any(built) is built
    assert OutgoingMessage.from_any("2").body == b"2"
    item = OutgoingMessage.from_any({"body": b"3", "tags": "T", "keys": ["a", "b"]})
    assert (item.body, item.tags, item.keys) == (b"3", "T", ("a", "b"))


def test_message_from_wire_accepts_binary_base64_and_text_bodies():
    base = {"msg_id": "m", "topic": "T", "queue_id": 1, "queue_offset": 7}
    assert Message.from_wire({**base, "body": b"\x00"}).body == b"\x00"
    b64 = base64.b64encode(b"\xff").decode()
    assert Message.from_wire({**base, "body_base64": b64}).body == b"\xff"
    message = Message.from_wire({**base, "body": "text", "keys": ["k"], "tags": "A"})
    assert message.text == "text"
    assert message.keys == ("k",)


def test_send_and_pull_results_from_wire():
    mq = MessageQueue("T", "a", 3)
    result = SendResult.from_wire(
        {
            "msg_id": "m",
            "unique_key": "u",
            "queue_id": 3,
            "queue_offset": 9,
            "commitlog_offset": 100,
            "status": "SEND_OK",
        },
        mq,
    )
    assert result.queue == mq
    assert result.queue_id == 3
    pulled = PullResult.from_wire(
        {"messages": [], "next_offset": 5, "min_offset": 0, "max_offset": 5}
    )
    assert pulled == PullResult([], 5, 0, 5)
