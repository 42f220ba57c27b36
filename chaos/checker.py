"""Judge a chaos history: was any acknowledged message lost, invented, moved or reordered?

Goal: one pure function, `check(history, nodes=..., expect_lost_ok=...) -> Report`, whose
verdict a person can trust without reading the run: every count below has a rule, and the
rule says why it is (or is not) a failure. Jepsen's total-queue checker and its NATS and
Kafka workloads are the models (REFERENCE.md §3.1, §3.6, §3.7).

A *position* is (topic, broker, queue, offset): the brief's (broker, queue, offset) within
one topic, since every topic has its own queue 0..n on every broker. Order within one
(topic, broker, queue) is queue order. The history's list order is real-time order (the
`Recorder` guarantees it), so "a's ack came before b's invoke" compares list positions,
not clock readings of limited resolution.

Counts that must be 0 (any non-zero one makes `Report.ok` False):

- `lost`: acknowledged sends never read anywhere (by a consumer or any node's drain).
  An ack promises durability; losing one breaks the promise.
- `vanished`: acknowledged sends that were read during the run but are in no node's final
  drain (checked once any node was drained): lost after a consumer saw them.
  Modes that promise less (`majority_memory`, async master/slave) pass
  `expect_lost_ok=True`: `lost` and `vanished` messages are then reported as
  `lost_allowed` (measured, not a failure), and so are the findings that follow from such
  a loss alone (see `reuse_after_loss`).
- `unexpected`: messages read that were never invoked: the system invented or corrupted
  data.
- `failed_seen`: sends that failed *definitely* and were read anyway. A definite failure
  must mean nothing was stored; a client that cannot guarantee this for an error must
  record it as `info` (see `chaos.history.classify_send_error`), so a hit here is a wrong
  error from the broker or a client that misclassifies.
- `offset_reuse`: one position read holding different messages (on different reads or
  different nodes): replicas diverged, or a queue offset was handed out twice.
- `ack_mismatch`: an acknowledged send whose acknowledged position never held it in any
  read although the position, or the message elsewhere, was read: the ack named the
  wrong place. (If the message was never read at all it is also `lost`.)
- `order_violations`: per (topic, sharding key, writer) and per queue the sends were
  acknowledged to: if a's ack came before b's invoke, a must be consumed at a lower
  offset than b (first read offset of each, so later duplicates do not count). One
  violation per b consumed ahead of some a. Order across writers is not promised (as in
  RocketMQ ordered messages), so it is not checked.
- `per_node_missing`: in the final drain (reads with `node` set), a position that some
  node of a broker group holds and another node of that group has not read at all:
  incomplete replication or a split brain. Group membership is inferred from the drain
  (a node belongs to the brokers it drained), so pass in `nodes` only nodes that hold data.
- `nodes_not_drained`: nodes in `nodes` with no drain read at all; without their drain
  the per-node check cannot speak for them, so the run is not proven.
- `unexpected_stops`: node processes that exited although the nemesis did not kill them
  (`NodeStop` ops, recorded by the cluster with the tail of the node's log): a request's
  content, or a bug, ended the process. A broker must contain bad input to the request.
  With `expect_lost_ok`, a stop whose log ends in `CommittedEntryConflict` (the node kept
  committed entries a power loss took from the others) is `stops_after_loss` instead.
- `hostile_5xx`: answers of 500 or above to the hostile writer (`Hostile` ops), except
  the documented answers of an unavailable or damaged node (`UNAVAILABLE_CODES`: BUSY,
  UNAVAILABLE, SLAVE_NOT_AVAILABLE, TIMEOUT, DISK_FULL, CORRUPT_DATA), which are counted
  as `hostile_unavailable`. A hostile request must get a 4xx (or be accepted harmlessly).

Counts that are measured, never failures:

- `acknowledged`, `failed`, `indeterminate` (info outcomes plus invokes with no outcome
  at all, Jepsen's pending ops), `reads`;
- `duplicated`: messages read at more than one distinct position (a retried send that
  was stored twice); at-least-once delivery allows them;
- `indeterminate_seen`: indeterminate sends that were read (Jepsen's "recovered");
- `lost_allowed`: see `vanished`;
- `reuse_after_loss` (only with `expect_lost_ok`): a position that held a message which
  is in no final drain, and then another one: the restarted master handed the lost
  message's queue offset to a new message (as RocketMQ's async replication does). Such a
  lost message is also excused from `ack_mismatch` and `order_violations`; a position
  that two *surviving* messages claim is still `offset_reuse`.
- `hostile_requests`, `hostile_4xx`, `hostile_unanswered` (no answer: the node was down,
  cut off, or died of the request), and `hostile_unavailable`;
- `stops_after_loss`: see `unexpected_stops`;
- `availability`: per fault window (a start..end pair of one fault on one target; an
  unended window runs to the end of the history), the longest gap without an acknowledged
  send from the window's start to the first ack after its end (so an outage that outlasts
  the fault counts in full), and the time from the start to the first ack; plus the
  overall longest gap between the first and the last send op. Liveness is reported for
  people to judge, since how long a failover may take depends on the scenario.

A malformed history (an outcome without an invoke, two outcomes for one send, a read
from a node not in `nodes`, a fault end without a start) raises `HistoryError`: that is a
harness bug, not a finding about the system.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, NamedTuple

from chaos.history import (
    Fault,
    HistoryError,
    Hostile,
    NodeStop,
    Op,
    Read,
    SendFail,
    SendInfo,
    SendInvoke,
    SendOk,
)

ITEMS_MAX = 20
LOG_LINES_SHOWN = 12
# What a Raft node says when it stops because it kept entries its peers lost (raft/).
LOST_COMMITS_ERROR = "CommittedEntryConflict"
# 5xx codes that say "not now" (overload, no leader, a fault) rather than "bad input".
UNAVAILABLE_CODES = frozenset(
    {"BUSY", "UNAVAILABLE", "SLAVE_NOT_AVAILABLE", "TIMEOUT", "DISK_FULL", "CORRUPT_DATA"}
)


class Position(NamedTuple):
    """Where a message sits: queue order is offset order within (topic, broker, queue)."""

    topic: str
    broker: str
    queue: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.broker}/{self.queue}@{self.offset}"


@dataclass(frozen=True, slots=True)
class OffsetReuse:
    position: Position
    msgs: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.position} holds {', '.join(self.msgs)}"


@dataclass(frozen=True, slots=True)
class AckMismatch:
    msg: str
    acked: Position
    read_at: tuple[Position, ...]
    found: tuple[str, ...]

    def __str__(self) -> str:
        where = ", ".join(map(str, self.read_at)) or "nowhere"
        found = ", ".join(self.found) or "nothing read"
        return f"{self.msg} acked at {self.acked} ({found} there), read at {where}"


@dataclass(frozen=True, slots=True)
class OrderViolation:
    topic: str
    key: str
    writer: str
    broker: str
    queue: int
    earlier: str
    earlier_offset: int
    later: str
    later_offset: int

    def __str__(self) -> str:
        return (
            f"key {self.key}: {self.earlier} acked before {self.later} was sent, but "
            f"{self.topic}/{self.broker}/{self.queue} has them at "
            f"{self.earlier_offset} > {self.later_offset}"
        )


@dataclass(frozen=True, slots=True)
class NodeMissing:
    node: str
    position: Position
    msg: str

    def __str__(self) -> str:
        return f"{self.node} lacks {self.position} ({self.msg} on its peers)"


@dataclass(frozen=True, slots=True)
class Stop:
    node: str
    pid: int
    returncode: int | None
    t: float
    log_tail: str

    def __str__(self) -> str:
        last = self.log_tail.strip().splitlines()[-1:] or ["(empty log)"]
        return f"{self.node} (pid {self.pid}) exited {self.returncode} at {self.t:.2f}: {last[0]}"


@dataclass(frozen=True, slots=True)
class HostileAnswer:
    case: str
    node: str
    method: str
    path: str
    status: int
    code: str
    sent: str

    def __str__(self) -> str:
        return f"{self.case}: {self.method} {self.path} on {self.node} -> {self.status} {self.code}"


@dataclass(frozen=True, slots=True)
class FaultWindow:
    fault: str
    target: str
    start: float
    end: float | None
    longest_gap_s: float
    time_to_first_ack_s: float | None


@dataclass(frozen=True, slots=True)
class Availability:
    windows: tuple[FaultWindow, ...] = ()
    longest_gap_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Report:
    """The checker's findings; `ok` is False when any must-be-0 finding is non-empty."""

    MUST_BE_EMPTY: ClassVar[tuple[str, ...]] = (
        "lost",
        "vanished",
        "unexpected",
        "failed_seen",
        "offset_reuse",
        "ack_mismatch",
        "order_violations",
        "per_node_missing",
        "nodes_not_drained",
        "unexpected_stops",
        "hostile_5xx",
    )
    ALLOWED: ClassVar[tuple[str, ...]] = (
        "lost_allowed",
        "reuse_after_loss",
        "duplicated",
        "indeterminate_seen",
        "stops_after_loss",
        "hostile_unavailable",
    )
    HOSTILE_COUNTS: ClassVar[tuple[str, ...]] = (
        "hostile_requests",
        "hostile_4xx",
        "hostile_unanswered",
    )

    acknowledged: int
    failed: int
    indeterminate: int
    reads: int
    lost: tuple[str, ...] = ()
    vanished: tuple[str, ...] = ()
    lost_allowed: tuple[str, ...] = ()
    reuse_after_loss: tuple[OffsetReuse, ...] = ()
    unexpected: tuple[str, ...] = ()
    duplicated: tuple[str, ...] = ()
    indeterminate_seen: tuple[str, ...] = ()
    failed_seen: tuple[str, ...] = ()
    offset_reuse: tuple[OffsetReuse, ...] = ()
    ack_mismatch: tuple[AckMismatch, ...] = ()
    order_violations: tuple[OrderViolation, ...] = ()
    per_node_missing: tuple[NodeMissing, ...] = ()
    nodes_not_drained: tuple[str, ...] = ()
    unexpected_stops: tuple[Stop, ...] = ()
    stops_after_loss: tuple[Stop, ...] = ()
    hostile_requests: int = 0
    hostile_4xx: int = 0
    hostile_unanswered: int = 0
    hostile_5xx: tuple[HostileAnswer, ...] = ()
    hostile_unavailable: tuple[HostileAnswer, ...] = ()
    availability: Availability = field(default_factory=Availability)

    @property
    def ok(self) -> bool:
        return not any(getattr(self, name) for name in self.MUST_BE_EMPTY)

    def counts(self) -> dict[str, int]:
        """Every finding's count, failures first."""
        return {name: len(getattr(self, name)) for name in self.MUST_BE_EMPTY + self.ALLOWED}

    def to_json(self, items_max: int | None = ITEMS_MAX) -> dict[str, Any]:
        """JSON-ready dict; each finding is {"count", "items"} with items cut to `items_max`."""
        head = {"ok": self.ok} | {
            name: getattr(self, name)
            for name in ("acknowledged", "failed", "indeterminate", "reads", *self.HOSTILE_COUNTS)
        }
        findings = {
            name: _finding_json(getattr(self, name), items_max)
            for name in self.MUST_BE_EMPTY + self.ALLOWED
        }
        return head | findings | {"availability": _to_json(self.availability)}

    def table(self, examples_max: int = 3) -> str:
        """A short text summary: totals, one row per finding, examples, availability."""
        lines = [
            f"chaos check: {'OK' if self.ok else 'FAIL'}",
            f"  sends: {self.acknowledged} acknowledged, {self.failed} failed, "
            f"{self.indeterminate} indeterminate; {self.reads} reads",
            f"  hostile: {self.hostile_requests} requests, {self.hostile_4xx} 4xx, "
            f"{len(self.hostile_5xx) + len(self.hostile_unavailable)} 5xx "
            f"({len(self.hostile_unavailable)} unavailable), "
            f"{self.hostile_unanswered} unanswered",
            f"  {'finding':<20} {'count':>7}  rule",
        ]
        for name, count in self.counts().items():
            rule = "must be 0" if name in self.MUST_BE_EMPTY else "allowed"
            lines.append(f"  {name:<20} {count:>7}  {rule}")
        lines += self._examples(examples_max)
        return "\n".join(lines + _availability_lines(self.availability))

    def _examples(self, examples_max: int) -> list[str]:
        lines = []
        for name in self.MUST_BE_EMPTY:
            items = getattr(self, name)
            shown = "; ".join(map(str, items[:examples_max]))
            more = f" (+{len(items) - examples_max} more)" if len(items) > examples_max else ""
            if items:
                lines.append(f"  e.g. {name}: {shown}{more}")
        for stop in self.unexpected_stops[:examples_max]:
            lines.append(f"  log tail of {stop.node} (pid {stop.pid}):")
            lines += [f"    | {line}" for line in stop.log_tail.splitlines()[-LOG_LINES_SHOWN:]]
        return lines


def _availability_lines(availability: Availability) -> list[str]:
    lines = [
        "availability (seconds without an acknowledged send)",
        f"  {'fault':<10} {'target':<12} {'start':>9} {'end':>9} {'longest_gap':>12} "
        f"{'first_ack':>10}",
    ]
    for w in availability.windows:
        end = "-" if w.end is None else f"{w.end:.2f}"
        first = "never" if w.time_to_first_ack_s is None else f"{w.time_to_first_ack_s:.2f}"
        lines.append(
            f"  {w.fault:<10} {w.target:<12} {w.start:>9.2f} {end:>9} "
            f"{w.longest_gap_s:>12.2f} {first:>10}"
        )
    lines.append(f"  overall longest gap: {availability.longest_gap_s:.2f}")
    return lines


def _finding_json(items: tuple[Any, ...], items_max: int | None) -> dict[str, Any]:
    return {"count": len(items), "items": _to_json(items[:items_max])}


def _to_json(value: Any) -> Any:
    """Findings to plain JSON: positions and dataclasses become dicts, tuples lists."""
    if isinstance(value, Position):
        return value._asdict()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, list | tuple):
        return [_to_json(item) for item in value]
    return value


@dataclass
class _Facts:
    """The history indexed once: sends by msg, reads by msg, position and node."""

    invokes: dict[str, SendInvoke] = field(default_factory=dict)
    invoke_index: dict[str, int] = field(default_factory=dict)
    oks: dict[str, SendOk] = field(default_factory=dict)
    ok_index: dict[str, int] = field(default_factory=dict)
    fails: dict[str, SendFail] = field(default_factory=dict)
    infos: dict[str, SendInfo] = field(default_factory=dict)
    reads: int = 0
    faults: list[Fault] = field(default_factory=list)
    send_times: list[float] = field(default_factory=list)
    last_t: float = 0.0
    # Ordered sets (dicts to None): iteration order must not depend on hash seeds.
    seen: dict[str, dict[Position, None]] = field(default_factory=dict)
    held: dict[Position, dict[str, None]] = field(default_factory=dict)
    drained: dict[str, dict[Position, str]] = field(default_factory=dict)
    hostile: list[Hostile] = field(default_factory=list)
    stops: list[NodeStop] = field(default_factory=list)

    def add(self, index: int, op: Op) -> None:
        self.last_t = max(self.last_t, op.t)
        match op:
            case SendInvoke():
                self._add_invoke(index, op)
            case SendOk() | SendFail() | SendInfo():
                self._add_outcome(index, op)
            case Read():
                self._add_read(op)
            case Fault():
                self.faults.append(op)
            case Hostile():
                self.hostile.append(op)
            case NodeStop():
                self.stops.append(op)

    def _add_invoke(self, index: int, op: SendInvoke) -> None:
        if op.msg in self.invokes:
            raise HistoryError(f"{op.msg} invoked twice (bodies must be unique)")
        self.invokes[op.msg] = op
        self.invoke_index[op.msg] = index
        self.send_times.append(op.t)

    def _add_outcome(self, index: int, op: SendOk | SendFail | SendInfo) -> None:
        if op.msg not in self.invokes:
            raise HistoryError(f"outcome {op.to_json()} for a send never invoked")
        if op.msg in self.oks or op.msg in self.fails or op.msg in self.infos:
            raise HistoryError(f"{op.msg} has two outcomes")
        match op:
            case SendOk():
                self.oks[op.msg] = op
                self.ok_index[op.msg] = index
            case SendFail():
                self.fails[op.msg] = op
            case SendInfo():
                self.infos[op.msg] = op
        self.send_times.append(op.t)

    def _add_read(self, op: Read) -> None:
        position = Position(op.topic, op.broker, op.queue, op.offset)
        self.reads += 1
        self.seen.setdefault(op.msg, {})[position] = None
        self.held.setdefault(position, {})[op.msg] = None
        if op.node is not None:
            self.drained.setdefault(op.node, {}).setdefault(position, op.msg)

    def acked_position(self, msg: str) -> Position:
        ok = self.oks[msg]
        return Position(self.invokes[msg].topic, ok.broker, ok.queue, ok.offset)


def check(history: Iterable[Op], *, nodes: Sequence[str], expect_lost_ok: bool = False) -> Report:
    """Check a whole run's history; `nodes` are the ids whose final drain is expected."""
    assert len(set(nodes)) == len(nodes), f"duplicate node ids: {nodes}"
    facts = _Facts()
    for index, op in enumerate(history):
        facts.add(index, op)
    lost = tuple(msg for msg in facts.oks if msg not in facts.seen)
    kept = {msg for held in facts.drained.values() for msg in held.values()}
    vanished = tuple(msg for msg in facts.oks if msg in facts.seen and kept and msg not in kept)
    excused = _excused(facts, lost, kept) if expect_lost_ok else set()
    reuse = _offset_reuse(facts)
    missing, not_drained = _drain_findings(facts, nodes)
    stops = [Stop(op.node, op.pid, op.returncode, op.t, op.log_tail) for op in facts.stops]
    after_loss = [s for s in stops if expect_lost_ok and LOST_COMMITS_ERROR in s.log_tail]
    answers = [_answer(op) for op in facts.hostile if op.status >= 500]
    return Report(
        acknowledged=len(facts.oks),
        failed=len(facts.fails),
        indeterminate=len(facts.invokes) - len(facts.oks) - len(facts.fails),
        reads=facts.reads,
        lost=() if expect_lost_ok else lost,
        vanished=() if expect_lost_ok else vanished,
        lost_allowed=lost + vanished if expect_lost_ok else (),
        reuse_after_loss=tuple(r for r in reuse if len(set(r.msgs) - excused) <= 1),
        unexpected=tuple(msg for msg in facts.seen if msg not in facts.invokes),
        duplicated=tuple(msg for msg, where in facts.seen.items() if len(where) > 1),
        indeterminate_seen=tuple(_indeterminate_seen(facts)),
        failed_seen=tuple(msg for msg in facts.fails if msg in facts.seen),
        offset_reuse=tuple(r for r in reuse if len(set(r.msgs) - excused) > 1),
        ack_mismatch=tuple(m for m in _ack_mismatches(facts) if m.msg not in excused),
        order_violations=tuple(
            v for v in _order_violations(facts) if not {v.earlier, v.later} & excused
        ),
        per_node_missing=tuple(missing),
        nodes_not_drained=tuple(not_drained),
        unexpected_stops=tuple(s for s in stops if s not in after_loss),
        stops_after_loss=tuple(after_loss),
        hostile_requests=len(facts.hostile),
        hostile_4xx=sum(1 for op in facts.hostile if 400 <= op.status < 500),
        hostile_unanswered=sum(1 for op in facts.hostile if op.status == 0),
        hostile_5xx=tuple(a for a in answers if a.code not in UNAVAILABLE_CODES),
        hostile_unavailable=tuple(a for a in answers if a.code in UNAVAILABLE_CODES),
        availability=_availability(facts),
    )


def _answer(op: Hostile) -> HostileAnswer:
    return HostileAnswer(op.case, op.node, op.method, op.path, op.status, op.code, op.sent)


def _excused(facts: _Facts, lost: tuple[str, ...], kept: set[str]) -> set[str]:
    """With an allowed loss, the messages whose findings follow from it alone: the lost,
    and any read once but in no final drain (acknowledged or not)."""
    gone = {msg for msg in facts.seen if msg not in kept} if kept else set()
    return gone | set(lost)


def _indeterminate_seen(facts: _Facts) -> list[str]:
    return [
        msg
        for msg in facts.invokes
        if msg not in facts.oks and msg not in facts.fails and msg in facts.seen
    ]


def _offset_reuse(facts: _Facts) -> list[OffsetReuse]:
    return [
        OffsetReuse(position, tuple(sorted(msgs)))
        for position, msgs in sorted(facts.held.items())
        if len(msgs) > 1
    ]


def _ack_mismatches(facts: _Facts) -> list[AckMismatch]:
    """Acked sends whose acked position never held them, though something was read."""
    found = []
    for msg in facts.oks:
        acked = facts.acked_position(msg)
        there = facts.held.get(acked, {})
        if msg in there or (not there and msg not in facts.seen):
            continue
        read_at = tuple(sorted(facts.seen.get(msg, {})))
        found.append(AckMismatch(msg, acked, read_at, tuple(sorted(there))))
    return found


_OrderGroup = tuple[str, str, str, str, int]  # topic, key, writer, broker, queue


def _order_violations(facts: _Facts) -> list[OrderViolation]:
    groups: dict[_OrderGroup, list[str]] = {}
    for msg, ok in facts.oks.items():
        invoke = facts.invokes[msg]
        if invoke.key is not None:
            group = (invoke.topic, invoke.key, invoke.writer, ok.broker, ok.queue)
            groups.setdefault(group, []).append(msg)
    found: list[OrderViolation] = []
    for group, msgs in groups.items():
        found += _order_in_group(facts, group, msgs)
    return found


def _order_in_group(facts: _Facts, group: _OrderGroup, msgs: list[str]) -> list[OrderViolation]:
    """Sweep in invoke order, keeping the highest offset among sends acked before it.

    `msgs` is in ack order (the order of `facts.oks`), so this costs O(n log n), not a
    comparison of every pair.
    """
    topic, _, _, broker, queue = group
    offsets = _first_offsets(facts, (topic, broker, queue), msgs)
    by_ack = [msg for msg in msgs if msg in offsets]
    acked = 0
    highest: str | None = None
    found = []
    for later in sorted(by_ack, key=facts.invoke_index.__getitem__):
        while acked < len(by_ack) and facts.ok_index[by_ack[acked]] < facts.invoke_index[later]:
            if highest is None or offsets[by_ack[acked]] > offsets[highest]:
                highest = by_ack[acked]
            acked += 1
        if highest is not None and offsets[highest] > offsets[later]:
            found.append(OrderViolation(*group, highest, offsets[highest], later, offsets[later]))
    return found


def _first_offsets(
    facts: _Facts, queue_id: tuple[str, str, int], msgs: list[str]
) -> dict[str, int]:
    """The lowest offset at which each message was read in that queue (if it was)."""
    offsets = {}
    for msg in msgs:
        in_queue = [p.offset for p in facts.seen.get(msg, {}) if p[:3] == queue_id]
        if in_queue:
            offsets[msg] = min(in_queue)
    return offsets


def _drain_findings(facts: _Facts, nodes: Sequence[str]) -> tuple[list[NodeMissing], list[str]]:
    """Positions a node of a broker group lacks while a peer has them; undrained nodes."""
    strangers = [node for node in facts.drained if node not in nodes]
    if strangers:
        raise HistoryError(f"drain reads from nodes not in {list(nodes)}: {strangers}")
    members: dict[str, list[str]] = {}
    for node in nodes:
        for broker in sorted({p.broker for p in facts.drained.get(node, {})}):
            members.setdefault(broker, []).append(node)
    missing = []
    for broker, group in sorted(members.items()):
        missing += _missing_in_group(facts, broker, group)
    return missing, [node for node in nodes if node not in facts.drained]


def _missing_in_group(facts: _Facts, broker: str, group: list[str]) -> list[NodeMissing]:
    union: dict[Position, str] = {}
    for node in group:
        for position, msg in facts.drained[node].items():
            if position.broker == broker:
                union.setdefault(position, msg)
    return [
        NodeMissing(node, position, union[position])
        for node in group
        for position in sorted(union)
        if position not in facts.drained[node]
    ]


def _availability(facts: _Facts) -> Availability:
    acks = sorted(ok.t for ok in facts.oks.values())
    windows = tuple(
        _window(fault, end, acks, facts.last_t) for fault, end in _fault_windows(facts.faults)
    )
    if not facts.send_times:
        return Availability(windows, 0.0)
    edges = [min(facts.send_times), *acks, max(facts.send_times)]
    return Availability(windows, _longest_gap(edges))


def _fault_windows(faults: list[Fault]) -> list[tuple[Fault, float | None]]:
    """Pair each start with the next end of the same (fault, target); unended -> None."""
    open_starts: dict[tuple[str, str], list[Fault]] = {}
    windows: list[tuple[Fault, float | None]] = []
    for op in faults:
        starts = open_starts.setdefault((op.fault, op.target), [])
        if op.phase == "start":
            starts.append(op)
        elif starts:
            windows.append((starts.pop(0), op.t))
        else:
            raise HistoryError(f"fault end without a start: {op.to_json()}")
    windows += [(start, None) for starts in open_starts.values() for start in starts]
    return sorted(windows, key=lambda window: window[0].t)


def _window(start: Fault, end: float | None, acks: list[float], last_t: float) -> FaultWindow:
    """Gaps from the fault's start through its end up to the first ack after the end."""
    stop = last_t if end is None else end
    first = bisect.bisect_right(acks, start.t)
    after = bisect.bisect_right(acks, stop)
    resumed = acks[after] if after < len(acks) else max(last_t, stop)
    edges = [start.t, *acks[first:after], resumed]
    return FaultWindow(
        fault=start.fault,
        target=start.target,
        start=start.t,
        end=end,
        longest_gap_s=_longest_gap(edges),
        time_to_first_ack_s=acks[first] - start.t if first < len(acks) else None,
    )


def _longest_gap(edges: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(edges)), default=0.0)
