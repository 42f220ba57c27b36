"""RepairActor: finds damaged CommitLog records and repairs them from a peer's copy.

A record that fails its CRC is never served (readers answer CORRUPT_DATA); this actor makes
the node whole again instead of leaving the hole for good:

- **finds** damage: readers report it (`Damaged`: a pull, a cold read for a lagging
  follower), and a scrubber re-verifies the committed log in the background at a bounded
  rate, so latent damage is found before a reader or a peer needs the record;
- **repairs** it: asks the peers, one at a time, for their copy of the record at the same
  offset (`replication/repair.py` has the rules: committed region only, the copy checked before
  it is written), and has the writer write it in place (`RepairRecord`);
- **serves** peers: its own intact, committed records, to a peer that lost its copy.

Owns: a `CommitLogReader`, the `RepairBook`, the scrub cursor. Must not: write files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from dledgermq.actors.commitlog_writer import RepairRecord
from dledgermq.actors.published import Published
from dledgermq.actors.supervisor import FailStopActor, FatalHandler, exit_process, tell
from dledgermq.actors.ticker import Tick
from dledgermq.replication.repair import (
    RepairBook,
    RepairFrame,
    RepairRefused,
    RepairReply,
    RepairRequest,
    check_repair,
    copy_of,
    serve_repair,
)
from dledgermq.store.entry_index import decode_position
from dledgermq.store.errors import CorruptRecord, OffsetGone
from dledgermq.store.reader import CommitLogReader
from dledgermq.store.record import BLANK_SIZE
from dledgermq.store.segment import segment_start

log = logging.getLogger(__name__)
SCRUB_STEP_BYTES = 1024 * 1024  # Scrub in steps this large (a step is one chunked read).


@dataclass(frozen=True, slots=True)
class Damaged:
    """A reader found the record at `offset` damaged."""

    offset: int


@dataclass(frozen=True, slots=True)
class PeerFrame:
    """A repair frame from peer `src` (the transport proved who sent it)."""

    src: int
    frame: RepairFrame


@dataclass(frozen=True, slots=True)
class _Written:
    offset: int
    written: bool
    peer: int


@dataclass(frozen=True, slots=True)
class RepairStats:
    """For /status: what was found and repaired since start, and what still waits."""

    found: int = 0
    repaired: int = 0
    outstanding: tuple[int, ...] = ()
    scrubbed_to: int = 0
    scrub_passes: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "repaired": self.repaired,
            "outstanding": list(self.outstanding),
            "scrubbed_to": self.scrubbed_to,
            "scrub_passes": self.scrub_passes,
        }


@dataclass(frozen=True, slots=True)
class RepairOptions:
    segment_size: int
    peers: tuple[int, ...]
    retry_ms: int = 1_000
    scrub_bytes_per_s: int = 4 * 1024 * 1024  # 0: no scrubbing (reports only).
    scrub_pass_pause_ms: int = 60_000


class RepairActor(FailStopActor):
    def __init__(  # noqa: PLR0913 - the collaborators node.py wires in
        self,
        reader: CommitLogReader,
        *,
        log_start: int,
        dispatched: Published[int],
        writer: pykka.ActorRef[Any],
        send: Callable[[int, RepairFrame], bool],
        options: RepairOptions,
        stats: Published[RepairStats],
        on_fatal: FatalHandler = exit_process,
    ) -> None:
        super().__init__(on_fatal)
        self._reader = reader
        self._dispatched = dispatched
        self._writer = writer
        self._send = send
        self._options = options
        self._stats = stats
        self._book = RepairBook(options.peers, retry_ms=options.retry_ms)
        self._now_ms: int | None = None
        self._log_start = log_start
        self._cursor = log_start
        self._scrub_budget = 0
        self._pass_done_at_ms: int | None = None
        self._found = self._repaired = self._passes = 0

    def on_receive(self, message: object) -> None:
        match message:
            case Damaged(offset):
                self._damaged(offset)
            case PeerFrame(src, RepairRequest(offset, span)):
                self._serve(src, offset, span)
            case PeerFrame(src, RepairReply(offset, data, reason)):
                self._answered(src, offset, data, reason)
            case _Written(offset, written, peer):
                self._written(offset, written, peer)
            case Tick(now_ms):
                self._tick(now_ms)
            case _:
                raise AssertionError(f"unexpected message {message!r}")

    # -- finding -----------------------------------------------------------------------------

    def _damaged(self, offset: int) -> None:
        if offset >= self._dispatched.value:
            # Not committed here yet: Raft replaces or truncates it; a copy could differ.
            log.warning("damaged record at %d is above the committed log; left to Raft", offset)
            return
        if self._book.add(offset):
            self._found += 1
            log.error("damaged CommitLog record at %d: asking peers for their copy", offset)
            self._ask_due()
        self._publish()

    def _tick(self, now_ms: int) -> None:
        elapsed = 0 if self._now_ms is None else now_ms - self._now_ms
        self._now_ms = now_ms
        self._ask_due()
        rate = self._options.scrub_bytes_per_s
        if rate <= 0:
            return
        if self._pass_done_at_ms is not None:
            if now_ms - self._pass_done_at_ms < self._options.scrub_pass_pause_ms:
                return
            self._pass_done_at_ms = None
        self._scrub_budget = min(rate, self._scrub_budget + rate * elapsed // 1000)
        if self._scrub_budget >= min(SCRUB_STEP_BYTES, rate):
            self._scrub_step(self._scrub_budget)
            self._scrub_budget = 0
        self._publish()

    def _scrub_step(self, budget: int) -> None:
        """Verify records from the cursor on, up to `budget` bytes or the committed end."""
        end = self._dispatched.value
        start = self._cursor
        if start >= end:
            self._passes += 1
            self._pass_done_at_ms = self._now_ms
            self._cursor = self._log_start
            return
        pos = start
        try:
            for record in self._reader.iter_records(start, end, decode_position):
                pos = record.end_offset
                if pos - start >= budget:
                    break
            else:
                pos = end
        except OffsetGone:  # Retention removed the segment: go on with the next one.
            pos = segment_start(pos, self._options.segment_size) + self._options.segment_size
            self._log_start = max(self._log_start, pos)
        except CorruptRecord:
            damaged = self._reader.past_padding(pos)
            self._damaged(damaged)
            # While it waits for a copy, scrub on from the next segment.
            pos = segment_start(damaged, self._options.segment_size) + self._options.segment_size
        self._cursor = pos

    # -- repairing ---------------------------------------------------------------------------

    def _ask_due(self) -> None:
        if self._now_ms is None:
            return
        for offset, peer in self._book.due(self._now_ms):
            attempts = self._book.attempts(offset)
            if attempts > len(self._options.peers) and attempts % 10 == 0:
                log.error("record at %d: still no intact copy after %d asks", offset, attempts)
            self._send(peer, RepairRequest(offset))

    def _answered(self, src: int, offset: int, data: bytes | None, reason: str) -> None:
        if offset not in self._book:
            return  # Late or duplicate: repaired already.
        if data is None:
            log.warning("node %d has no copy of the record at %d: %s", src, offset, reason)
            self._book.refused(offset)
            return
        try:
            check_repair(
                offset,
                data,
                segment_size=self._options.segment_size,
                repairable_end=self._dispatched.value,
                following=self._following(offset + len(data)),
            )
        except RepairRefused as exc:
            log.warning("refusing node %d's copy: %s", src, exc)
            self._book.refused(offset)
            return
        me = self.actor_ref
        tell(
            self._writer,
            RepairRecord(offset, data, lambda written: tell(me, _Written(offset, written, src))),
        )

    def _following(self, end: int) -> bytes | None:
        if end >= self._dispatched.value or end % self._options.segment_size == 0:
            return None
        try:
            return self._reader.read_bytes(end, BLANK_SIZE)
        except OffsetGone:
            return None

    def _written(self, offset: int, written: bool, peer: int) -> None:
        if not written:
            log.warning("record at %d: its segment was retired before the repair", offset)
            self._book.done(offset)
            return
        try:
            copy_of(self._reader.read_bytes, offset, self._options.segment_size)
        except (CorruptRecord, OffsetGone) as exc:  # Another write raced it: ask again.
            log.error("record at %d still fails after the repair: %s", offset, exc)
            self._book.refused(offset)
            return
        self._book.done(offset)
        self._repaired += 1
        log.warning("repaired the record at %d with node %d's copy", offset, peer)
        self._publish()

    # -- serving -----------------------------------------------------------------------------

    def _serve(self, src: int, offset: int, span: int) -> None:
        try:
            reply = serve_repair(
                self._reader.read_bytes,
                RepairRequest(offset, span),
                committed_end=self._dispatched.value,
                segment_size=self._options.segment_size,
            )
        except CorruptRecord as exc:
            reply = RepairReply(offset, None, f"damaged here too: {exc}")
            self._damaged(offset)
        self._send(src, reply)

    def _publish(self) -> None:
        self._stats.value = RepairStats(
            self._found, self._repaired, tuple(self._book.offsets), self._cursor, self._passes
        )
