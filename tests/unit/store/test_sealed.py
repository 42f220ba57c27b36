"""The CRC seal shared by the checkpoint, hard state and entry summary files.

Goal: sealed bytes come back unchanged; a flipped bit anywhere (data or seal), a cut and
too few bytes for a seal are all refused (None), never returned as data.
Method: Hypothesis over arbitrary data and bit positions.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dledgermq.store.sealed import SEAL_SIZE, seal, unseal


@given(st.binary(max_size=256))
def test_sealed_bytes_come_back_unchanged(data: bytes) -> None:
    assert unseal(seal(data)) == data


@given(st.binary(min_size=1, max_size=256), st.data())
def test_any_flipped_bit_is_refused(data: bytes, draw: st.DataObject) -> None:
    sealed = bytearray(seal(data))
    bit = draw.draw(st.integers(0, len(sealed) * 8 - 1))
    sealed[bit // 8] ^= 1 << (bit % 8)
    assert unseal(bytes(sealed)) is None


@given(st.binary(min_size=1, max_size=64))
def test_cut_or_too_short_is_refused(data: bytes) -> None:
    assert unseal(seal(data)[:-1]) is None
    assert unseal(b"\x00" * (SEAL_SIZE - 1)) is None
