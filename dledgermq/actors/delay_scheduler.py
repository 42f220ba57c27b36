"""DelaySchedulerActor: delivers due delayed messages to their real topics (writer only).

Every `interval_ms` the group's writer asks the ReputActor for scheduled messages that are
due (the `DueDelayed` query, `broker/delay_due.py`, from the committed progress on) and
appends one entry holding them, re-addressed to their real topics (`broker/delay.py`), *and* the new
progress (`%SYS%DELAY`). Progress and delivery commit together, so a failover neither
loses a due message nor delivers one twice, and the scheduler keeps no state that must
survive: a new leader reads the progress from its replicated broker state.

One round at a time (the next waits until the entry was committed and dispatched, which
is when the progress it carries is applied). A new writer first waits until it has
dispatched everything its log held when it took over: entries of an earlier term that it
commits may carry deliveries its predecessor made.

Owns: nothing but its round. Must not: read files or write the log itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

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
from dledgermq.broker.delay import draft_of, release
from dledgermq.broker.delay_due import DueMessage
from dledgermq.broker.queries import DueDelayed
from dledgermq.broker.retry import DelayLevels
from dledgermq.broker.state import delay_progress_draft
from dledgermq.broker.writer_rounds import WriterRounds
from dledgermq.clock import SYSTEM_CLOCK, Clock
from dledgermq.store.record import MessageDraft

log = logging.getLogger(__name__)
# How an entry is appended: the Raft node's proposal or the writer's append (node.py).
SubmitEntry = Callable[[tuple[MessageDraft, ...], ReplyTo[Any]], None]


@dataclass(frozen=True, slots=True)
class DelayOptions:
    levels: DelayLevels
    interval_ms: int = 100
    per_queue_max: int = 64  # due messages read per schedule queue and round
    entry_bytes_max: int = 1024 * 1024  # bodies per delivery entry (at least one message)


@dataclass(frozen=True, slots=True)
class _Due:
    messages: list[DueMessage]


@dataclass(frozen=True, slots=True)
class _RoundOver:
    error: BaseException | None


class DelaySchedulerActor(FailStopActor):
    def __init__(  # noqa: PLR0913 - the collaborators node/ wires in
        self,
        *,
        reput: pykka.ActorRef[Any],
        submit: SubmitEntry,
        role: Published[ReplicaRole],
        marks: Watermarks,
        options: DelayOptions,
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
        self._rounds = WriterRounds(options.interval_ms)

    def on_receive(self, message: object) -> None:
        match message:
            case Tick(now_ms):
                self._tick(now_ms)
            case _Due(messages):
                self._deliver(messages)
            case _RoundOver(error):
                self._rounds.done()
                if error is not None:
                    log.warning("delay delivery round failed (retried): %s", error)
            case _:
                raise AssertionError(f"unexpected message {message!r}")

    def _tick(self, now_ms: int) -> None:
        marks = self._marks
        writable, written, dispatched = (
            self._role.value.writable,
            marks.written.value,
            marks.dispatched.value,
        )
        if not self._rounds.start(
            now_ms, writable=writable, written=written, dispatched=dispatched
        ):
            return
        query = DueDelayed(self._clock.wall_ms(), self._options.per_queue_max)
        reply = AnswerAsMessage(
            self.actor_ref, lambda due, error: _RoundOver(error) if error else _Due(due)
        )
        tell(self._reput, Read(query, reply))

    def _deliver(self, due: list[DueMessage]) -> None:
        if not due:
            self._rounds.done()
            return
        now_ms = self._clock.wall_ms()
        drafts: list[MessageDraft] = []
        progress: dict[int, int] = {}
        size = 0
        for message in due:
            if size >= self._options.entry_bytes_max:
                break  # The rest come in the next round.
            if message.record is not None:  # None: retention removed it; passed over.
                draft = release(draft_of(message.record), self._options.levels, now_ms)
                drafts.append(draft)
                size += len(draft.body)
            progress[message.queue_id] = message.queue_offset + 1
        drafts.append(delay_progress_draft(progress, now_ms))
        reply = AnswerAsMessage(self.actor_ref, lambda _value, error: _RoundOver(error))
        try:
            self._submit(tuple(drafts), reply)
        except pykka.ActorDeadError:  # The node is stopping.
            self._rounds.done()
