"""CommitLog start-up recovery: find the longest valid prefix of complete entries, cut the rest.

Runs once, before the `CommitLog` exists, on a directory nobody else writes. It scans the
last segment (from a known entry end in it, if the caller has one: `ResumePoint`); only
while the scanned segments hold no complete entry does it step back one segment (an empty
or fully torn newest segment). Every segment before the active one was
sealed and fdatasynced before its successor was created, so the scan never needs to go
further back to trust what it keeps. Whatever fails a check above the durable floor (the
dispatch checkpoint, at least the active segment's start) is taken for a torn write and
cut; below it, it is damage, reported (`DamagedRecord`) for a replica to repair from a
peer's copy, never cut.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from dledgermq.store.errors import DamagedRecord, StoreDamaged
from dledgermq.store.fileio import fsync, fsync_dir
from dledgermq.store.record import MAGIC_MESSAGE_FORMAT_1, MAX_RECORD_SIZE, first_damaged
from dledgermq.store.segment import SegmentScan, list_segments, scan_segment, segment_path


class ResumePoint(NamedTuple):
    """The end of entry (term, index), at or below the durable floor: the log before it
    needs no scan (a Raft node's entry index summary knows it, `entry_summary.py`)."""

    offset: int
    term: int
    index: int  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Recovery:
    """What recovery found and did, for the node's start-up log line."""

    scanned_from: int
    write_offset: int
    last_term: int
    last_index: int
    truncated_bytes: int
    deleted_segments: list[int]
    stop: str


def create_segment(directory: Path, start: int) -> int:
    """Create an empty segment file, make its name durable, return an O_WRONLY fd."""
    fd = os.open(segment_path(directory, start), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    fsync_dir(directory)
    return fd


def delete_segments(directory: Path, starts: list[int]) -> None:
    """Delete segment files newest first (a crash leaves a contiguous prefix), then fsync."""
    for start in sorted(starts, reverse=True):
        segment_path(directory, start).unlink()
    if starts:
        fsync_dir(directory)


def _scan_chain(
    directory: Path,
    segment_size: int,
    segments: list[int],
    first: int,
    resume: ResumePoint | None,
) -> tuple[int, int, SegmentScan]:
    """Scan from `segments[first]` (from `resume` in it, if given) on while each segment
    is sealed.

    Returns:
        (index of the last scanned segment, complete entries seen, that segment's scan).
    """
    last = (0, 0) if resume is None else (resume.term, resume.index)
    begin = None if resume is None else resume.offset
    entries = 0
    k = first
    while True:
        fd = os.open(segment_path(directory, segments[k]), os.O_RDONLY)
        try:
            scan = scan_segment(fd, segments[k], segment_size, last=last, begin=begin)
        finally:
            os.close(fd)
        begin = None
        entries += scan.entries
        last = (scan.last_term, scan.last_index)
        if not scan.sealed or k == len(segments) - 1:
            return k, entries, scan
        k += 1


def _refuse_format_1(directory: Path, first_segment: int) -> None:
    """A log an older dledgermq wrote (record format 1) is refused with a clear message
    rather than taken for damage."""
    with segment_path(directory, first_segment).open("rb") as file:
        head = file.read(4)
    if len(head) == 4 and int.from_bytes(head, "big") == MAGIC_MESSAGE_FORMAT_1:
        raise StoreDamaged(
            f"{directory} holds record format 1 (an older dledgermq); this version reads "
            "format 2 only (its CRC also covers term, index and offset). Start this node "
            "on an empty data directory."
        )


def _damaged_from(path: Path, start: int, valid_end: int) -> int:
    """The first record at or after `valid_end` (an entry end) that fails its checks."""
    with path.open("rb") as file:
        file.seek(valid_end - start)
        data = file.read(MAX_RECORD_SIZE)
    damaged = first_damaged(data, valid_end)
    return valid_end if damaged is None else damaged


def _reaches(directory: Path, start: int, segment_size: int, resume: ResumePoint) -> bool:
    """`resume` lies in the segment at `start`, and its file is at least that long."""
    if not start < resume.offset < start + segment_size:
        return False
    return segment_path(directory, start).stat().st_size >= resume.offset - start


def recover(
    directory: Path,
    segment_size: int,
    durable_floor: int = 0,
    resume: ResumePoint | None = None,
) -> tuple[list[int], Recovery]:
    """Recover `directory` in place.

    `durable_floor`: the log below it is known fsynced (the dispatch checkpoint), so a bad
    record there is damage, not a torn write: it is reported instead of cut. `resume`: the
    scan starts there when it lies in the last segment and its file reaches it (a file cut
    shorter is scanned from its start, which finds where it was cut).

    Returns:
        The segment starts left on disk (the last is where writing resumes) and a report.

    Raises:
        DamagedRecord: a record below `durable_floor` fails its checks (nothing changed).
    """
    directory.mkdir(parents=True, exist_ok=True)
    segments = list_segments(directory, segment_size)
    if not segments:
        os.close(create_segment(directory, 0))
        return [0], Recovery(0, 0, 0, 0, 0, [], "empty")
    _refuse_format_1(directory, segments[0])
    first = len(segments) - 1
    # Sealed segments were fdatasynced before their successor was created.
    durable_floor = max(durable_floor, segments[first])
    if resume is not None and not _reaches(directory, segments[first], segment_size, resume):
        resume = None
    while True:
        k, entries, scan = _scan_chain(directory, segment_size, segments, first, resume)
        if entries or first == 0 or resume is not None:
            break
        first -= 1
    path = segment_path(directory, segments[k])
    if not scan.sealed and scan.valid_end < durable_floor:
        raise DamagedRecord(_damaged_from(path, segments[k], scan.valid_end), scan.stop)
    if scan.sealed and k + 1 < len(segments) and segments[k + 1] < durable_floor:
        # The newest segment holds no complete entry although the log is durable into it:
        # it was cut short, not torn.
        raise DamagedRecord(segments[k + 1], "a segment below the durable floor holds no entry")
    size = path.stat().st_size
    if scan.sealed:
        # Crashed between sealing the last segment and creating the next: finish the roll.
        keep, write_offset = segment_size, segments[k] + segment_size
    else:
        keep, write_offset = scan.valid_end - segments[k], scan.valid_end
    deleted = segments[k + 1 :]
    delete_segments(directory, deleted)
    del segments[k + 1 :]
    if size != keep:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, keep)
            fsync(fd)
        finally:
            os.close(fd)
    if scan.sealed:
        os.close(create_segment(directory, write_offset))
        segments.append(write_offset)
    report = Recovery(
        scanned_from=segments[first] if resume is None else resume.offset,
        write_offset=write_offset,
        last_term=scan.last_term,
        last_index=scan.last_index,
        truncated_bytes=max(0, size - keep),
        deleted_segments=deleted,
        stop=scan.stop,
    )
    return segments, report
