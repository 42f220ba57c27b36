"""What a chaos run records: one `Op` per event, a `History` of them, and a thread-safe `Recorder`.

Goal: a history that the checker (`chaos/checker.py`) can judge after the run, and that a
person can read line by line (JSONL, one op a line) when a check fails.

Ops (Jepsen's invoke / ok / fail / info, plus reads and faults):

- `SendInvoke`: a producer is about to send `msg` (`writer-seq`, unique and traceable);
  `key` is the sharding key of an ordered topic, else None.
- `SendOk`: the broker acknowledged `msg` at (broker, queue, offset).
- `SendFail`: a *definite* failure: the message was not stored, and never will be.
- `SendInfo`: an indeterminate outcome (timeout, connection lost, leadership lost while the
  entry was pending): the message may or may not have been stored.
- `Read`: a delivery of `msg` at (topic, broker, queue, offset); `node` is None for a
  consumer going through the client, and set for the final drain, which reads every queue
  from every node.
- `Fault`: the start or end of a fault window (`kill n2`, `pause n1`, `partition n1|n2,n3`).
- `Hostile`: one request of the hostile writer (`chaos/hostile.py`) and the status it got
  (0: no answer). Its messages are not sends: the checker counts the answers, and any of
  them read from an honest topic is `unexpected` like any message never invoked.
- `NodeStop`: a node process that exited although the nemesis did not kill it (the
  cluster saw its exit; `log_tail` holds its last words).

The fail/info rule: an error is a `SendFail` only when the client can prove nothing was
stored, because the checker treats a failed message that is read later as a bug
(`failed_seen`). `classify_send_error` holds that rule: only rejections that happen before
any append (validation, unknown topic or queue, no route, a full disk: the broker checks
its high-water mark before it appends or proposes) are definite. NOT_LEADER is not:
a leader that loses its term fails every pending proposal with NOT_LEADER, and the entry may
still commit under the next leader (see `dledgermq/actors/raft_node.py`). SLAVE_NOT_AVAILABLE
is stored on the master. TIMEOUT, BUSY, UNAVAILABLE and unknown codes are info.

Order: the position of an op in the history is its real-time order. The `Recorder` reads
the clock and appends under one lock, so `t` never decreases along the history.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

# Error codes (dledgermq/errors.py) that a broker returns before anything is appended,
# plus NOT_SENT: the client never wrote the request to a socket.
DEFINITE_SEND_ERRORS = frozenset(
    {
        "NOT_SENT",
        "BAD_REQUEST",
        "INVALID_TOPIC",
        "INVALID_MESSAGE",
        "MESSAGE_TOO_LARGE",
        "BATCH_TOO_LARGE",
        "TOPIC_NOT_FOUND",
        "QUEUE_NOT_FOUND",
        "NO_PERMISSION",
        "NO_ROUTE",
        "BROKER_NOT_FOUND",
        "DISK_FULL",
    }
)


def classify_send_error(code: str) -> Literal["fail", "info"]:
    """Whether a send error is definite ("fail": nothing stored) or indeterminate ("info")."""
    return "fail" if code in DEFINITE_SEND_ERRORS else "info"


class HistoryError(ValueError):
    """A history that is not well formed (a harness bug, not a finding about the system)."""


class _JsonOp:
    """JSON mapping shared by every op: the `HEAD` keys first, then the dataclass fields."""

    __slots__ = ()
    HEAD: ClassVar[Mapping[str, str]]

    def to_json(self) -> dict[str, Any]:
        """The op as a JSON-ready dict (one line of the history file)."""
        return {**self.HEAD, **{f.name: getattr(self, f.name) for f in fields(self)}}  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild the op; missing fields or a foreign head raise HistoryError."""
        for name, value in cls.HEAD.items():
            if data.get(name) != value:
                raise HistoryError(f"{name}={data.get(name)!r}, expected {value!r}: {data}")
        try:
            values = {f.name: data[f.name] for f in fields(cls)}  # type: ignore[arg-type]
        except KeyError as missing:
            raise HistoryError(f"missing field {missing} in {data}") from None
        values["t"] = float(values["t"])
        return cls(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class SendInvoke(_JsonOp):
    HEAD: ClassVar[Mapping[str, str]] = {"type": "invoke", "op": "send"}
    writer: str
    seq: int
    msg: str
    topic: str
    key: str | None = None
    t: float = 0.0

    @classmethod
    def new(cls, writer: str, seq: int, topic: str, key: str | None = None) -> Self:
        """The invoke of writer's `seq`-th message; the body id is `writer-seq`."""
        return cls(writer=writer, seq=seq, msg=f"{writer}-{seq}", topic=topic, key=key)


@dataclass(frozen=True, slots=True, kw_only=True)
class SendOk(_JsonOp):
    HEAD: ClassVar[Mapping[str, str]] = {"type": "ok", "op": "send"}
    msg: str
    broker: str
    queue: int
    offset: int
    msg_id: str = ""
    t: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SendFail(_JsonOp):
    HEAD: ClassVar[Mapping[str, str]] = {"type": "fail", "op": "send"}
    msg: str
    error: str
    t: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SendInfo(_JsonOp):
    HEAD: ClassVar[Mapping[str, str]] = {"type": "info", "op": "send"}
    msg: str
    error: str
    t: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Read(_JsonOp):
    HEAD: ClassVar[Mapping[str, str]] = {"type": "read"}
    node: str | None
    group: str | None
    topic: str
    broker: str
    queue: int
    offset: int
    msg: str
    t: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault(_JsonOp):
    HEAD: ClassVar[Mapping[str, str]] = {"type": "fault"}
    fault: str
    target: str
    phase: Literal["start", "end"]
    t: float = 0.0

    def __post_init__(self) -> None:
        if self.phase not in ("start", "end"):
            raise HistoryError(f"fault phase must be start or end, not {self.phase!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Hostile(_JsonOp):
    HEAD: ClassVar[Mapping[str, str]] = {"type": "hostile"}
    case: str
    node: str
    method: str
    path: str
    sent: str  # the request body as text, cut short
    status: int  # the HTTP status; 0 when no answer came (refused, reset, timed out)
    code: str  # the error body's code, the exception's name without an answer, else ""
    t: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStop(_JsonOp):
    HEAD: ClassVar[Mapping[str, str]] = {"type": "stop"}
    node: str
    pid: int
    returncode: int | None
    log_tail: str
    t: float = 0.0


Op = SendInvoke | SendOk | SendFail | SendInfo | Read | Fault | Hostile | NodeStop

_OP_BY_TYPE: dict[str, type[Op]] = {
    cls.HEAD["type"]: cls
    for cls in (SendInvoke, SendOk, SendFail, SendInfo, Read, Fault, Hostile, NodeStop)
}


def op_from_json(data: Mapping[str, Any]) -> Op:
    """Rebuild any op from its JSON dict, chosen by its "type"."""
    cls = _OP_BY_TYPE.get(data.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise HistoryError(f"unknown op type: {data}")
    return cls.from_json(data)


@dataclass
class History:
    """The ops of one run in real-time order; dumps to and loads from JSONL."""

    ops: list[Op] = field(default_factory=list)

    def append(self, op: Op) -> None:
        self.ops.append(op)

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def dump(self, path: Path | str) -> None:
        """Write one JSON object per line (readable with `jq`, appendable, greppable)."""
        with Path(path).open("w", encoding="utf-8") as out:
            for op in self.ops:
                out.write(json.dumps(op.to_json(), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: Path | str) -> History:
        """Read a JSONL history; blank lines are skipped, a bad line raises HistoryError."""
        ops: list[Op] = []
        with Path(path).open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    ops.append(_parse_line(line, f"{path}:{number}"))
        return cls(ops)


def _parse_line(line: str, where: str) -> Op:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise HistoryError(f"{where}: not JSON: {error}") from None
    if not isinstance(data, dict):
        raise HistoryError(f"{where}: not a JSON object")
    try:
        return op_from_json(data)
    except HistoryError as error:
        raise HistoryError(f"{where}: {error}") from None


class Recorder:
    """Thread-safe history for producer, consumer and nemesis threads of one run.

    The clock is injected (tests pass a counter) and read under the same lock as the
    append, so `t` never decreases along the history and list order is real-time order.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._history = History()

    def record(self, op: Op) -> Op:
        """Stamp `op` with the clock (its own `t` is ignored), append it, and return it."""
        with self._lock:
            stamped = replace(op, t=self._clock())
            self._history.append(stamped)
        return stamped

    def snapshot(self) -> History:
        """A copy of the history so far (safe to check or dump while threads still record)."""
        with self._lock:
            return History(list(self._history.ops))

    def __len__(self) -> int:
        with self._lock:
            return len(self._history)
