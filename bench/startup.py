"""How long a Raft node's start takes as its log grows: log recovery plus the entry index.

    python -m bench.startup --messages 1000000,4000000 --runs 3

For each size, builds a CommitLog of that many messages (128 B bodies, 100 per entry, one
256 MiB segment after another) in a temp dir with the store alone (no cluster: this is the
start path only), then times, `--runs` times, what a Raft node does before it serves:
`CommitLog.open` with the checkpoint at the log's end, then the entry index, two ways:
without a summary (`open_s`: recovery scans the whole last segment; `rebuild_s`: the
full scan that reads and CRC-checks every record; also with `restart_scan_bytes: 0`),
and from a summary saved `--behind` MiB before the log's end (`resumed_open_s`,
`resume_s`: what a restart reads at most with the default `restart_scan_bytes`). The
log was just written, so it is read from the page cache (a cold start also pays the
disk). One JSON line per run, then one per size with the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from dledgermq.config import MiB, StoreConfig
from dledgermq.store.commitlog import CommitLog, CommitLogReader
from dledgermq.store.entry_start import (
    LogBounds,
    load_entries,
    read_summary,
    rebuild_entries,
    resume_point,
)
from dledgermq.store.entry_summary import encode_summary
from dledgermq.store.record import MessageDraft

SEGMENT = 256 << 20
BATCH = 100


def build(directory: Path, messages: int) -> int:
    """Write `messages` messages in entries of `BATCH`; returns the log's end."""
    log = CommitLog.open(directory, SEGMENT)
    drafts = [MessageDraft("T", 0, os.urandom(128), {"UNIQ_KEY": os.urandom(16).hex()})] * BATCH
    for _ in range(messages // BATCH):
        log.append_entry(drafts, term=1, index=log.last_index + 1, store_timestamp_ms=1)
    log.sync()
    end = log.write_offset
    log.close()
    return end


def save_summary(directory: Path, end: int, behind: int) -> Path:
    """The summary a running node would have saved when its log ended `behind` earlier."""
    reader = CommitLogReader(directory, SEGMENT)
    try:
        entries = rebuild_entries(reader, 0, end, SEGMENT).entries
    finally:
        reader.close()
    committed = entries.last_index_ending_by(end - behind)
    path = directory.parent / "entry_summary"
    path.write_bytes(encode_summary(entries.summary(committed)))
    return path


def start(directory: Path, end: int, summary: Path | None) -> tuple[float, float, int]:
    """(recovery seconds, entry index seconds, last index) of one start, resumed from
    `summary` if given (else the full scans)."""
    saved = None if summary is None else read_summary(summary)
    began = time.perf_counter()
    log = CommitLog.open(directory, SEGMENT, durable_floor=end, resume=resume_point(saved, end))
    opened = time.perf_counter()
    reader = CommitLogReader(directory, SEGMENT)
    bounds = LogBounds(directory, log.segments, log.write_offset, end, SEGMENT)
    try:
        layout = load_entries(reader, saved, bounds)
    finally:
        reader.close()
        log.close()
    done = time.perf_counter()
    assert layout.end_offset == end, (layout.end_offset, end)
    return opened - began, done - opened, layout.entries.last_index


def both(directory: Path, end: int, summary: Path) -> dict[str, float]:
    open_s, rebuild_s, last = start(directory, end, None)
    resumed_open_s, resume_s, resumed_last = start(directory, end, summary)
    assert resumed_last == last
    return {
        "open_s": open_s,
        "rebuild_s": rebuild_s,
        "resumed_open_s": resumed_open_s,
        "resume_s": resume_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", default="1000000,4000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--behind", type=int, default=StoreConfig().restart_scan_bytes // MiB, help="MiB"
    )
    args = parser.parse_args()
    for messages in (int(m) for m in args.messages.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
            directory = Path(tmp) / "commitlog"
            end = build(directory, messages)
            summary = save_summary(directory, end, args.behind * MiB)
            runs = [both(directory, end, summary) for _ in range(args.runs)]
        for run in runs:
            print(json.dumps({"bench": "startup", "messages": messages, **run}))
        rebuild = statistics.median(r["rebuild_s"] for r in runs)
        summary = {
            "bench": "startup",
            "messages": messages,
            "log_mb": round(end / 2**20),
            "open_s": round(statistics.median(r["open_s"] for r in runs), 3),
            "rebuild_s": round(rebuild, 2),
            "resumed_open_s": round(statistics.median(r["resumed_open_s"] for r in runs), 3),
            "resume_s": round(statistics.median(r["resume_s"] for r in runs), 3),
            "resume_behind_mb": args.behind,
            "us_per_message": round(rebuild / messages * 1e6, 2),
            "mb_per_s": round(end / 2**20 / rebuild),
        }
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
