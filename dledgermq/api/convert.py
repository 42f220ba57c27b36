"""Stored messages and send results in their wire shape (JSON has no bytes: base64 too)."""

from __future__ import annotations

import base64
import contextlib
from typing import Any

from dledgermq.broker.dispatch import DispatchedMessage
from dledgermq.broker.produce import KEY_SEPARATOR
from dledgermq.broker.reserved import PROPERTY_KEYS, PROPERTY_TAGS, PROPERTY_UNIQ_KEY
from dledgermq.broker.store_reads import StoredMessage


def message_to_wire(stored: StoredMessage, *, binary: bool) -> dict[str, Any]:
    record = stored.record
    properties = record.properties
    keys = properties.get(PROPERTY_KEYS)
    wire: dict[str, Any] = {
        "msg_id": stored.msg_id,
        "unique_key": properties.get(PROPERTY_UNIQ_KEY, ""),
        "topic": record.topic,
        "queue_id": record.queue_id,
        "queue_offset": stored.queue_offset,
        "commitlog_offset": record.commitlog_offset,
        "tags": properties.get(PROPERTY_TAGS),
        "keys": keys.split(KEY_SEPARATOR) if keys else [],
        "properties": {
            k: v for k, v in properties.items() if k not in {PROPERTY_TAGS, PROPERTY_KEYS}
        },
        "born_timestamp_ms": record.born_timestamp_ms,
        "store_timestamp_ms": record.store_timestamp_ms,
        "reconsume_times": record.reconsume_times,
    }
    if binary:
        wire["body"] = record.body
    else:
        wire["body_base64"] = base64.b64encode(record.body).decode()
        with contextlib.suppress(UnicodeDecodeError):  # Not text: base64 only.
            wire["body"] = record.body.decode()
    return wire


def send_result_to_wire(message: DispatchedMessage) -> dict[str, Any]:
    return {
        "status": "SEND_OK",
        "msg_id": message.msg_id,
        "unique_key": message.unique_key,
        "queue_id": message.queue_id,
        "queue_offset": message.queue_offset,
        "commitlog_offset": message.commitlog_offset,
    }
