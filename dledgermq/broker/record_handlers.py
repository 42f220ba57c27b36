"""Record handlers: what the broker does with the records it interprets, one kind each.

Dispatch walks the committed log in order and puts every user message into its
ConsumeQueue and the index. Some records mean more, and each such kind has one handler,
registered at composition (node.py), the way RocketMQ's `CommitLogDispatcher` list works:

- `%SYS%…` records carry broker state through the log (topic configs, offsets, delay
  progress, transaction ops, the group's permission): the **system** handler applies them;
  they go into no queue.
- **Built-in topics** the broker writes itself (the delay schedule, transaction half
  messages) have a config of their own and a handler that says how a record is queued.
- **Gates** are records marked by a flag bit (a transaction's commit copy), admitted to
  their topic's queue or declared void.

Adding a kind of record (POP's state is next) means one handler here and one line where
handlers are composed, never an edit of the dispatch loop. Handlers run on the dispatch
owner's thread, on every replica, in log order: they must be deterministic functions of
the records (no clock, no I/O). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

from dledgermq.broker.topics import TopicConfig
from dledgermq.store.record import RecordMeta

if TYPE_CHECKING:  # state.py registers a handler of its own: no import at run time.
    from dledgermq.broker.state import BrokerState


class Placement(NamedTuple):
    """How a record of a built-in topic is queued: the value in its ConsumeQueue unit's
    tag slot, and whether its keys and unique key go into the index."""

    tag: int
    indexed: bool


class Applying(Protocol):
    """What a handler may touch while a record is applied: the replicated broker state,
    and the few consequences the dispatch owner carries out."""

    @property
    def state(self) -> BrokerState: ...

    def topic_changed(self, topic: str, at_offset: int) -> None:
        """A topic's config was put or deleted (routes change; a re-created topic starts
        with empty queues)."""

    def broker_changed(self) -> None:
        """The group's own permission changed (it is registered with the topic table)."""

    def passed_over(self, commitlog_offset: int, topic: str, reason: str) -> None:
        """A record that cannot be interpreted: kept in the log, counted, never fatal."""


class SystemHandler(Protocol):
    def apply(self, record: RecordMeta, target: Applying) -> None:
        """Apply one `%SYS%` record to the broker state."""


class TopicHandler(Protocol):
    def place(self, record: RecordMeta, target: Applying) -> Placement:
        """Apply a record of the handler's built-in topic and say how it is queued."""


class Gate(Protocol):
    def admit(self, record: RecordMeta, target: Applying) -> bool:
        """False: the record is void (it stays in the log and is never delivered)."""


@dataclass(frozen=True, slots=True)
class BuiltinTopic:
    config: TopicConfig
    handler: TopicHandler


@dataclass(frozen=True, slots=True)
class RecordHandlers:
    """Every record handler of a broker, as composed at start."""

    system: SystemHandler
    builtin: Mapping[str, BuiltinTopic] = field(default_factory=dict)
    gates: Mapping[int, Gate] = field(default_factory=dict)  # flag bit -> gate

    @property
    def gated_flags(self) -> int:
        mask = 0
        for flag in self.gates:
            mask |= flag
        return mask
