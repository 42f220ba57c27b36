"""RaftNodeActor: the pykka shell around one `RaftDriver` (raft/driver.py) and its core.

All of the driver contract (persist before send, held acknowledgements, proposals answered
at commit, compaction, preferred-leader handover) lives in the pure `RaftDriver`, which the
simulator drives too; this actor only turns its messages into driver calls on one thread
and logs role changes. The storage reports `Persisted` from any thread.

It is also where the pure core meets the broker's errors: the driver refuses with Raft's
own values (`raft/outcomes.py`), and every reply handed to it here is wrapped so that they
reach the proposer as `errors.NotLeader` (421) and `errors.Busy` (503) with the fields
those always carried (`broker_error`); the API then names the leader's address.

Owns: the driver. Must not: block, do I/O itself, or `.get()` another actor.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass
from typing import Generic, TypeVar

from dledgermq import errors
from dledgermq.actors.supervisor import FailStopActor, FatalHandler, exit_process
from dledgermq.actors.ticker import Tick
from dledgermq.bridge import ReplyTo
from dledgermq.raft.config import RaftConfig
from dledgermq.raft.core import RaftCore
from dledgermq.raft.driver import DriverIO, PersistRequest, RaftDriver, RaftStatus
from dledgermq.raft.log import RaftLog
from dledgermq.raft.messages import Message
from dledgermq.raft.outcomes import Busy, NotLeader
from dledgermq.raft.types import HardState, Index, NodeId, Role, Term

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = [
    "Inbound",
    "PersistRequest",
    "Persisted",
    "Propose",
    "RaftNodeActor",
    "RaftStatus",
    "Status",
    "Tick",
    "TransferLeadership",
]

# -- messages -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Inbound:
    """A Raft message from a peer, addressed to this node."""

    message: Message


@dataclass(frozen=True, slots=True)
class Propose:
    """Replicate `payload`; `reply.ok(index)` once committed, else NotLeader or Busy."""

    payload: object
    reply: ReplyTo[Index]


@dataclass(frozen=True, slots=True)
class Persisted:
    """From the storage: every request up to `seq` is durable; the durable log ends at
    `(last_term, last_index)`. May be told from any thread."""

    seq: int
    last_term: Term
    last_index: Index


@dataclass(frozen=True, slots=True)
class TransferLeadership:
    """Hand leadership to `to`; `reply.ok(True)` when the transfer started, else NotLeader."""

    to: NodeId
    reply: ReplyTo[bool]


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of the node (status pages, tests)."""

    reply: ReplyTo[RaftStatus]


class RaftNodeActor(FailStopActor):
    def __init__(
        self,
        config: RaftConfig,
        io: DriverIO,
        *,
        hard_state: HardState,
        log: RaftLog,
        rng: random.Random | None = None,
        on_fatal: FatalHandler = exit_process,
    ) -> None:
        """Start from the durable `hard_state` and `log` (everything in it is durable).
        `io` is called on this actor's thread; its storage answers with `Persisted`."""
        super().__init__(on_fatal)
        core = RaftCore(config, rng or random.Random(), hard_state=hard_state, log=log)
        on_role_change = io.on_role_change

        def role_changed(role: Role, term: Term, leader: NodeId | None) -> None:
            _log_role(core.node_id, role, term, leader)
            if on_role_change is not None:
                on_role_change(role, term, leader)

        self._driver = RaftDriver(
            core,
            dataclasses.replace(io, on_role_change=role_changed),
            pending_proposals_max=config.pending_proposals_max,
        )

    def on_receive(self, message: object) -> None:
        driver = self._driver
        match message:
            case Tick():
                driver.tick()
            case Inbound(raft_message):
                driver.step(raft_message)
            case Propose(payload, reply):
                # While more messages wait, leave the drain to the next one (every other
                # input drains): a burst of proposals is persisted and sent as one.
                driver.propose(payload, BrokerReply(reply), drain=self.actor_inbox.empty())
            case Persisted(seq, last_term, last_index):
                driver.persisted(seq, last_term, last_index)
            case TransferLeadership(to, reply):
                driver.transfer(to, BrokerReply(reply))
            case Status(reply):
                driver.drain()
                reply.ok(driver.status())
            case _:
                raise AssertionError(f"unexpected message {message!r}")


def broker_error(error: BaseException) -> BaseException:
    """The broker's error for a refusal of the driver (others pass unchanged): the same
    code, status, message and details the driver's answers always had on the wire."""
    match error:
        case NotLeader(leader_id=leader, term=term, reason=reason):
            return errors.NotLeader(str(error), leader=leader, term=term, reason=reason.value)
        case Busy(pending=pending, reason=reason):
            details: dict[str, object] = {} if pending is None else {"pending": pending}
            if reason is not None:
                details["reason"] = reason.value
            return errors.Busy(str(error), **details)
    return error


class BrokerReply(Generic[T]):
    """A proposer's reply as the driver sees it: refusals are mapped by `broker_error`."""

    __slots__ = ("_reply",)

    def __init__(self, reply: ReplyTo[T]) -> None:
        self._reply = reply

    def ok(self, value: T) -> None:
        self._reply.ok(value)

    def fail(self, error: BaseException) -> None:
        self._reply.fail(broker_error(error))


def _log_role(node_id: NodeId, role: Role, term: Term, leader: NodeId | None) -> None:
    log.info("raft node %s: %s in term %s, leader %s", node_id, role.value, term, leader)
