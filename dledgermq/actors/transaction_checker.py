"""TransactionCheckerActor: checks back half messages nobody ended (writer only).

Every `scan_interval_ms` the group's writer asks the ReputActor which pending transactions
are due (`transactions.due_round` over the replicated `TransactionTable`): those past
their check immunity or interval are *checked*, those checked `max_check_times` already
are *rolled back* (and logged). One entry records both (`%SYS%TXN`); only once it is
committed are the checks handed to live producers of each group, through their long polls
(`broker/check_channels.py`). A producer answers with the normal end-transaction call.
So the check count and every rollback survive a failover, and the actor keeps nothing
that must: a new writer reads the table from its replicated broker state.

One round at a time; a new writer first waits until it has dispatched everything its log
held when it took over (its predecessor's last checks and ends may be in it).

Owns: the producers' channels (soft state: they poll again) and its round.
Must not: read files or write the log itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pykka

from dledgermq.actors.delay_scheduler import SubmitEntry
from dledgermq.actors.published import Published, ReplicaRole, Watermarks
from dledgermq.actors.reput import Read
from dledgermq.actors.supervisor import (
    AnswerAsMessage,
    FailStopActor,
    FatalHandler,
    exit_process,
    tell,
)
from dledgermq.actors.ticker import Tick
from dledgermq.bridge import ReplyTo
from dledgermq.broker.check_channels import ChannelOptions, CheckChannels
from dledgermq.broker.queries import DueTransactions, TransactionsDue
from dledgermq.broker.transactions import (
    BY_GONE,
    BY_MAX_CHECKS,
    ROLLBACK,
    CheckPolicy,
    HalfTxn,
    check_draft,
    end_draft,
)
from dledgermq.broker.writer_rounds import WriterRounds
from dledgermq.clock import SYSTEM_CLOCK, Clock
from dledgermq.errors import Busy, NotLeader
from dledgermq.store.record import MessageDraft, Record

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CheckerOptions:
    policy: CheckPolicy = field(default_factory=CheckPolicy)
    scan_interval_ms: int = 500
    per_round_max: int = 256  # transactions checked or rolled back per round (one entry)
    channels: ChannelOptions = field(default_factory=ChannelOptions)


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """One check-back for a producer: the transaction and its half message."""

    txn: HalfTxn  # a copy, `checks` counting this one
    record: Record


@dataclass(frozen=True, slots=True)
class PollChecks:
    """A producer's long poll: answered with check requests, or [] at `deadline_ms`
    (monotonic)."""

    group: str
    client_id: str
    deadline_ms: int
    reply: ReplyTo[list[CheckRequest]]


@dataclass(frozen=True, slots=True)
class ProducersView:
    group: str
    reply: ReplyTo[list[str]]


@dataclass(frozen=True, slots=True)
class _RoundOver:
    found: TransactionsDue | None
    error: BaseException | None


class TransactionCheckerActor(FailStopActor):
    def __init__(  # noqa: PLR0913 - the collaborators node/ wires in
        self,
        *,
        reput: pykka.ActorRef[Any],
        submit: SubmitEntry,
        role: Published[ReplicaRole],
        marks: Watermarks,
        options: CheckerOptions,
        on_fatal: FatalHandler = exit_process,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(on_fatal)
        self._clock = clock
        self._reput = reput
        self._submit = submit
        self._role = role
        self._marks = marks
        self._options = options
        self._channels: CheckChannels[ReplyTo[list[CheckRequest]], CheckRequest] = CheckChannels(
            options.channels
        )
        self._rounds = WriterRounds(options.scan_interval_ms)
        self._now_ms = 0  # monotonic, from the last tick

    def on_receive(self, message: object) -> None:
        match message:
            case Tick(now_ms):
                self._now_ms = now_ms
                self._answer(self._channels.expire(now_ms))
                self._tick(now_ms)
            case PollChecks(group, client_id, deadline_ms, reply):
                self._poll(group, client_id, deadline_ms, reply)
            case ProducersView(group, reply):
                reply.ok(self._channels.live(group, self._now_ms))
            case TransactionsDue() as found:
                self._append(found)
            case _RoundOver(found, error):
                self._rounds.done()
                if error is not None:
                    log.warning("transaction check round failed (retried): %s", error)
                elif found is not None:
                    self._hand_out(found)
            case _:
                raise AssertionError(f"unexpected message {message!r}")

    def _poll(
        self, group: str, client_id: str, deadline_ms: int, reply: ReplyTo[list[CheckRequest]]
    ) -> None:
        if not self._role.value.writable:
            reply.fail(NotLeader("this node no longer takes writes"))
            return
        try:
            answers = self._channels.poll(group, client_id, reply, deadline_ms, self._now_ms)
        except Busy as error:
            reply.fail(error)
            return
        self._answer(answers)

    def _tick(self, now_ms: int) -> None:
        writable = self._role.value.writable
        if not writable:
            for waiter in self._channels.drop_all():  # Their producers go to the new writer.
                waiter.fail(NotLeader("this node no longer takes writes"))
        marks = self._marks
        if not self._rounds.start(
            now_ms,
            writable=writable,
            written=marks.written.value,
            dispatched=marks.dispatched.value,
        ):
            return
        options = self._options
        query = DueTransactions(options.policy, self._clock.wall_ms(), options.per_round_max)
        reply = AnswerAsMessage(
            self.actor_ref, lambda found, error: _RoundOver(None, error) if error else found
        )
        tell(self._reput, Read(query, reply))

    def _append(self, found: TransactionsDue) -> None:
        now_ms = self._clock.wall_ms()
        ends = [(t.offset, t.transaction_id, ROLLBACK, BY_MAX_CHECKS) for t in found.expire]
        ends += [(t.offset, t.transaction_id, ROLLBACK, BY_GONE) for t, r in found.check if not r]
        checked = [t.offset for t, record in found.check if record is not None]
        drafts: list[MessageDraft] = []
        if ends:
            drafts.append(end_draft(ends, now_ms))
        if checked:
            drafts.append(check_draft(checked, now_ms))
        if not drafts:
            self._rounds.done()
            return
        reply = AnswerAsMessage(self.actor_ref, lambda _value, error: _RoundOver(found, error))
        try:
            self._submit(tuple(drafts), reply)
        except pykka.ActorDeadError:  # The node is stopping.
            self._rounds.done()

    def _hand_out(self, found: TransactionsDue) -> None:
        """The round's entry is committed: roll-backs are final, checks go to producers."""
        for txn in found.expire:
            log.warning(
                "transaction %s (group %s, topic %s, half message at %d) rolled back: "
                "no outcome after %d check-backs",
                txn.transaction_id,
                txn.producer_group,
                txn.topic,
                txn.offset,
                txn.checks,
            )
        for txn, record in found.check:
            if record is None:
                log.warning(
                    "transaction %s rolled back: its half message at %d was removed by retention",
                    txn.transaction_id,
                    txn.offset,
                )
                continue
            request = CheckRequest(txn, record)
            client_id, answers = self._channels.offer(
                txn.producer_group, txn.offset, request, self._now_ms
            )
            if client_id is None:
                log.info(
                    "no live producer of group %s to check transaction %s (check %d)",
                    txn.producer_group,
                    txn.transaction_id,
                    txn.checks,
                )
            self._answer(answers)

    @staticmethod
    def _answer(answers: list[tuple[ReplyTo[list[CheckRequest]], list[CheckRequest]]]) -> None:
        for reply, checks in answers:
            reply.ok(checks)
