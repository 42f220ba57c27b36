"""ReputActor: owns the Dispatcher (ConsumeQueues, IndexStore, broker state) and long polls.

Dispatches only below the confirm offset, the one seam between replication and the store
(DESIGN.md §5 rule 3), answers producers once their entry is dispatched (final queue
offsets), wakes held pulls, answers reads (typed queries, `broker/queries.py`: no code
of another actor runs here), and checkpoints once the CommitLog is durable up
to the dispatched offset.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pykka

from dledgermq.actors.file_syncer import SyncFiles
from dledgermq.actors.flusher import Flush
from dledgermq.actors.published import Published, Watermarks
from dledgermq.actors.supervisor import FailStopActor, FatalHandler, exit_process, tell
from dledgermq.actors.ticker import Tick
from dledgermq.bridge import ReplyTo
from dledgermq.broker import store_reads
from dledgermq.broker.dispatch import Dispatcher, ReplicatedEntry, WrittenEntry
from dledgermq.broker.filter import TagFilter
from dledgermq.broker.long_poll import LongPolls
from dledgermq.broker.queries import StoreQuery, answer
from dledgermq.broker.store_reads import PullResult
from dledgermq.broker.topics import PERM_READ_WRITE, TopicConfig
from dledgermq.errors import MQError
from dledgermq.store.checkpoint import Checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Appended:
    """An entry starting at start_offset was written; answer `reply` once dispatched.

    `entry` is what the writer encoded, so dispatch need not read it back from the log.
    """

    start_offset: int
    reply: ReplyTo[Any]
    entry: WrittenEntry | None = None


@dataclass(frozen=True, slots=True)
class Confirm:
    """Everything below `offset` may be shown to consumers; `entries` are some of the
    newly committed ones, in memory (a follower's), so dispatch need not read them back."""

    offset: int
    entries: tuple[ReplicatedEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class PullRequest:
    topic: str
    queue_id: int
    offset: int
    max_messages: int
    tags: TagFilter
    deadline_ms: int  # Monotonic; hold the pull until then if the queue has nothing new.


@dataclass(frozen=True, slots=True)
class Pull:
    request: PullRequest
    reply: ReplyTo[PullResult]


@dataclass(frozen=True, slots=True)
class Read:
    """A read of the store (admin and lookup paths, the scheduler's and the checker's
    rounds), answered on the owner's thread: `reply.ok(answer)` or `reply.fail(MQError)`."""

    query: StoreQuery[Any]
    reply: ReplyTo[Any]


@dataclass(frozen=True, slots=True)
class DeleteBefore:
    offset: int


@dataclass(frozen=True, slots=True)
class SaveCheckpoint:
    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class ContinueDispatch:
    pass


@dataclass(frozen=True, slots=True)
class ReleaseHeldPulls:
    """Answer every held pull now (the HTTP server is stopping)."""


@dataclass(frozen=True, slots=True)
class ReputOptions:
    checkpoint_interval_ms: int
    long_polls_max: int


class ReputActor(FailStopActor):
    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        flusher: pykka.ActorRef[Any] | None,
        published: ReputPublished,
        options: ReputOptions,
        on_fatal: FatalHandler = exit_process,
        file_syncer: pykka.ActorRef[Any] | None = None,
    ) -> None:
        super().__init__(on_fatal)
        self._dispatcher = dispatcher
        self._flusher = flusher
        self._file_syncer = file_syncer
        self._published = published
        self._options = options
        self._confirm = dispatcher.dispatched_offset
        self._pending: dict[int, ReplyTo[Any]] = {}
        self._written: dict[int, WrittenEntry | ReplicatedEntry] = {}
        self._polls: LongPolls[Pull] = LongPolls(options.long_polls_max)
        self._now_ms = 0
        self._last_checkpoint_ms = 0
        self._checkpointed = dispatcher.dispatched_offset
        published.marks.checkpointed.value = dispatcher.checkpointed_offset
        published.publish(dispatcher)

    def on_receive(self, message: object) -> None:
        match message:
            case Appended() as appended:
                self._appended(appended)
            case Confirm() as confirm:
                self._confirmed(confirm)
            case ContinueDispatch():
                self._dispatch()
            case ReleaseHeldPulls():
                self._release_held_pulls()
            case Pull() as pull:
                self._pull(pull, hold=True)
            case Read(query, reply):
                self._read(query, reply)
            case Tick(now_ms):
                self._tick(now_ms)
            case SaveCheckpoint(checkpoint):
                self._dispatcher.save_checkpoint(checkpoint)
                self._published.marks.checkpointed.value = checkpoint.dispatched_offset
            case DeleteBefore(offset):
                self._dispatcher.delete_before(offset)
            case _:
                raise AssertionError(f"unexpected message {message!r}")

    def _appended(self, appended: Appended) -> None:
        assert appended.start_offset >= self._dispatcher.dispatched_offset
        self._pending[appended.start_offset] = appended.reply
        if appended.entry is not None:
            self._written[appended.entry.before] = appended.entry

    def _confirmed(self, confirm: Confirm) -> None:
        for entry in confirm.entries:
            if entry.before >= self._dispatcher.dispatched_offset:
                self._written[entry.before] = entry
        if confirm.offset > self._confirm:
            self._confirm = confirm.offset
            self._dispatch()

    def _dispatch(self) -> None:
        batch = self._dispatcher.dispatch_upto(self._confirm, self._written)
        # Publish before answering, so a client that saw its topic created can use it.
        if batch.topics_changed:
            self._published.publish(self._dispatcher)
        else:
            self._published.marks.dispatched.value = self._dispatcher.dispatched_offset
        for entry in batch.entries:
            reply = self._pending.pop(entry.start_offset, None)
            if reply is not None:
                reply.ok(entry.messages)
        for pull in self._polls.take(batch.touched):
            self._pull(pull, hold=False)
        if self._dispatcher.dispatched_offset < self._confirm:
            tell(self.actor_ref, ContinueDispatch())  # Let pulls and reads in between.

    def _pull(self, pull: Pull, *, hold: bool) -> None:
        request = pull.request
        try:
            result = store_reads.pull(
                self._dispatcher,
                request.topic,
                request.queue_id,
                request.offset,
                request.max_messages,
                request.tags,
            )
        except MQError as exc:
            pull.reply.fail(exc)
            return
        caught_up = not result.messages and result.next_offset == result.max_offset
        if hold and caught_up and request.deadline_ms > self._now_ms:
            key = (request.topic, request.queue_id)
            if self._polls.hold(key, pull, request.deadline_ms):
                return
        pull.reply.ok(result)

    def _release_held_pulls(self) -> None:
        for pull in self._polls.expire(2**62):
            self._pull(pull, hold=False)

    def _read(self, query: StoreQuery[Any], reply: ReplyTo[Any]) -> None:
        try:
            value = answer(self._dispatcher, query)
        except MQError as exc:
            reply.fail(exc)
            return
        reply.ok(value)

    def _tick(self, now_ms: int) -> None:
        self._now_ms = now_ms
        for pull in self._polls.expire(now_ms):
            self._pull(pull, hold=False)
        due = now_ms - self._last_checkpoint_ms >= self._options.checkpoint_interval_ms
        if due and self._dispatcher.dispatched_offset > self._checkpointed:
            self._last_checkpoint_ms = now_ms
            self._begin_checkpoint()

    def _begin_checkpoint(self) -> None:
        """fsync the queues (on the file syncer's thread if there is one), then save the
        checkpoint once the CommitLog is durable below it."""
        checkpoint, pending = self._dispatcher.prepare_checkpoint()
        self._checkpointed = checkpoint.dispatched_offset
        me, flusher = self.actor_ref, self._flusher
        if flusher is None:
            pending.run()
            self._dispatcher.save_checkpoint(checkpoint)
            return

        def once_synced() -> None:  # On the file syncer's thread.
            save = partial(tell, me, SaveCheckpoint(checkpoint))
            tell(flusher, Flush(checkpoint.dispatched_offset, save))

        if self._file_syncer is None:
            pending.run()
            once_synced()
        else:
            tell(self._file_syncer, SyncFiles(pending, once_synced))

    def on_stop(self) -> None:
        checkpoint = self._dispatcher.flush()
        if checkpoint.dispatched_offset <= self._published.marks.durable:
            self._dispatcher.save_checkpoint(checkpoint)
        self._dispatcher.close()


class ReputPublished:
    """What the ReputActor publishes for the API: topic table, the broker group's
    permission (write-disable) and watermarks; `on_topics_changed` fires on a change of
    either of the first two (the NameServer registration carries both)."""

    def __init__(self, marks: Watermarks) -> None:
        self.topics: Published[dict[str, TopicConfig]] = Published({})
        self.broker_perm: Published[int] = Published(PERM_READ_WRITE)
        self.marks = marks
        self.on_topics_changed: Callable[[], None] = lambda: None

    def publish(self, dispatcher: Dispatcher) -> None:
        self.topics.value = dict(dispatcher.state.topics)
        self.broker_perm.value = dispatcher.state.perm
        self.marks.dispatched.value = dispatcher.dispatched_offset
        self.on_topics_changed()
