"""The client's view of retries: retry and dead-letter topic names, and how a retried
message is shown to the application.

A message a consumer sends back comes again from the group's retry topic, where it is
stored with its original topic and msg_id in properties (the broker's
`broker/send_back.py` writes them). The push consumer hands it to the callback as the
message it was: original topic, original msg_id, and the broker's `reconsume_times`.

Pure: no I/O. The names must agree with the broker's (a unit test checks it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from dledgermq.client.message import Message

RETRY_PREFIX = "%RETRY%"
DLQ_PREFIX = "%DLQ%"
PROPERTY_RETRY_TOPIC = "RETRY_TOPIC"
PROPERTY_ORIGIN_MESSAGE_ID = "ORIGIN_MESSAGE_ID"
MAX_RECONSUME_TIMES_DEFAULT = 16
TOPIC_NAME_MAX = 127  # The broker's limit on topic names (retry and DLQ topics included).
# One send-back request: a failed pull batch (32 by default) in one broker entry, split
# below the broker's batch limits (1,000 messages, 4 MiB by default).
SEND_BACK_MESSAGES_MAX = 64
SEND_BACK_BYTES_MAX = 1024 * 1024


def retry_topic(group: str) -> str:
    return RETRY_PREFIX + group


def dlq_topic(group: str) -> str:
    return DLQ_PREFIX + group


def is_retry_topic(topic: str) -> bool:
    return topic.startswith(RETRY_PREFIX)


def origin_topic(message: Message) -> str:
    """The topic the message was first sent to (its own topic unless retried)."""
    return message.properties.get(PROPERTY_RETRY_TOPIC, message.topic)


def as_delivered(message: Message) -> Message:
    """A message from a retry topic as the application knows it: its original topic and
    msg_id (queue and offsets stay those of the retry queue it was pulled from)."""
    if not is_retry_topic(message.topic):
        return message
    properties = message.properties
    return dataclasses.replace(
        message,
        topic=properties.get(PROPERTY_RETRY_TOPIC, message.topic),
        msg_id=properties.get(PROPERTY_ORIGIN_MESSAGE_ID, message.msg_id),
    )


def send_back_chunks(
    messages: Sequence[Message],
    *,
    messages_max: int = SEND_BACK_MESSAGES_MAX,
    bytes_max: int = SEND_BACK_BYTES_MAX,
) -> list[list[Message]]:
    """`messages` in order, cut into requests the broker accepts (a message bigger than
    `bytes_max` goes alone)."""
    chunks: list[list[Message]] = []
    size = 0
    for message in messages:
        weight = len(message.body) + sum(len(k) + len(v) for k, v in message.properties.items())
        if not chunks or len(chunks[-1]) >= messages_max or size + weight > bytes_max:
            chunks.append([])
            size = 0
        chunks[-1].append(message)
        size += weight
    return chunks
