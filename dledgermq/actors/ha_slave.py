"""HASlaveActor: follows the master (RocketMQ's HAClient as an actor).

Reports where the local CommitLog ends (on start, after a refused push, and whenever
nothing was stored for a report interval), hands every push of the current session to the
CommitLogWriter (`AppendReplicated`: the writer checks that it continues the log exactly),
acknowledges what got stored, and confirms it on the ReputActor, so a slave dispatches
everything it holds and serves reads of it.

Owns: the `SlaveStream` (session, pending pushes, when to report). Must not: write the
log itself, block, or fail on what a master sends: a push that does not fit is refused by
the writer with nothing written, and the slave reports again under a new session.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pykka

from dledgermq.actors.commitlog_writer import AppendReplicated
from dledgermq.actors.ha_master import SendFrame
from dledgermq.actors.reput import Confirm
from dledgermq.actors.supervisor import FailStopActor, FatalHandler, exit_process, tell
from dledgermq.actors.ticker import Tick
from dledgermq.replication.master_slave import REPORT_INTERVAL_MS, HAPush, LogTail, SlaveStream

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FromMaster:
    """A validated push from the master."""

    frame: HAPush


@dataclass(frozen=True, slots=True)
class Stored:
    """From the writer (via the flusher): a push of `session` is stored; the log ends with
    `tail` now."""

    session: int
    tail: LogTail


@dataclass(frozen=True, slots=True)
class Refused:
    """From the writer: a push of `session` was refused; the log is unchanged."""

    session: int
    reason: str


@dataclass(frozen=True, slots=True)
class HASlaveOptions:
    master_id: int  # The master's peer id.
    fsync: bool  # flush: sync: a push is fsynced before it is acknowledged.
    session: int  # The first session (random in production: unique per slave run).
    report_interval_ms: int = REPORT_INTERVAL_MS


class HASlaveActor(FailStopActor):
    def __init__(
        self,
        *,
        writer: pykka.ActorRef[Any],
        reput: pykka.ActorRef[Any],
        send: SendFrame,
        tail: LogTail,
        options: HASlaveOptions,
        on_fatal: FatalHandler = exit_process,
    ) -> None:
        super().__init__(on_fatal)
        self._writer = writer
        self._reput = reput
        self._send = send
        self._options = options
        self._stream = SlaveStream(
            tail=tail, session=options.session, report_interval_ms=options.report_interval_ms
        )
        self._now_ms = 0
        self._last_refusal: str | None = None  # Logged once while it repeats.

    def on_start(self) -> None:
        self._report()

    def on_receive(self, message: object) -> None:
        match message:
            case FromMaster(push):
                if self._stream.take_push(push):
                    self._forward(push)
            case Stored(session, tail):
                self._last_refusal = None
                ack = self._stream.stored(session, tail, self._now_ms)
                tell(self._reput, Confirm(tail.end_offset))
                if ack is not None:
                    self._send(self._options.master_id, ack)
                self._report()
            case Refused(session, reason):
                if self._stream.refused(session) and reason != self._last_refusal:
                    log.warning("refused a push from the master: %s; reporting again", reason)
                    self._last_refusal = reason
                self._report()
            case Tick(now_ms):
                self._now_ms = now_ms
                self._report()
            case _:
                raise AssertionError(f"unexpected message {message!r}")

    def _forward(self, push: HAPush) -> None:
        me, session = self.actor_ref, push.session

        def stored(tail: LogTail) -> None:
            tell(me, Stored(session, tail))

        def refused(reason: str) -> None:
            tell(me, Refused(session, reason))

        tell(
            self._writer,
            AppendReplicated(push.offset, push.data, self._options.fsync, stored, refused),
        )

    def _report(self) -> None:
        report = self._stream.take_report(self._now_ms)
        if report is not None and not self._send(self._options.master_id, report):
            self._stream.unsent()
