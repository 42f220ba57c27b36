"""Exceptions raised by the store, in one place so every module and caller agrees.

Disk errors are not here: an `OSError` always propagates unchanged (fail-stop). These are
the outcomes a caller may reasonably branch on, or data damage detected by a check.
"""

from __future__ import annotations


class CorruptRecord(ValueError):
    """Bytes that should hold a CommitLog record fail a check (magic, size, offset, CRC)."""


class UnreadableEntries(CorruptRecord):
    """The log in [start, end), between two marks of the entry index, does not read back as
    the entries the index holds there: a damaged record (find it with
    `CommitLogReader.find_damage`), or a log that is not the index's."""

    def __init__(self, start: int, end: int, reason: str) -> None:
        super().__init__(f"log [{start}, {end}): {reason}")
        self.start = start
        self.end = end


class CorruptLog(ValueError):
    """The segment files themselves are inconsistent (e.g. a gap between segments)."""


class EntryTooLarge(ValueError):
    """An entry (all its records plus padding room) cannot fit even in an empty segment."""


class OffsetGone(LookupError):
    """The segment holding a commitlog offset was deleted (retention or truncation)."""


class CorruptCheckpoint(ValueError):
    """The checkpoint file exists but fails its magic, version, length or CRC check."""


class CorruptIndex(ValueError):
    """An index file older than the active one has no valid header."""


class StoreDamaged(RuntimeError):
    """The files on disk contradict each other and cannot be repaired from the log;
    starting would serve a wrong state."""


class CorruptHardState(ValueError):
    """The Raft term/vote file is damaged: the node must not guess its term."""


class DamagedRecord(CorruptRecord):
    """A record in the durable part of the log fails its checks: not a torn write (that
    would be cut) but damage, which a replica can repair from a peer's copy."""

    def __init__(self, offset: int, why: str) -> None:
        super().__init__(f"damaged record at commitlog offset {offset}: {why}")
        self.offset = offset
