"""Shared builders for the store tests (drafts of a chosen size, quick log fills)."""

from __future__ import annotations

from dledgermq.store.commitlog import AppendResult, CommitLog
from dledgermq.store.record import HEADER_SIZE, MessageDraft

SEGMENT = 4096


def draft(body_size: int, *, queue_id: int = 0) -> MessageDraft:
    """A draft whose record is HEADER_SIZE + 1 (topic "T") + body_size bytes."""
    return MessageDraft("T", queue_id, bytes([body_size % 251]) * body_size, {}, 1)


def record_size(body_size: int) -> int:
    return HEADER_SIZE + 1 + body_size


def fill(log: CommitLog, entries: list[list[int]], *, term: int = 1) -> list[AppendResult]:
    """Append one entry per list of body sizes; indexes continue from the log's last."""
    results = []
    for bodies in entries:
        results.append(
            log.append_entry(
                [draft(size) for size in bodies],
                term=max(term, log.last_term),
                index=log.last_index + 1,
                store_timestamp_ms=1000 + log.last_index,
            )
        )
    return results
