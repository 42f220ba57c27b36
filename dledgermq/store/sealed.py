"""Small files that are trusted whole or not at all: a CRC-32 sealed after the bytes.

The checkpoint, the Raft hard state and the entry summary each start with their own
magic, version and fields; what they share is the seal, so it is written once here.
The format is the bytes, then their CRC-32 as a big-endian u32.
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["SEAL_SIZE", "seal", "unseal"]

_CRC = struct.Struct(">I")
SEAL_SIZE = _CRC.size


def seal(data: bytes) -> bytes:
    """`data` followed by its CRC-32."""
    return data + _CRC.pack(zlib.crc32(data))


def unseal(sealed: bytes) -> bytes | None:
    """The bytes before the seal if the CRC matches; None if it does not, or if `sealed`
    is too short to hold one."""
    if len(sealed) < SEAL_SIZE:
        return None
    data = sealed[:-SEAL_SIZE]
    (crc,) = _CRC.unpack_from(sealed, len(data))
    return data if zlib.crc32(data) == crc else None
