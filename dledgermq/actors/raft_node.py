"""RaftNodeActor: the pykka shell around one `RaftDriver` (raft/driver.py) and its core.

All of the driver contract (persist before send, held acknowledgements, proposals answered
at commit, compaction, preferred-leader handover) lives in the pure `RaftDriver`, which the
simulator drives too; this actor only turns its messages into driver calls on one thread
and logs role changes. The storage reports `Persisted` from any thread.

Owns: the driver. Must not: block, do I/O itself, or `.get()` another actor.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass

from dledgermq.actors.supervisor import FailStopActor, FatalHandler, exit_process
from dledgermq.actors.ticker import Tick
from dledgermq.bridge import ReplyTo
from dledgermq.raft.config import RaftConfig
from dledgermq.raft.core import RaftCore
from dledgermq.raft.driver import DriverIO, PersistRequest, RaftDriver, RaftStatus
from dledgermq.raft.log import RaftLog
from dledgermq.raft.messages import Message
from dledgermq.raft.types import HardState, Index, NodeId, Role, Term

log = logging.getLogger(__name__)

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
                driver.propose(payload, reply, drain=self.actor_inbox.empty())
            case Persisted(seq, last_term, last_index):
                driver.persisted(seq, last_term, last_index)
            case TransferLeadership(to, reply):
                driver.transfer(to, reply)
            case Status(reply):
                driver.drain()
                reply.ok(driver.status())
            case _:
                raise AssertionError(f"unexpected message {message!r}")


def _log_role(node_id: NodeId, role: Role, term: Term, leader: NodeId | None) -> None:
    log.info("raft node %s: %s in term %s, leader %s", node_id, role.value, term, leader)
