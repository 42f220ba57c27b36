"""CommitLog against a list model (Hypothesis stateful).

Goal: any sequence of appends, reopens, truncations and retention leaves the log equal to a
plain list of entries whose placement is computed independently (an entry goes at the write
offset if it fits with 8 spare bytes, else at the next segment start). Method: a
RuleBasedStateMachine; after every step the reader's records must match the model.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dledgermq.store.commitlog import CommitLog, CommitLogReader
from dledgermq.store.record import BLANK_SIZE

from .helpers import draft, record_size

SEGMENT = 2048


@dataclass(frozen=True)
class ModelEntry:
    term: int
    index: int
    start: int
    bodies: tuple[int, ...]

    @property
    def end(self) -> int:
        return self.start + sum(record_size(b) for b in self.bodies)


class CommitLogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.directory = Path(self.tmp.name)
        self.log = CommitLog.open(self.directory, SEGMENT)
        self.reader = CommitLogReader(self.directory, SEGMENT)
        self.entries: list[ModelEntry] = []
        self.write_offset = 0
        self.min_offset = 0
        self.last = (0, 0)

    def teardown(self) -> None:
        self.reader.close()
        self.log.close()
        self.tmp.cleanup()

    @rule(
        bodies=st.lists(st.integers(0, 700), min_size=1, max_size=3),
        term_step=st.integers(0, 1),
    )
    def append(self, bodies: list[int], term_step: int) -> None:
        size = sum(record_size(b) for b in bodies)
        term, index = self.last[0] + term_step, self.last[1] + 1
        if size + BLANK_SIZE > SEGMENT:
            return
        start = self.write_offset
        if start % SEGMENT + size + BLANK_SIZE > SEGMENT:
            start = start - start % SEGMENT + SEGMENT
        result = self.log.append_entry(
            [draft(b) for b in bodies], term=term, index=index, store_timestamp_ms=index
        )
        entry = ModelEntry(term, index, start, tuple(bodies))
        assert (result.start_offset, result.end_offset) == (entry.start, entry.end)
        self.entries.append(entry)
        self.write_offset = entry.end
        self.last = (term, index)

    @rule()
    def reopen(self) -> None:
        self.log.close()
        self.log = CommitLog.open(self.directory, SEGMENT)
        # A reopened log knows only entries in segments still on disk: (0, 0) if none.
        visible = [e for e in self.entries if e.start >= self.min_offset]
        self.last = (visible[-1].term, visible[-1].index) if visible else (0, 0)

    @precondition(lambda self: any(e.start >= self.min_offset for e in self.entries))
    @rule(data=st.data(), at_start=st.booleans())
    def truncate(self, data: st.DataObject, at_start: bool) -> None:
        candidates = [i for i, e in enumerate(self.entries) if e.start >= self.min_offset]
        i = data.draw(st.sampled_from(candidates))
        # Cut at the entry's start, or at the previous entry's end (maybe a padding spot).
        cut = self.entries[i].start
        if not at_start and i > 0 and self.entries[i - 1].end >= self.min_offset:
            cut = self.entries[i - 1].end
        self.log.truncate(cut)
        del self.entries[i:]
        self.write_offset = cut
        # Entries in retired segments are unknown to the log: (0, 0) if none is left.
        visible = [e for e in self.entries if e.start >= self.min_offset]
        self.last = (visible[-1].term, visible[-1].index) if visible else (0, 0)

    @rule()
    def retire_oldest(self) -> None:
        deleted = self.log.delete_expired(0, 0, force=True, max_files=1)
        if deleted:
            assert deleted == [self.min_offset]
            self.min_offset += SEGMENT

    @invariant()
    def matches_model(self) -> None:
        assert self.log.write_offset == self.write_offset
        assert self.log.min_offset == self.min_offset
        assert (self.log.last_term, self.log.last_index) == self.last
        visible = [e for e in self.entries if e.start >= self.min_offset]
        expected = []
        for e in visible:
            offset = e.start
            for body in e.bodies:
                expected.append((offset, e.term, e.index, body))
                offset += record_size(body)
        got = [
            (r.commitlog_offset, r.term, r.index, len(r.body))
            for r in self.reader.iter_records(self.min_offset, self.write_offset)
        ]
        assert got == expected


CommitLogMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None
)
TestCommitLogModel = CommitLogMachine.TestCase
