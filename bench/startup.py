"""How long a Raft node's start takes as its log grows: log recovery plus the entry-index scan.

    python -m bench.startup --messages 1000000,4000000 --runs 3

For each size, builds a CommitLog of that many messages (128 B bodies, 100 per entry, one
256 MiB segment after another) in a temp dir with the store alone (no cluster: this is the
start path only), then times, `--runs` times, what a Raft node does before it serves:
`CommitLog.open` with the checkpoint at the log's end (recovery scans from there) and
`node.rebuild_entries`, which reads and CRC-checks every record of the log to rebuild the
entry index. The log was just written, so it is read from the page cache (a cold start
also pays the disk). One JSON line per run, then one per size with the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from dledgermq.node import rebuild_entries
from dledgermq.store.commitlog import CommitLog, CommitLogReader
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


def start(directory: Path, end: int) -> dict[str, float]:
    began = time.perf_counter()
    log = CommitLog.open(directory, SEGMENT, durable_floor=end)
    opened = time.perf_counter()
    reader = CommitLogReader(directory, SEGMENT)
    try:
        entries = rebuild_entries(reader, log.min_offset, log.write_offset, SEGMENT)
    finally:
        reader.close()
        log.close()
    done = time.perf_counter()
    assert entries.end_offset == end, (entries.end_offset, end)
    return {"open_s": opened - began, "rebuild_s": done - opened}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", default="1000000,4000000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for messages in (int(m) for m in args.messages.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
            end = build(Path(tmp), messages)
            runs = [start(Path(tmp), end) for _ in range(args.runs)]
        for run in runs:
            print(json.dumps({"bench": "startup", "messages": messages, **run}))
        rebuild = statistics.median(r["rebuild_s"] for r in runs)
        summary = {
            "bench": "startup",
            "messages": messages,
            "log_mb": round(end / 2**20),
            "open_s": round(statistics.median(r["open_s"] for r in runs), 3),
            "rebuild_s": round(rebuild, 2),
            "us_per_message": round(rebuild / messages * 1e6, 2),
            "mb_per_s": round(end / 2**20 / rebuild),
        }
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
