"""Raft messages <-> plain dicts for the peer transport (which frames them with msgpack).

Pure and versioned: every dict carries `v` (the wire version) and `t` (the message kind);
fields keep their Raft names, so a capture reads like the paper. Decoding checks every
field's type, so a peer that speaks a different version (or garbage that passed the
handshake) is rejected with `CodecError`, never crashes the receiving actor.
Entry payloads travel as bytes (the entry's CommitLog records); the no-op as None.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dledgermq.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from dledgermq.raft.types import NOOP, Entry

WIRE_VERSION = 1
KINDS: dict[str, type[Any]] = {
    "RequestVote": RequestVote,
    "RequestVoteResponse": RequestVoteResponse,
    "AppendEntries": AppendEntries,
    "AppendEntriesResponse": AppendEntriesResponse,
    "TimeoutNow": TimeoutNow,
}
_INT_FIELDS = frozenset(
    {
        "src",
        "dst",
        "term",
        "last_log_index",
        "last_log_term",
        "leader_id",
        "prev_log_index",
        "prev_log_term",
        "leader_commit",
        "match_index",
        "conflict_index",
        "last_index",
    }
)
_BOOL_FIELDS = frozenset({"pre_vote", "transfer", "vote_granted", "success"})


class CodecError(ValueError):
    """A frame that is not a message of this wire version."""


def encode_message(message: Message) -> dict[str, Any]:
    fields = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
    if isinstance(message, AppendEntries):
        fields["entries"] = [_encode_entry(e) for e in message.entries]
    return {"v": WIRE_VERSION, "t": type(message).__name__, **fields}


def decode_message(raw: object, *, src: int, dst: int) -> Message:
    """The message a frame from peer `src` (as the transport's handshake proved) to this
    node `dst` carries.

    Besides types, the structure the core relies on is checked here, at the boundary, so
    that no frame can reach one of its invariant asserts: the addressing matches the
    connection, and an AppendEntries carries entries dense from prev_log_index + 1 with
    terms that never decrease and never exceed the message's term.

    Raises:
        CodecError: wrong version, unknown kind, missing, extra or mistyped fields, or a
            message that no correct peer could have sent on this connection.
    """
    if not isinstance(raw, dict) or raw.get("v") != WIRE_VERSION:
        raise CodecError(f"not a version-{WIRE_VERSION} message: {str(raw)[:80]}")
    cls = KINDS.get(raw.get("t"))  # type: ignore[arg-type]
    if cls is None:
        raise CodecError(f"unknown message kind {raw.get('t')!r}")
    fields = {k: v for k, v in raw.items() if k not in {"v", "t"}}
    names = {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
    if not required <= fields.keys() <= names:
        raise CodecError(f"{cls.__name__}: fields {sorted(fields)} do not match {sorted(names)}")
    for name, value in fields.items():
        _check_field(cls.__name__, name, value)
    if cls is AppendEntries:
        fields["entries"] = tuple(_decode_entry(e) for e in fields["entries"])
    message: Message = cls(**fields)
    if (message.src, message.dst) != (src, dst):
        raise CodecError(f"{cls.__name__} {message.src}->{message.dst} on link {src}->{dst}")
    if isinstance(message, AppendEntries):
        _check_entries(message)
    return message


def _check_entries(message: AppendEntries) -> None:
    expected_index, previous_term = message.prev_log_index + 1, message.prev_log_term
    for entry in message.entries:
        if entry.index != expected_index:
            raise CodecError(f"entry {entry.index} where {expected_index} must follow")
        if not previous_term <= entry.term <= message.term:
            raise CodecError(f"entry {entry.index} has term {entry.term} out of order")
        expected_index, previous_term = expected_index + 1, entry.term


def _check_field(kind: str, name: str, value: object) -> None:
    if name in _INT_FIELDS:
        ok = type(value) is int and value >= 0
    elif name in _BOOL_FIELDS:
        ok = type(value) is bool
    elif name == "conflict_term":
        ok = value is None or (type(value) is int and value >= 0)
    else:  # entries
        ok = isinstance(value, list)
    if not ok:
        raise CodecError(f"{kind}.{name}: bad value {str(value)[:40]}")


def _encode_entry(entry: Entry) -> list[Any]:
    if entry.is_noop:
        return [entry.term, entry.index, None]
    assert isinstance(entry.payload, bytes | bytearray | memoryview), type(entry.payload)
    return [entry.term, entry.index, bytes(entry.payload)]


def _decode_entry(raw: object) -> Entry:
    if not (isinstance(raw, list) and len(raw) == 3):
        raise CodecError(f"bad entry {str(raw)[:40]}")
    term, index, payload = raw
    if type(term) is not int or type(index) is not int or term < 0 or index < 1:
        raise CodecError(f"bad entry position {term}/{index}")
    if payload is not None and not isinstance(payload, bytes):
        raise CodecError("entry payload must be bytes or None (no-op)")
    return Entry(term, index, NOOP if payload is None else payload)
