"""Repair of damaged CommitLog records from a peer's copy: the pure rules.

Every replica of a group stores the committed log byte for byte alike (a follower or slave
writes the leader's bytes unchanged at the same offsets), so a record that fails its CRC on
one node is repaired by copying the record at the same offset from a peer. Two rules keep
that safe:

- only the **committed, dispatched** region is repaired or served (below each side's
  dispatched offset): there, Raft's log matching makes every copy the same entry, while an
  uncommitted tail may differ between nodes and is Raft's to truncate;
- the requester trusts nothing it did not check: the copy must pass the record CRC, claim
  the asked offset, fit its segment, and end where the requester's log continues.

`RepairBook` tracks outstanding repairs (which peer to ask next, when to ask again), bounded.
Frames are plain dicts for the peer transport (`t` = "RepairRequest"/"RepairReply").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dledgermq.store.errors import CorruptRecord, OffsetGone
from dledgermq.store.record import (
    BLANK_SIZE,
    F_SIZE,
    HEADER_SIZE,
    MAGIC_BLANK,
    MAGIC_MESSAGE,
    MAX_RECORD_SIZE,
    check_record,
    peek_header,
)
from dledgermq.store.segment import segment_start

REPAIR_WIRE_VERSION = 1
REQUEST = "RepairRequest"
REPLY = "RepairReply"
REPAIRS_OUTSTANDING_MAX = 1024
# Bytes of whole records one refill reply carries (a truncated file is refilled in runs).
REPAIR_SPAN_MAX = 1024 * 1024


class RepairRefused(ValueError):
    """A peer's copy does not pass the requester's checks; it is not written."""


@dataclass(frozen=True, slots=True)
class RepairRequest:
    """Ask for the record at `offset`; with `span` > 0, for the whole records from `offset`
    on, up to `span` bytes (at least one), to refill a file cut short."""

    offset: int
    span: int = 0


@dataclass(frozen=True, slots=True)
class RepairReply:
    """The peer's record at `offset`, or None with the reason it cannot give one."""

    offset: int
    data: bytes | None
    reason: str = ""


RepairFrame = RepairRequest | RepairReply


def is_repair_frame(payload: dict[Any, Any]) -> bool:
    """Tell repair frames from Raft/HA frames on the shared peer transport."""
    return payload.get("t") in (REQUEST, REPLY)


def encode_repair(frame: RepairFrame) -> dict[str, Any]:
    if isinstance(frame, RepairRequest):
        return {"v": REPAIR_WIRE_VERSION, "t": REQUEST, "offset": frame.offset, "span": frame.span}
    return {
        "v": REPAIR_WIRE_VERSION,
        "t": REPLY,
        "offset": frame.offset,
        "data": frame.data,
        "reason": frame.reason,
    }


def decode_repair(payload: dict[Any, Any]) -> RepairFrame:
    """Raises ValueError for anything but a well-formed frame of this version."""
    if payload.get("v") != REPAIR_WIRE_VERSION:
        raise ValueError(f"repair frame version {payload.get('v')!r}")
    offset = payload.get("offset")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ValueError(f"repair frame offset {offset!r}")
    if payload.get("t") == REQUEST:
        span = payload.get("span", 0)  # Absent from the first senders of version 1.
        if not isinstance(span, int) or isinstance(span, bool) or not 0 <= span <= REPAIR_SPAN_MAX:
            raise ValueError(f"repair frame span {span!r}")
        return RepairRequest(offset, span)
    data, reason = payload.get("data"), payload.get("reason", "")
    if not (data is None or isinstance(data, bytes)) or not isinstance(reason, str):
        raise ValueError("repair reply fields of the wrong type")
    return RepairReply(offset, data, reason)


def record_size_at(data: bytes | memoryview, offset: int, segment_size: int) -> int:
    """Size of the intact record or segment padding that `data` holds for `offset`.

    Raises:
        CorruptRecord: it is neither a record passing every check (CRC included) that
            claims `offset`, nor padding that closes the segment `offset` is in.
    """
    magic, size = peek_header(data, 0)
    seg_end = segment_start(offset, segment_size) + segment_size
    if magic == MAGIC_BLANK:
        if size != seg_end - offset or len(data) < BLANK_SIZE:
            raise CorruptRecord(f"padding at {offset} does not close its segment")
        return BLANK_SIZE
    header = check_record(data, 0, expected_offset=offset)
    if offset + header[F_SIZE] + BLANK_SIZE > seg_end:
        raise CorruptRecord(f"record at {offset} does not fit its segment")
    return int(header[F_SIZE])


ReadBytes = Callable[[int, int], bytes]  # (offset, size) -> this node's bytes; may raise OffsetGone


def serve_repair(
    read_bytes: ReadBytes, request: RepairRequest, *, committed_end: int, segment_size: int
) -> RepairReply:
    """The answer to a peer's request from this node's own log: its intact record at the
    offset (and with a span, the intact records after it in the segment), only below
    `committed_end`, where every replica holds the same bytes.

    Raises:
        CorruptRecord: this node's own record at the asked offset is damaged as well.
    """
    offset = request.offset
    if offset >= committed_end:
        return RepairReply(offset, None, "not committed here")
    try:
        first = copy_of(read_bytes, offset, segment_size)
    except OffsetGone:
        return RepairReply(offset, None, "retired here")
    if request.span == 0 or peek_header(first, 0)[0] == MAGIC_BLANK:
        return RepairReply(offset, first)
    run, pos, total = [first], offset + len(first), len(first)
    while pos < committed_end and pos % segment_size != 0:
        try:
            data = copy_of(read_bytes, pos, segment_size)
        except (OffsetGone, CorruptRecord):
            break  # The run stops before anything that fails its checks.
        if total + len(data) > request.span:
            break
        run.append(data)
        total += len(data)
        if peek_header(data, 0)[0] == MAGIC_BLANK:
            break
        pos += len(data)
    return RepairReply(offset, b"".join(run))


def copy_of(read_bytes: ReadBytes, offset: int, segment_size: int) -> bytes:
    """This node's intact record (or segment padding) at `offset`.

    Raises:
        CorruptRecord, OffsetGone: there is none.
    """
    head = read_bytes(offset, BLANK_SIZE)
    magic, size = peek_header(head, 0)
    room = segment_start(offset, segment_size) + segment_size - offset
    if magic == MAGIC_BLANK:
        data = head
    elif HEADER_SIZE <= size <= min(MAX_RECORD_SIZE, room):
        data = read_bytes(offset, size)
    else:
        raise CorruptRecord(f"no record at {offset} (magic {magic:#x}, size {size})")
    record_size_at(data, offset, segment_size)
    return data


def check_repair(
    offset: int,
    data: bytes,
    *,
    segment_size: int,
    repairable_end: int,
    following: bytes | None,
) -> None:
    """Accept a peer's copy for `offset` only if it is an intact, fitting record.

    Args:
        repairable_end: this node's dispatched offset (the copy must end at or before it).
        following: this node's bytes right after the copy (8 or more), None when the copy
            ends at `repairable_end`; they must start a record or padding, so a copy of
            another size than the damaged original cannot be written over its neighbour.

    Raises:
        RepairRefused: with the reason.
    """
    end = _checked_copy_end(offset, data, segment_size, repairable_end)
    if peek_header(data, 0)[0] == MAGIC_BLANK:  # Padding covers the rest of its segment.
        return
    if end == repairable_end or end % segment_size == 0:
        return
    if following is None or len(following) < BLANK_SIZE:
        raise RepairRefused(f"no bytes after {end} to check the copy's size against")
    magic, _ = peek_header(following, 0)
    if magic not in (MAGIC_MESSAGE, MAGIC_BLANK):
        raise RepairRefused(f"the copy of {offset} ends at {end}, where no record starts")


def check_run(
    offset: int, data: bytes, *, segment_size: int, repairable_end: int
) -> tuple[int, int]:
    """What of a peer's run of records from `offset` may refill a file cut short there: the
    whole intact records (and closing padding) ending at or before `repairable_end`.
    Nothing follows them locally, so there is no neighbour to check.

    Returns:
        (bytes to write, log offset after them: the segment's end after padding).

    Raises:
        RepairRefused: not even the first record is acceptable.
    """
    accepted = 0
    while accepted < len(data):
        pos = offset + accepted
        try:
            size = _copy_size(pos, data[accepted:], segment_size)
            _checked_copy_end(pos, data[accepted : accepted + size], segment_size, repairable_end)
        except RepairRefused:
            if accepted == 0:
                raise
            break
        accepted += size
        if peek_header(data, pos - offset)[0] == MAGIC_BLANK:
            return accepted, segment_start(pos, segment_size) + segment_size
        if (pos + size) % segment_size == 0:
            break
    return accepted, offset + accepted


def _copy_size(offset: int, data: bytes, segment_size: int) -> int:
    """The size of the intact record or padding at the start of `data`."""
    try:
        size = record_size_at(data, offset, segment_size)
    except CorruptRecord as exc:
        raise RepairRefused(f"the copy of {offset} is not intact: {exc}") from None
    if size > len(data):
        raise RepairRefused(f"the copy of {offset} has {len(data)} bytes for a {size}-byte record")
    return size


def _checked_copy_end(offset: int, data: bytes, segment_size: int, repairable_end: int) -> int:
    """Where `data`, exactly one record or padding, ends; a record must end by
    `repairable_end` (padding always closes its segment)."""
    size = _copy_size(offset, data, segment_size)
    if size != len(data):
        raise RepairRefused(f"the copy of {offset} has {len(data)} bytes for a {size}-byte record")
    end = offset + size
    if peek_header(data, 0)[0] != MAGIC_BLANK and end > repairable_end:
        raise RepairRefused(
            f"the copy of {offset} ends at {end}, past the committed {repairable_end}"
        )
    return end


@dataclass(slots=True)
class _Outstanding:
    next_peer: int
    asked_at_ms: int | None = None
    attempts: int = 0


class RepairBook:
    """Damaged offsets waiting for a copy: ask one peer at a time, round robin, again after
    `retry_ms` without an answer (or at once after a refusal), bounded in count."""

    def __init__(self, peers: tuple[int, ...], *, retry_ms: int) -> None:
        assert peers, "a repair needs at least one peer"
        self._peers = peers
        self._retry_ms = retry_ms
        self._outstanding: dict[int, _Outstanding] = {}

    def __contains__(self, offset: int) -> bool:
        return offset in self._outstanding

    def __len__(self) -> int:
        return len(self._outstanding)

    @property
    def offsets(self) -> list[int]:
        return sorted(self._outstanding)

    def add(self, offset: int) -> bool:
        """Remember a damaged offset; False if it was known or the book is full."""
        if offset in self._outstanding or len(self._outstanding) >= REPAIRS_OUTSTANDING_MAX:
            return False
        self._outstanding[offset] = _Outstanding(next_peer=offset % len(self._peers))
        return True

    def due(self, now_ms: int) -> list[tuple[int, int]]:
        """(offset, peer) to ask now; each is then counted as asked at `now_ms`."""
        asks = []
        for offset, state in sorted(self._outstanding.items()):
            if state.asked_at_ms is not None and now_ms - state.asked_at_ms < self._retry_ms:
                continue
            peer = self._peers[state.next_peer % len(self._peers)]
            state.next_peer += 1
            state.asked_at_ms = now_ms
            state.attempts += 1
            asks.append((offset, peer))
        return asks

    def refused(self, offset: int) -> None:
        """The peer could not help (or sent a bad copy): the next peer is asked at once."""
        state = self._outstanding.get(offset)
        if state is not None:
            state.asked_at_ms = None

    def attempts(self, offset: int) -> int:
        state = self._outstanding.get(offset)
        return 0 if state is None else state.attempts

    def done(self, offset: int) -> None:
        self._outstanding.pop(offset, None)
