"""The client's value types: outgoing messages, stored messages, queues and results.

Owns: the dataclasses a user sees and their mapping to the wire shapes of API.md
(`Msg`, `Message`, `SendResult`, pull results).

Must not: do I/O or pick queues; this module only converts.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dledgermq.unique_key import new_unique_key

# The property that carries the client-generated unique key (RocketMQ's UNIQ_KEY).
UNIQ_KEY = "UNIQ_KEY"


@dataclass(frozen=True, slots=True, order=True)
class MessageQueue:
    """One queue of a topic on one broker group."""

    topic: str
    broker_name: str
    queue_id: int


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to send; `unique_key` is fixed once so retries can be recognised."""

    body: bytes
    tags: str | None = None
    keys: tuple[str, ...] = ()
    properties: Mapping[str, str] = field(default_factory=dict)
    unique_key: str = field(default_factory=new_unique_key)
    delay_level: int = 0  # 1..N: delivered after that level's delay (0: at once)
    deliver_at_ms: int | None = None  # or at this time (epoch ms), to about a second

    @classmethod
    def build(
        cls,
        body: bytes | str,
        *,
        tags: str | None = None,
        keys: str | Sequence[str] | None = None,
        properties: Mapping[str, str] | None = None,
        delay_level: int = 0,
        deliver_at_ms: int | None = None,
    ) -> OutgoingMessage:
        """Normalise user input: str bodies become UTF-8, a single key becomes a list."""
        if isinstance(body, str):
            body = body.encode()
        if isinstance(keys, str):
            keys = [keys]
        return cls(
            body,
            tags,
            tuple(keys or ()),
            dict(properties or {}),
            delay_level=delay_level,
            deliver_at_ms=deliver_at_ms,
        )

    @classmethod
    def from_any(cls, item: OutgoingMessage | Mapping[str, Any] | bytes | str) -> OutgoingMessage:
        """A batch item: an OutgoingMessage, a body, or a dict with `body`, `tags`, ..."""
        if isinstance(item, OutgoingMessage):
            return item
        if isinstance(item, bytes | str):
            return cls.build(item)
        return cls.build(
            item["body"],
            tags=item.get("tags"),
            keys=item.get("keys"),
            properties=item.get("properties"),
        )

    def to_wire(self) -> dict[str, Any]:
        """The `Msg` of API.md, with the unique key as property UNIQ_KEY."""
        msg: dict[str, Any] = {
            "body": self.body,
            "properties": {**self.properties, UNIQ_KEY: self.unique_key},
        }
        if self.tags is not None:
            msg["tags"] = self.tags
        if self.keys:
            msg["keys"] = list(self.keys)
        if self.delay_level:
            msg["delay_level"] = self.delay_level
        if self.deliver_at_ms is not None:
            msg["deliver_at_ms"] = self.deliver_at_ms
        return msg


def _body(raw: Mapping[str, Any]) -> bytes:
    body = raw.get("body")
    if isinstance(body, bytes):
        return body
    if raw.get("body_base64") is not None:
        return base64.b64decode(raw["body_base64"])
    return str(body or "").encode()


@dataclass(frozen=True, slots=True)
class Message:
    """A stored message as a broker returns it (API.md "Message")."""

    msg_id: str
    unique_key: str
    topic: str
    queue_id: int
    queue_offset: int
    commitlog_offset: int
    body: bytes
    tags: str | None = None
    keys: tuple[str, ...] = ()
    properties: Mapping[str, str] = field(default_factory=dict)
    born_timestamp_ms: int = 0
    store_timestamp_ms: int = 0
    reconsume_times: int = 0

    @property
    def text(self) -> str:
        """The body as UTF-8 text (raises UnicodeDecodeError for binary bodies)."""
        return self.body.decode()

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Message:
        return cls(
            msg_id=raw["msg_id"],
            unique_key=raw.get("unique_key") or "",
            topic=raw["topic"],
            queue_id=raw["queue_id"],
            queue_offset=raw["queue_offset"],
            commitlog_offset=raw.get("commitlog_offset", 0),
            body=_body(raw),
            tags=raw.get("tags"),
            keys=tuple(raw.get("keys") or ()),
            properties=dict(raw.get("properties") or {}),
            born_timestamp_ms=raw.get("born_timestamp_ms", 0),
            store_timestamp_ms=raw.get("store_timestamp_ms", 0),
            reconsume_times=raw.get("reconsume_times", 0),
        )


@dataclass(frozen=True, slots=True)
class SendResult:
    """Where a sent message was stored; final once returned (API.md "SendResult")."""

    msg_id: str
    unique_key: str
    queue: MessageQueue
    queue_offset: int
    commitlog_offset: int
    status: str = "SEND_OK"

    @property
    def queue_id(self) -> int:
        return self.queue.queue_id

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any], mq: MessageQueue) -> SendResult:
        queue = MessageQueue(mq.topic, mq.broker_name, raw.get("queue_id", mq.queue_id))
        return cls(
            msg_id=raw["msg_id"],
            unique_key=raw.get("unique_key", ""),
            queue=queue,
            queue_offset=raw["queue_offset"],
            commitlog_offset=raw.get("commitlog_offset", 0),
            status=raw.get("status", "SEND_OK"),
        )


@dataclass(frozen=True, slots=True)
class PullResult:
    """A pull's messages and the queue's offsets at the time of the pull."""

    messages: list[Message]
    next_offset: int
    min_offset: int
    max_offset: int

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> PullResult:
        return cls(
            messages=[Message.from_wire(m) for m in raw.get("messages", [])],
            next_offset=raw["next_offset"],
            min_offset=raw["min_offset"],
            max_offset=raw["max_offset"],
        )
