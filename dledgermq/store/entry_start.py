"""A Raft node's entry index at start: resumed from its saved summary, or rebuilt by a full scan.

The full scan reads and CRC-checks every record (about 8 s per GB), so a restart was
linear in the log. With a summary (`entry_summary.py`) the node trusts the log below its
checkpoint the way Kafka trusts it below its recovery point: it was fsynced before the
checkpoint was written and holds committed entries, which Raft never rewrites. Only the
newest summarised block is read back (the log there must hold the entries the summary
says) and the tail from there on is scanned and checked. Bit rot below is found by reads
and the scrubber, which verify every record they touch (docs/ARCHITECTURE.md, "Damaged
records"). Anything unexpected (no summary, a damaged one, a sealed segment file that is
not whole, a newest block that disagrees) falls back to the full scan, which finds and
reports damage as before. Recovery (`store/recovery.py`) starts its scan of the last
segment at the same point (`resume_point`), so the whole start reads only the tail.
"""

from __future__ import annotations

import bisect
import logging
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from dledgermq.store.commitlog import CommitLog
from dledgermq.store.entry_index import EntryIndex, decode_position
from dledgermq.store.entry_layout import EntryLayout
from dledgermq.store.entry_summary import CorruptSummary, EntrySummary, load_summary
from dledgermq.store.errors import CorruptRecord, DamagedRecord, OffsetGone, StoreDamaged
from dledgermq.store.reader import CommitLogReader
from dledgermq.store.recovery import ResumePoint
from dledgermq.store.segment import segment_path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LogBounds:
    """The recovered log: its files, where it ends, where it is trusted."""

    directory: Path
    segments: list[int]  # oldest first
    end: int
    durable_floor: int  # the dispatch checkpoint: fsynced and committed below it
    segment_size: int

    @property
    def start(self) -> int:
        return self.segments[0]


def read_summary(path: Path) -> EntrySummary | None:
    """The saved summary; None if there is none or it is damaged (then the log is scanned)."""
    try:
        return load_summary(path)
    except (CorruptSummary, OSError) as exc:
        log.warning("ignoring the entry index summary (%s): scanning the whole log", exc)
        return None


def resume_point(summary: EntrySummary | None, durable_floor: int) -> ResumePoint | None:
    """Where recovery may start its scan: the summary's newest mark below the floor."""
    if summary is None:
        return None
    top = bisect.bisect_right(summary.mark_end, durable_floor)
    if top == 0:
        return None
    index = summary.mark_index[top - 1]
    term = summary.run_term[bisect.bisect_right(summary.run_first, index) - 1]
    return ResumePoint(summary.mark_end[top - 1], term, index)


def load_entries(
    reader: CommitLogReader, summary: EntrySummary | None, bounds: LogBounds
) -> EntryLayout:
    """The entry index of the log (resumed from `summary` where it can be).

    Raises:
        DamagedRecord: a record in the scanned part fails its checks.
        StoreDamaged: intact records that do not form a log.
    """
    entries = None if summary is None else _resume(reader, summary, bounds)
    if entries is None:
        return rebuild_entries(reader, bounds.start, bounds.end, bounds.segment_size)
    scanned_from, resumed_at = entries.end_offset, entries.last_index
    try:
        entries.add_scanned(reader.iter_records(scanned_from, bounds.end, decode_position))
    except (CorruptRecord, OffsetGone) as exc:
        raise _damage(reader, scanned_from, bounds.end, exc) from exc
    log.info(
        "entry index resumed from its summary at entry %d, then scanned the log [%d, %d)",
        resumed_at,
        scanned_from,
        bounds.end,
    )
    return EntryLayout(entries, bounds.segment_size)


def _resume(reader: CommitLogReader, summary: EntrySummary, bounds: LogBounds) -> EntryIndex | None:
    """The index up to the summary's newest trusted mark, checked there; None (full scan)
    when no mark is trusted or anything looks wrong."""
    short = _short_sealed_segment(bounds)
    if short is not None:
        log.warning("sealed segment %s is cut short: scanning the whole log", short)
        return None
    trusted_end = min(bounds.durable_floor, bounds.end)
    entries = EntryIndex.resume(summary, trusted_end=trusted_end, min_offset=bounds.start)
    if entries is None:
        return None
    entries.scan = partial(reader.iter_records, decode=decode_position)
    try:
        entries.verify_newest_block()
    except (CorruptRecord, OffsetGone) as exc:
        log.warning("the log disagrees with its entry index summary (%s): scanning it all", exc)
        return None
    return entries


def _short_sealed_segment(bounds: LogBounds) -> Path | None:
    """A segment file before the active one that is not whole (cut short), if any: sealed
    segments are padded to their full size, so a stat finds what a scan would."""
    for start in bounds.segments[:-1]:
        path = segment_path(bounds.directory, start)
        if os.stat(path).st_size != bounds.segment_size:
            return path
    return None


def rebuild_entries(
    reader: CommitLogReader, start: int, end: int, segment_size: int
) -> EntryLayout:
    """Every entry's place, from a scan that verifies every record.

    Raises:
        DamagedRecord: where a record fails its checks.
    """
    try:
        return EntryLayout.rebuild(
            reader.iter_records(start, end, decode_position), segment_size, start_offset=start
        )
    except (CorruptRecord, OffsetGone) as exc:  # OffsetGone: a segment file cut short.
        raise _damage(reader, start, end, exc) from exc


def _damage(
    reader: CommitLogReader, start: int, end: int, exc: CorruptRecord | OffsetGone
) -> DamagedRecord | StoreDamaged:
    damaged = reader.find_damage(start, end)
    if damaged is None:  # Records intact but not a log (entries out of order).
        return StoreDamaged(f"the CommitLog's entries do not form a log: {exc}")
    return DamagedRecord(damaged, str(exc))


def end_log_at_last_entry(commitlog: CommitLog, entries: EntryLayout) -> None:
    """Cut what the log holds past its last entry: after a crash during a segment roll it
    can end at the new segment's start (the old segment's end-of-segment padding written,
    the entry that rolled lost), bytes that belong to no entry. The Raft writer appends
    only where the entry index ends, so a node left like this failed every write, at every
    restart (found by the storage simulation, seed 43)."""
    if commitlog.write_offset > entries.end_offset:
        log.warning(
            "the CommitLog ends at %d, past its last entry at %d (a roll cut short): cut",
            commitlog.write_offset,
            entries.end_offset,
        )
        commitlog.truncate(entries.end_offset)
