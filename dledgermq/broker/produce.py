"""Turning a send request into CommitLog drafts, with every check a client can fail.

Pure: the caller passes the topic table, limits and clock value. Nothing here touches the
store; a rejected request changes nothing.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dledgermq.broker.delay import delay_request, schedule
from dledgermq.broker.reserved import (
    PROPERTY_KEYS,
    PROPERTY_TAGS,
    PROPERTY_UNIQ_KEY,
    check_user_properties,
)
from dledgermq.broker.retry import DEFAULT_LEVELS, DelayLevels
from dledgermq.broker.topics import (
    PERM_WRITE,
    TopicConfig,
    auto_created_config,
    check_client_topic,
    check_topic_name,
    may_auto_create,
)
from dledgermq.errors import (
    BadRequest,
    BatchTooLarge,
    InvalidMessage,
    MessageTooLarge,
    NoPermission,
    QueueNotFound,
    TopicNotFound,
)
from dledgermq.store.record import MessageDraft
from dledgermq.unique_key import new_unique_key

KEY_SEPARATOR = " "
MAX_TAG_LENGTH = 255
MAX_PROPERTIES = 64
MAX_PROPERTY_BYTES = 32 * 1024
# Each key is one IndexFile entry on every replica: a bound keeps one message from writing
# megabytes of index (RocketMQ has none; 32 is far above any use we know of).
MAX_KEYS = 32
MAX_INT64 = 2**63
MESSAGE_FIELDS = frozenset(
    {
        "body",
        "body_base64",
        "tags",
        "keys",
        "properties",
        "born_timestamp_ms",
        "delay_level",
        "deliver_at_ms",
    }
)


@dataclass(frozen=True, slots=True)
class ProduceLimits:
    max_message_bytes: int
    max_batch_messages: int
    max_batch_bytes: int


def resolve_topic(topics: Mapping[str, TopicConfig], topic: str) -> TopicConfig:
    """The writable config of `topic` or the error a producer should see."""
    check_topic_name(topic)
    config = topics.get(topic)
    if config is None:
        raise TopicNotFound(f"topic {topic!r} does not exist on this broker", topic=topic)
    if not config.writable:
        raise NoPermission(f"topic {topic!r} is not writable (perm={config.perm})", topic=topic)
    return config


@dataclass(frozen=True, slots=True)
class SendPolicy:
    """What the broker group allows a send beyond the topic's own config."""

    broker_name: str
    broker_perm: int  # The group's permission: no sends without PERM_WRITE (maintenance).
    auto_create_queues: int | None = None  # None: auto-create off (TOPIC_NOT_FOUND).


def topic_for_send(
    topics: Mapping[str, TopicConfig], topic: str, policy: SendPolicy
) -> tuple[TopicConfig, bool]:
    """The config a send uses, and whether the send must create it first (auto-create).

    Raises:
        NoPermission: the broker group is write-disabled (`broker_writable: false`), or
            the topic is not writable.
        TopicNotFound: unknown topic, and auto-create is off or refused for its name.
    """
    check_client_topic(topic)
    if not policy.broker_perm & PERM_WRITE:
        raise NoPermission(
            f"broker group {policy.broker_name!r} is write-disabled (maintenance); "
            "send to another broker group",
            broker_name=policy.broker_name,
            broker_writable=False,
        )
    if topic not in topics and policy.auto_create_queues is not None and may_auto_create(topic):
        return auto_created_config(topic, policy.auto_create_queues), True
    return resolve_topic(topics, topic), False


def check_queue_id(config: TopicConfig, queue_id: object) -> int:
    if not isinstance(queue_id, int) or isinstance(queue_id, bool):
        raise BadRequest(f"queue_id must be an integer, got {queue_id!r}")
    if not 0 <= queue_id < config.write_queues:
        raise QueueNotFound(
            f"queue {queue_id} is not a write queue of {config.topic!r} "
            f"(0..{config.write_queues - 1})",
            write_queues=config.write_queues,
        )
    return queue_id


def build_drafts(  # noqa: PLR0913 - the request and what the broker adds to it
    config: TopicConfig,
    queue_id: int,
    messages: object,
    *,
    limits: ProduceLimits,
    now_ms: int,
    born_host: str,
    delay_levels: DelayLevels = DEFAULT_LEVELS,
) -> list[MessageDraft]:
    """Validate every message of a batch and build its drafts (all or nothing); a delayed
    message's draft waits in the schedule topic (`broker/delay.py`)."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("`messages` must be a non-empty list")
    if len(messages) > limits.max_batch_messages:
        raise BatchTooLarge(
            f"batch of {len(messages)} messages exceeds {limits.max_batch_messages}",
            limit=limits.max_batch_messages,
        )
    drafts = [_draft(config.topic, queue_id, m, limits, now_ms, born_host) for m in messages]
    for i, raw in enumerate(messages):
        if "delay_level" in raw or "deliver_at_ms" in raw:
            delay = delay_request(delay_levels, raw, now_ms)
            if delay is not None:
                level, deliver_at = delay
                drafts[i] = schedule(
                    drafts[i], delay_levels, level=level, deliver_at_ms=deliver_at, now_ms=now_ms
                )
    total = sum(len(d.body) for d in drafts)
    if total > limits.max_batch_bytes:
        raise BatchTooLarge(
            f"batch of {total} bytes exceeds {limits.max_batch_bytes}",
            limit=limits.max_batch_bytes,
        )
    return drafts


def _draft(
    topic: str, queue_id: int, raw: object, limits: ProduceLimits, now_ms: int, born_host: str
) -> MessageDraft:
    """One message's draft. Runs per message on the loop thread: checks stay complete, but
    the common case (known fields, str/bytes body, no properties) takes the short branches."""
    if type(raw) is not dict:
        raise BadRequest("each message must be an object")
    if not raw.keys() <= MESSAGE_FIELDS:
        unknown = sorted(map(repr, set(raw) - MESSAGE_FIELDS))  # msgpack: bytes keys too.
        raise BadRequest(f"unknown message field(s): {unknown}")
    given = raw.get("body")
    if "body_base64" in raw or (type(given) is not bytes and type(given) is not str):
        body = _body(raw)
    elif type(given) is str:
        body = _utf8(given)
    else:
        assert isinstance(given, bytes)
        body = given
    if not body:
        raise InvalidMessage("message body is empty")
    if len(body) > limits.max_message_bytes:
        raise MessageTooLarge(
            f"message body of {len(body)} bytes exceeds {limits.max_message_bytes}",
            limit=limits.max_message_bytes,
        )
    born = raw.get("born_timestamp_ms", now_ms)
    if type(born) is not int or not 0 <= born < MAX_INT64:
        raise BadRequest(f"born_timestamp_ms must be a non-negative integer, got {born!r}")
    return MessageDraft(topic, queue_id, body, _stored_properties(raw), born, born_host)


def _stored_properties(raw: dict[str, Any]) -> dict[str, str]:
    """User properties plus tags, keys and the unique key, as stored in the record."""
    raw_properties = raw.get("properties")
    properties = {} if raw_properties is None else _properties(raw_properties)
    tags = raw.get("tags")
    if tags is not None:
        if type(tags) is not str or not tags or len(tags) > MAX_TAG_LENGTH or "||" in tags:
            raise InvalidMessage(f"tags must be a non-empty string without `||`, got {tags!r}")
        properties[PROPERTY_TAGS] = tags
    keys = raw.get("keys")
    if keys is not None:
        properties[PROPERTY_KEYS] = _keys(keys)
    if PROPERTY_UNIQ_KEY not in properties:
        properties[PROPERTY_UNIQ_KEY] = new_unique_key()
    return properties


def _body(raw: dict[str, Any]) -> bytes:
    if "body" in raw and "body_base64" in raw:
        raise BadRequest("give either `body` or `body_base64`, not both")
    if "body_base64" in raw:
        encoded = raw["body_base64"]
        if not isinstance(encoded, str):
            raise BadRequest("body_base64 must be a string")
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("body_base64 is not valid base64") from None
    body = raw.get("body")
    if isinstance(body, str):
        return _utf8(body)
    if isinstance(body, bytes):
        return body
    raise InvalidMessage("message body is missing (give `body` or `body_base64`)")


def _utf8(text: str, what: str = "message body") -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        raise InvalidMessage(f"{what} is not valid Unicode (lone surrogate)") from None


def _properties(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > MAX_PROPERTIES:
        raise InvalidMessage(f"properties must be an object of at most {MAX_PROPERTIES} entries")
    size = 0
    for name, value in raw.items():
        if not isinstance(name, str) or not isinstance(value, str) or not name:
            raise InvalidMessage("property names and values must be strings")
        # Bytes as stored (UTF-8), not characters: 32 KiB of emoji is 128 KiB.
        size += len(_utf8(name, "property name")) + len(_utf8(value, "property value"))
    if size > MAX_PROPERTY_BYTES:
        raise InvalidMessage(f"properties exceed {MAX_PROPERTY_BYTES} bytes (UTF-8)")
    check_user_properties(raw)
    return dict(raw)


def _keys(keys: object) -> str:
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, list) or not keys or len(keys) > MAX_KEYS:
        raise InvalidMessage(f"keys must be a string or a list of 1..{MAX_KEYS} strings")
    for key in keys:
        if not isinstance(key, str) or not key or KEY_SEPARATOR in key or len(key) > 255:
            raise InvalidMessage(f"invalid key {key!r}: 1..255 characters without spaces")
    return KEY_SEPARATOR.join(keys)
