"""The Raft wire codec: every message round-trips through msgpack exactly, and anything
else is rejected with CodecError (never a crash in the receiving actor)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dledgermq.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from dledgermq.raft.types import NOOP, Entry
from dledgermq.replication.peer_codec import CodecError, decode_message, encode_message

ids = st.integers(0, 2**31)
counts = st.integers(0, 2**62)


@st.composite
def appends(draw: st.DrawFn) -> AppendEntries:
    """A well-formed AppendEntries: entries dense after prev, terms rising to <= term."""
    prev_index, prev_term = draw(st.integers(0, 2**40)), draw(st.integers(0, 2**40))
    term = prev_term + draw(st.integers(0, 5))
    terms = sorted(draw(st.lists(st.integers(prev_term, term), max_size=5)))
    payloads = st.just(NOOP) | st.binary(max_size=64)
    entries = tuple(Entry(t, prev_index + 1 + i, draw(payloads)) for i, t in enumerate(terms))
    src, dst = draw(ids), draw(ids)
    return AppendEntries(src, dst, term, src, prev_index, prev_term, entries, draw(counts))


messages = st.one_of(
    st.builds(RequestVote, ids, ids, counts, counts, counts, st.booleans(), st.booleans()),
    st.builds(RequestVoteResponse, ids, ids, counts, st.booleans(), st.booleans()),
    appends(),
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
    decoded = decode_message(wire, src=message.src, dst=message.dst)
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
        decode_message(raw, src=1, dst=2)


APPEND = {
    "v": 1,
    "t": "AppendEntries",
    "src": 1,
    "dst": 2,
    "term": 3,
    "leader_id": 1,
    "prev_log_index": 1,
    "prev_log_term": 2,
    "leader_commit": 0,
}


@pytest.mark.parametrize(
    ("raw", "src", "dst"),
    [
        ({**APPEND, "entries": []}, 9, 2),  # not the peer the handshake proved
        ({**APPEND, "entries": []}, 1, 9),  # not addressed to this node
        ({**APPEND, "entries": [[3, 5, b"x"]]}, 1, 2),  # a gap after prev_log_index
        ({**APPEND, "entries": [[1, 2, b"x"]]}, 1, 2),  # term below prev_log_term
        ({**APPEND, "entries": [[3, 2, b"x"], [2, 3, b"y"]]}, 1, 2),  # terms decrease
        ({**APPEND, "entries": [[4, 2, b"x"]]}, 1, 2),  # term above the message's
    ],
)
def test_frames_no_correct_peer_sends_are_rejected(raw: dict, src: int, dst: int) -> None:
    """Each of these once reached an invariant assert in the core (fail-stop)."""
    with pytest.raises(CodecError):
        decode_message(raw, src=src, dst=dst)


def test_well_formed_append_is_accepted() -> None:
    raw = {**APPEND, "entries": [[2, 2, b"x"], [3, 3, None]]}
    message = decode_message(raw, src=1, dst=2)
    assert [e.index for e in message.entries] == [2, 3]
