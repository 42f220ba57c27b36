"""Message ids that say where a message is stored: broker group + commitlog offset + size.

`crc32(broker_name)` (8 hex) + commitlog offset (16 hex) + stored size (8 hex). Offsets are
never reused for committed data, so the id is unique; a client finds the broker group by
the prefix and the broker reads the record without any index.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

MSG_ID_LENGTH = 32
_MSG_ID = re.compile(r"[0-9A-Fa-f]{32}")


def broker_hash(broker_name: str) -> str:
    return f"{zlib.crc32(broker_name.encode()) & 0xFFFFFFFF:08X}"


def make_msg_id(broker_name_hash: str, commitlog_offset: int, size: int) -> str:
    return f"{broker_name_hash}{commitlog_offset:016X}{size:08X}"


@dataclass(frozen=True, slots=True)
class DecodedMsgId:
    broker_hash: str
    commitlog_offset: int
    size: int


def decode_msg_id(msg_id: str) -> DecodedMsgId | None:
    """The parts of an offset message id, or None if it is not one (e.g. a unique key)."""
    if not _MSG_ID.fullmatch(msg_id):
        return None
    return DecodedMsgId(msg_id[:8].upper(), int(msg_id[8:24], 16), int(msg_id[24:], 16))
