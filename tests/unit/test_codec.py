"""The Raft wire codec: every message round-trips through msgpack exactly, and anything
else is rejected with CodecError (never a crash in the receiving actor)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dledgermq.codec import CodecError, decode_message, encode_message
from dledgermq.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from dledgermq.raft.types import NOOP, Entry

ids = st.integers(0, 2**31)
counts = st.integers(0, 2**62)
entries = st.lists(
    st.builds(Entry, counts, st.integers(1, 2**62), st.just(NOOP) | st.binary(max_size=64)),
    max_size=5,
).map(tuple)
messages = st.one_of(
    st.builds(RequestVote, ids, ids, counts, counts, counts, st.booleans(), st.booleans()),
    st.builds(RequestVoteResponse, ids, ids, counts, st.booleans(), st.booleans()),
    st.builds(AppendEntries, ids, ids, counts, ids, counts, counts, entries, counts),
    st.builds(
        AppendEntriesResponse,
        ids,
        ids,
        counts,
        st.booleans(),
        counts,
        counts,
        st.none() | counts,
        counts,
        counts,
    ),
    st.builds(TimeoutNow, ids, ids, counts),
)


@given(messages)
def test_round_trip_through_msgpack(message) -> None:
    wire = msgpack.unpackb(msgpack.packb(encode_message(message)))
    decoded = decode_message(wire)
    assert decoded == message
    if isinstance(message, AppendEntries):
        assert [e.is_noop for e in decoded.entries] == [e.is_noop for e in message.entries]


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        {"v": 2, "t": "TimeoutNow", "src": 1, "dst": 2, "term": 3},
        {"v": 1, "t": "Nope", "src": 1, "dst": 2, "term": 3},
        {"v": 1, "t": "TimeoutNow", "src": 1, "dst": 2},
        {"v": 1, "t": "TimeoutNow", "src": 1, "dst": 2, "term": 3, "extra": 1},
        {"v": 1, "t": "TimeoutNow", "src": 1, "dst": 2, "term": -3},
        {"v": 1, "t": "TimeoutNow", "src": 1, "dst": 2, "term": True},
        {"v": 1, "t": "RequestVoteResponse", "src": 1, "dst": 2, "term": 3, "vote_granted": 1},
        {
            "v": 1,
            "t": "AppendEntries",
            "src": 1,
            "dst": 2,
            "term": 3,
            "leader_id": 1,
            "prev_log_index": 0,
            "prev_log_term": 0,
            "entries": [[1, 0, b"x"]],
            "leader_commit": 0,
        },
        {
            "v": 1,
            "t": "AppendEntries",
            "src": 1,
            "dst": 2,
            "term": 3,
            "leader_id": 1,
            "prev_log_index": 0,
            "prev_log_term": 0,
            "entries": [[1, 1, "text"]],
            "leader_commit": 0,
        },
    ],
)
def test_malformed_frames_are_rejected(raw: object) -> None:
    with pytest.raises(CodecError):
        decode_message(raw)
