"""Classic master/slave replication (RocketMQ HA), the pure part: frames, chunks, bookkeeping.

A slave *reports* where its CommitLog ends (its `LogTail`: offset, last entry index and a
fingerprint of its last record) under a fresh `session`; the master checks that its own log
holds that very record there (`check_tail`: otherwise the logs diverged and the slave must be
re-seeded) and *pushes* whole entries from there, a bounded number of chunks ahead;
the slave appends them unchanged (`CommitLog.append_raw` re-creates the end-of-segment
padding, which is never sent) and *acks* its new end. A slave refuses a push that does not
continue its log exactly and reports again with a new session, so pushes of the old session
still in flight are ignored instead of starting a storm of refusals (and still count
against the master's window for `STALE_PUSH_MS`, so a burst of queued reports cannot make it
push without bound). Any lost frame is repaired the same way: a slave that stored nothing
for `report_interval_ms` reports again, which is also its heartbeat.

In `ha_mode: sync` the master holds each entry's confirm until a slave acknowledged its end
(`SyncWaiters`); after `sync_timeout_ms` the entry is confirmed anyway (the group never
stalls) and its producer told that it is not replicated.

Pure: no clock (callers pass `now_ms`), no files (chunking reads through a callable), no
threads. `actors/ha_master.py` and `actors/ha_slave.py` are the shells.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from dledgermq.store.errors import CorruptRecord
from dledgermq.store.record import (
    BLANK_SIZE,
    F_CRC,
    F_FLAGS,
    F_INDEX,
    F_MAGIC,
    F_OFFSET,
    F_SIZE,
    FLAG_ENTRY_END,
    HEADER,
    HEADER_SIZE,
    MAGIC_BLANK,
    MAGIC_MESSAGE,
    MAX_RECORD_SIZE,
    check_record,
    peek_header,
)
from dledgermq.store.segment import segment_start

T = TypeVar("T")

HA_VERSION = 1
CHUNK_BYTES = 1024 * 1024  # A push holds whole entries up to this, or one larger entry.
PUSH_WINDOW = 4  # Chunks a master keeps in flight per slave before waiting for an ack.
REPORT_INTERVAL_MS = 500  # A slave that stored nothing this long reports again.
# After a report, the old session's pushes still count against the window this long (the
# slave will ignore them), so a burst of reports cannot make the master push without bound.
STALE_PUSH_MS = 100
# A push never exceeds one segment's worth of entries; this bounds what a peer may send.
PUSH_MAX_BYTES = MAX_RECORD_SIZE
_MAX_U63 = 2**63


class HAFrameError(ValueError):
    """A peer frame is not a valid HA frame (dropped, never acted on)."""


class LogMismatch(ValueError):
    """The two logs disagree at the place a push would continue (a master that lost data
    its slave has, or a slave seeded from elsewhere): the slave must be re-seeded."""


# -- frames -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogTail:
    """Where a log ends (`end_offset`, after entry `last_index`) and a fingerprint of its
    last record (its offset and CRC; zeros for an empty log). Two logs with the same tail
    hold the same history: the CRC covers the record's store timestamp and unique key, so a
    master that lost that record and wrote another at the same place does not match."""

    end_offset: int
    last_index: int
    record_offset: int
    record_crc: int


EMPTY_TAIL = LogTail(0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class HAReport:
    """Slave -> master: my log ends with `tail`; stream from there under `session` (a new
    session per report)."""

    session: int
    tail: LogTail


@dataclass(frozen=True, slots=True)
class HAAck:
    """Slave -> master: everything below `offset` is stored (fsynced under flush: sync)."""

    session: int
    offset: int


@dataclass(frozen=True, slots=True)
class HAPush:
    """Master -> slave: whole entries continuing the slave's log at `offset`; they start
    at the next segment when the slave's segment has no room for the first one."""

    session: int
    offset: int
    data: bytes


HAFrame = HAReport | HAAck | HAPush
_FIELDS: dict[str, tuple[str, ...]] = {
    "ha_report": ("session", "offset", "last_index", "record_offset", "record_crc"),
    "ha_ack": ("session", "offset"),
    "ha_push": ("session", "offset", "data"),
}


def encode_frame(frame: HAFrame) -> dict[str, Any]:
    """The versioned dict the peer transport carries (msgpack keeps `data` as bytes)."""
    match frame:
        case HAReport(session, tail):
            fields: dict[str, Any] = {
                "offset": tail.end_offset,
                "last_index": tail.last_index,
                "record_offset": tail.record_offset,
                "record_crc": tail.record_crc,
            }
            kind = "ha_report"
        case HAAck(session, offset):
            fields, kind = {"offset": offset}, "ha_ack"
        case HAPush(session, offset, data):
            fields, kind = {"offset": offset, "data": data}, "ha_push"
    return {"v": HA_VERSION, "t": kind, "session": session, **fields}


def decode_frame(payload: object) -> HAFrame:
    """Validate a peer's dict strictly: known version and type, exactly the expected keys,
    integers in 0..2^63-1, a non-empty bytes body of bounded size.

    Raises:
        HAFrameError: anything else (the caller drops the frame).
    """
    if not isinstance(payload, dict):
        raise HAFrameError(f"a frame is a map, got {type(payload).__name__}")
    version, kind = payload.get("v"), payload.get("t")
    if type(version) is not int or version != HA_VERSION:
        raise HAFrameError(f"unsupported HA frame version {version!r}")
    names = _FIELDS.get(kind) if isinstance(kind, str) else None
    if names is None:
        raise HAFrameError(f"unknown HA frame type {kind!r}")
    if set(payload) != {"v", "t", *names}:
        raise HAFrameError(f"{kind} needs exactly {sorted(names)}, got {sorted(map(str, payload))}")
    values = [payload[name] for name in names]
    for name, value in zip(names, values, strict=True):
        if name != "data" and (type(value) is not int or not 0 <= value < _MAX_U63):
            raise HAFrameError(f"{kind}.{name} must be an integer in 0..2^63-1, got {value!r}")
    if kind == "ha_push":
        data = values[2]
        if type(data) is not bytes or not 0 < len(data) <= PUSH_MAX_BYTES:
            raise HAFrameError("ha_push.data must be 1..64 MiB of bytes")
        return HAPush(values[0], values[1], data)
    if kind == "ha_ack":
        return HAAck(values[0], values[1])
    return HAReport(values[0], LogTail(*values[1:]))


# -- chunks -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Chunk:
    """Whole entries for a push: `data` continues the log at `offset` and ends at `end`
    with entry `last_index`."""

    offset: int
    data: bytes
    end: int
    last_index: int


ReadBytes = Callable[[int, int], bytes]  # (offset, size) within one segment -> bytes


def next_chunk(
    read: ReadBytes,
    start: int,
    end: int,
    *,
    segment_size: int,
    expect_index: int,
    max_bytes: int = CHUNK_BYTES,
) -> Chunk | None:
    """The next push for a slave whose log ends at `start` after entry `expect_index`.

    Reads the master's log (through `read`, never past `end`, its written offset), skips
    the end-of-segment padding, and keeps whole entries only: up to `max_bytes`, or exactly
    one entry when the first entry alone is larger. Every record is verified (CRC, the
    offset it claims) and the first entry must be entry `expect_index + 1`.

    Returns:
        The chunk, or None when the log holds nothing after `start` yet.

    Raises:
        LogMismatch: the first entry does not follow `expect_index`.
        CorruptRecord: `start` is not an entry boundary of this log, or a record is damaged.
        OffsetGone (from `read`): the segment was retired; the slave is too far behind.
    """
    assert start >= 0, start
    assert max_bytes >= HEADER_SIZE, max_bytes
    pos = start
    for _ in range(2):  # At most one padding to skip (the rest of the slave's segment).
        if pos >= end:
            return None
        limit = min(segment_start(pos, segment_size) + segment_size, end) - pos
        size = min(max_bytes, limit)
        data = read(pos, size)
        magic, _ = peek_header(data)
        if magic == MAGIC_BLANK:
            pos = segment_start(pos, segment_size) + segment_size
            continue
        complete, last_index, need = _whole_entries(data, pos, expect_index, max_bytes)
        while not complete:  # The first entry is larger than `max_bytes`: read all of it.
            if size >= limit:
                raise CorruptRecord(f"the entry at {pos} crosses the log end {pos + limit}")
            size = min(limit, max(need, 2 * size))
            data = read(pos, size)
            complete, last_index, need = _whole_entries(data, pos, expect_index, max_bytes)
        return Chunk(start, data[:complete], pos + complete, last_index)
    raise CorruptRecord(f"padding at {pos} follows padding")


def _whole_entries(
    data: bytes, pos: int, expect_index: int, max_bytes: int
) -> tuple[int, int, int]:
    """(bytes of whole entries at the start of `data` within `max_bytes`, or of the first
    entry alone when it is larger; the last of their indexes; bytes needed to complete the
    first entry when `data` holds none)."""
    view = memoryview(data)
    at = complete = 0
    last = expect_index
    while len(view) - at >= BLANK_SIZE:
        magic, size = peek_header(view, at)
        if magic == MAGIC_BLANK and at == complete:
            break  # The segment's padding: the chunk ends with the entry before it.
        if magic != MAGIC_MESSAGE or not HEADER_SIZE <= size <= MAX_RECORD_SIZE:
            raise CorruptRecord(f"no record at {pos + at} (magic {magic:#x}, size {size})")
        if at + size > len(view):
            return complete, last, at + size
        header = check_record(view, at, expected_offset=pos + at)
        if at == 0 and header[F_INDEX] != expect_index + 1:
            raise LogMismatch(
                f"entry {header[F_INDEX]} at {pos}, but the slave's log ends with entry "
                f"{expect_index} there"
            )
        at += size
        if header[F_FLAGS] & FLAG_ENTRY_END:
            if complete and at > max_bytes:
                break
            complete, last = at, header[F_INDEX]
    return complete, last, at + HEADER_SIZE


def check_tail(read: ReadBytes, tail: LogTail, *, log_end: int, segment_size: int) -> None:
    """The master's check that its log holds the slave's last record exactly where the
    slave's log ends (one header read), so streaming from there continues the same history.

    Raises:
        LogMismatch: the record differs, is elsewhere, or is not there at all.
        OffsetGone (from `read`): the master retired that segment.
    """
    if tail == EMPTY_TAIL:
        return  # An empty slave continues any log from its start.
    if tail.end_offset > log_end:
        raise LogMismatch(
            f"the slave's log ends at {tail.end_offset}, beyond this master's end {log_end}: "
            "the master lost data the slave holds"
        )
    offset = tail.record_offset
    seg_end = segment_start(offset, segment_size) + segment_size
    if not offset + HEADER_SIZE <= tail.end_offset <= seg_end:
        raise LogMismatch(f"the slave's last record at {offset} cannot end at {tail.end_offset}")
    header = HEADER.unpack_from(read(offset, HEADER_SIZE))
    ours = (header[F_MAGIC], header[F_OFFSET], offset + header[F_SIZE], header[F_INDEX])
    if ours != (MAGIC_MESSAGE, offset, tail.end_offset, tail.last_index) or (
        header[F_CRC] != tail.record_crc
    ):
        raise LogMismatch(
            f"the slave's last record (entry {tail.last_index} at {offset}, crc "
            f"{tail.record_crc:#x}) is not this master's record there: the logs diverged"
        )


def tail_after(data: bytes, last_record: tuple[int, int], last_index: int) -> LogTail:
    """The tail of a log that just had `data` appended, its last record at `last_record`
    (offset, size): the record is the last `size` bytes of `data`."""
    offset, size = last_record
    header = HEADER.unpack_from(data, len(data) - size)
    assert header[F_OFFSET] == offset, (header[F_OFFSET], offset)
    return LogTail(offset + size, last_index, offset, header[F_CRC])


def tail_of(headers: Iterable[tuple[int, ...]], *, end_offset: int, last_index: int) -> LogTail:
    """The tail of a log ending at `end_offset` from the headers of its last records (in
    order; e.g. a scan of the segment holding the end)."""
    kept = deque(headers, maxlen=1)
    if not kept:
        assert end_offset == 0, f"no record ends the log at {end_offset}"
        return EMPTY_TAIL
    last = kept[0]
    assert last[F_OFFSET] + last[F_SIZE] == end_offset, (last[F_OFFSET], end_offset)
    return LogTail(end_offset, last_index, last[F_OFFSET], last[F_CRC])


def check_continues(data: bytes, offset: int, *, write_offset: int, last_index: int) -> None:
    """A slave's check that a push continues its log: it was sent for `write_offset` and its
    first entry follows `last_index` (the CommitLog checks the records and their places).

    Raises:
        LogMismatch: the push was meant for another position, or skips or repeats entries.
    """
    if offset != write_offset:
        raise LogMismatch(f"push for offset {offset}, but this log ends at {write_offset}")
    if len(data) < HEADER_SIZE:
        raise LogMismatch(f"a push of {len(data)} bytes cannot hold a record")
    header = HEADER.unpack_from(data)
    if header[F_INDEX] != last_index + 1 or header[F_OFFSET] < offset:
        raise LogMismatch(
            f"push starts with entry {header[F_INDEX]} at {header[F_OFFSET]}, but this log "
            f"ends with entry {last_index} at {write_offset}"
        )


# -- the master's view of its slaves ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Push:
    end: int
    expires_ms: int | None = None  # Set once a report replaced the push's session.


@dataclass(slots=True)
class SlaveLink:
    """What the master knows of one slave (reset by each report, except pushes in flight)."""

    session: int | None = None  # None: never reported.
    cursor: int = 0  # Where the next push starts.
    expect_index: int = 0  # The entry the slave's log ends with at `cursor`.
    acked: int = 0  # The slave's last reported or acknowledged end.
    # The master's log holds the slave's reported tail (the same history): acks count.
    verified: bool = False
    in_flight: deque[_Push] = field(default_factory=deque)  # Unacknowledged, of any session.
    heard_ms: int | None = None
    stalled: str | None = None  # Why pushes stopped until the next report.
    last_problem: str | None = None  # Logged once until something changes.


class MasterLinks:
    """The master's bookkeeping of every slave: cursors, windows, acknowledgements."""

    def __init__(self, slave_ids: Iterable[int], *, window: int = PUSH_WINDOW) -> None:
        assert window >= 1
        self.links = {slave_id: SlaveLink() for slave_id in slave_ids}
        self._window = window
        self.started_ms: int | None = None  # The first clock reading (the master's start).

    def report(self, slave_id: int, frame: HAReport, *, now_ms: int, verified: bool) -> None:
        """Restart streaming to the slave from where it says its log ends; `verified`: this
        log holds the slave's tail (`check_tail`), so its acks count."""
        link = self.links[slave_id]
        link.session, link.cursor = frame.session, frame.tail.end_offset
        link.expect_index = frame.tail.last_index
        link.acked = frame.tail.end_offset
        link.verified = verified
        # Pushes of the old session beyond the tail may still be on the way (the slave will
        # ignore them): they keep their place in the window for a little while.
        expires_ms = now_ms + STALE_PUSH_MS
        link.in_flight = deque(
            _Push(p.end, expires_ms if p.expires_ms is None else min(p.expires_ms, expires_ms))
            for p in link.in_flight
            if p.end > frame.tail.end_offset
        )
        link.heard_ms, link.stalled = now_ms, None

    def ack(self, slave_id: int, frame: HAAck, *, now_ms: int) -> bool:
        """Record an acknowledgement; False if it belongs to an older session."""
        link = self.links[slave_id]
        link.heard_ms = now_ms
        if frame.session != link.session:
            return False
        link.acked = max(link.acked, frame.offset)
        if any(p.end <= frame.offset for p in link.in_flight):
            link.in_flight = deque(p for p in link.in_flight if p.end > frame.offset)
        return True

    def can_push(self, slave_id: int, log_end: int, now_ms: int) -> bool:
        link = self.links[slave_id]
        while link.in_flight:  # Stale pushes (older sessions) come first.
            expires_ms = link.in_flight[0].expires_ms
            if expires_ms is None or expires_ms > now_ms:
                break
            link.in_flight.popleft()
        return (
            link.session is not None
            and link.stalled is None
            and link.cursor < log_end
            and len(link.in_flight) < self._window
        )

    def pushed(self, slave_id: int, chunk: Chunk) -> None:
        link = self.links[slave_id]
        assert chunk.offset == link.cursor, (chunk.offset, link.cursor)
        link.cursor, link.expect_index = chunk.end, chunk.last_index
        link.in_flight.append(_Push(chunk.end))
        link.last_problem = None

    def stall(self, slave_id: int, problem: str) -> bool:
        """Stop pushing to the slave until it reports again; True if the problem is new
        (worth a log line), False when it repeats the last one."""
        link = self.links[slave_id]
        link.stalled = problem
        new = problem != link.last_problem
        link.last_problem = problem
        return new

    def best_acked(self) -> int:
        """The highest end any slave acknowledged where its log is known to match ours."""
        return max((k.acked for k in self.links.values() if k.verified), default=0)

    def alive(self, now_ms: int, *, silence_ms: int) -> bool:
        """Whether a slave that can acknowledge (its log matches, pushes flow) was heard
        within `silence_ms`. Until some slave reported (no clock yet, or for `silence_ms`
        after the start) the slaves get the benefit of the doubt."""
        if self.started_ms is None:
            return True
        if all(k.session is None for k in self.links.values()):
            return now_ms - self.started_ms < silence_ms
        return any(
            k.verified
            and k.stalled is None
            and k.heard_ms is not None
            and now_ms - k.heard_ms < silence_ms
            for k in self.links.values()
        )


# -- sync acknowledgements --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settled(Generic[T]):
    """Waiters that are done: confirm up to `confirm` (None: nothing moved); tokens in
    `unreplicated` get SLAVE_NOT_AVAILABLE, the others succeed."""

    confirm: int | None = None
    replicated: tuple[T, ...] = ()
    unreplicated: tuple[T, ...] = ()


@dataclass(frozen=True, slots=True)
class _Waiter(Generic[T]):
    end: int
    deadline_ms: int
    token: T


class SyncWaiters(Generic[T]):
    """Entries (by end offset, in log order) waiting for a slave's acknowledgement.

    The confirm offset only grows and only over settled entries, so an entry settles
    together with every earlier one: on an ack reaching its end (replicated), or when the
    oldest waiter times out, or at once when no slave has been heard for a whole timeout
    (unreplicated: the group goes on, RocketMQ's SLAVE_NOT_AVAILABLE).
    """

    def __init__(self, timeout_ms: int) -> None:
        assert timeout_ms > 0
        self._timeout_ms = timeout_ms
        self._waiting: deque[_Waiter[T]] = deque()
        self._acked = 0
        self._last_end = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, end: int, token: T, *, now_ms: int, slaves_alive: bool = True) -> Settled[T]:
        assert end >= self._last_end, (end, self._last_end)
        self._last_end = end
        if end <= self._acked:
            assert not self._waiting, "an ack settles every waiter it reaches"
            return Settled(end, (token,))
        self._waiting.append(_Waiter(end, now_ms + self._timeout_ms, token))
        if not slaves_alive:
            return self._give_up(len(self._waiting))
        return Settled()

    def ack(self, acked: int) -> Settled[T]:
        """The best slave's acknowledged end is now `acked` (it may shrink: a slave that
        restarted with less; settled entries stay settled)."""
        self._acked = acked
        count = 0
        while count < len(self._waiting) and self._waiting[count].end <= acked:
            count += 1
        if not count:
            return Settled()
        done = [self._waiting.popleft() for _ in range(count)]
        return Settled(done[-1].end, tuple(w.token for w in done))

    def expire(self, now_ms: int) -> Settled[T]:
        count = 0
        while count < len(self._waiting) and self._waiting[count].deadline_ms <= now_ms:
            count += 1
        return self._give_up(count) if count else Settled()

    def _give_up(self, count: int) -> Settled[T]:
        done = [self._waiting.popleft() for _ in range(count)]
        return Settled(done[-1].end, unreplicated=tuple(w.token for w in done))


# -- the slave's side -------------------------------------------------------------------------


class SlaveStream:
    """A slave's session with its master: which pushes to take, when to report.

    Pushes of the current session go to the writer in order (the writer checks each one
    continues the log, `check_continues`); `pending` counts those not yet answered. A
    refusal starts a new session, and the report for it waits until nothing is pending, so
    that it states where the log really ends.
    """

    def __init__(
        self, *, tail: LogTail, session: int, report_interval_ms: int = REPORT_INTERVAL_MS
    ) -> None:
        self.tail = tail
        self.session = session
        self.pending = 0
        self.report_due = True
        self._report_interval_ms = report_interval_ms
        self._progress_ms: int | None = None  # When a push was last stored (or reported).
        self._reported_ms: int | None = None

    def take_push(self, frame: HAPush) -> bool:
        """Whether to hand the push to the writer (False: an old session's, ignore it)."""
        if frame.session != self.session or self.report_due:
            return False
        self.pending += 1
        return True

    def stored(self, session: int, tail: LogTail, now_ms: int) -> HAAck | None:
        """The writer stored a push; the ack to send, if it still means something."""
        self.pending -= 1
        assert self.pending >= 0
        self.tail = tail
        self._progress_ms = now_ms
        if session != self.session or self.report_due:
            return None
        return HAAck(self.session, tail.end_offset)

    def refused(self, session: int) -> bool:
        """The writer refused a push (nothing written); True if this starts a new session
        (worth a log line: later refusals of the same session follow from the first)."""
        self.pending -= 1
        assert self.pending >= 0
        if session != self.session:
            return False
        self._new_session()
        return True

    def take_report(self, now_ms: int) -> HAReport | None:
        """The report to send now, if any: one is due (start, refusal) and the last report
        is a report interval old (so a push the writer keeps refusing cannot loop fast), or
        the stream went quiet for an interval (a lost frame, a restarted master, or simply
        nothing new). Never while pushes are pending: the report states the real end."""
        interval = self._report_interval_ms
        if self.pending:
            return None
        if self.report_due:
            if self._reported_ms is not None and now_ms - self._reported_ms < interval:
                return None
        elif self._progress_ms is not None and now_ms - self._progress_ms < interval:
            return None
        else:
            self._new_session()
        self.report_due = False
        self._progress_ms = self._reported_ms = now_ms
        return HAReport(self.session, self.tail)

    def unsent(self) -> None:
        """The report could not be handed to the transport (not running yet): retry at once."""
        self.report_due = True
        self._reported_ms = None

    def _new_session(self) -> None:
        self.session = (self.session + 1) % _MAX_U63
        self.report_due = True


# -- status -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlaveView:
    node_id: str
    acked_offset: int
    connected: bool
    state: str  # "streaming", "waiting for a report", or why pushes stopped


@dataclass(frozen=True, slots=True)
class HAStatus:
    """What /status shows of replication (published by the HA actor, read by the API)."""

    ha_mode: str
    role: str  # "master" | "slave"
    slaves: tuple[SlaveView, ...] = ()  # On a master.
    master: str | None = None  # On a slave: the node it follows, and its address.
    master_addr: str | None = None

    def to_wire(self, write_offset: int) -> dict[str, Any]:
        """JSON-ready, with each slave's lag against the master's `write_offset`."""
        if self.role == "slave":
            return {
                "ha_mode": self.ha_mode,
                "master": self.master,
                "master_addr": self.master_addr,
                "write_offset": write_offset,
            }
        slaves = [
            {
                "node_id": s.node_id,
                "acked_offset": s.acked_offset,
                "lag_bytes": max(0, write_offset - s.acked_offset),
                "connected": s.connected,
                "state": s.state,
            }
            for s in self.slaves
        ]
        return {"ha_mode": self.ha_mode, "slaves": slaves}


def slave_views(
    links: MasterLinks, names: dict[int, str], *, now_ms: int, silence_ms: int
) -> tuple[SlaveView, ...]:
    views = []
    for slave_id, link in sorted(links.links.items()):
        reported = link.session is not None
        state = (link.stalled or "streaming") if reported else "waiting for a report"
        connected = link.heard_ms is not None and now_ms - link.heard_ms < silence_ms
        views.append(SlaveView(names.get(slave_id, str(slave_id)), link.acked, connected, state))
    return tuple(views)
