"""Fail-stop: an actor that raises takes the whole process down.

Restart and recovery are the normal start path (the one chaos exercises), so an
unexpected exception (a broken invariant, an OSError from write or fsync) is never caught,
logged and continued. Tests pass their own `on_fatal` to observe instead of exiting.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

import pykka

log = logging.getLogger(__name__)
EXIT_FATAL = 70

FatalHandler = Callable[[str, BaseException], None]


def exit_process(actor_name: str, error: BaseException) -> None:
    log.critical("actor %s failed; exiting (fail-stop): %r", actor_name, error)
    sys.stderr.flush()
    os._exit(EXIT_FATAL)  # Actor threads are not daemons: only a hard exit stops them all.


class FailStopActor(pykka.ThreadingActor):
    """Base class: on any unexpected failure, call the fatal handler."""

    def __init__(self, on_fatal: FatalHandler = exit_process) -> None:
        super().__init__()
        self._on_fatal = on_fatal

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        error = exception_value or RuntimeError(f"{exception_type} without value")
        log.error("actor %s failed", type(self).__name__, exc_info=error)
        self._on_fatal(type(self).__name__, error)


def tell(ref: pykka.ActorRef[Any], message: object) -> None:
    """Tell another actor; a stopped target is not an error.

    A target stops either during an orderly shutdown (nothing is waiting for the answer)
    or because it failed, in which case the fatal handler is already ending the process.
    """
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        log.debug("dropped %r for a stopped actor", type(message).__name__)


class AnswerAsMessage:
    """A ReplyTo that turns an answer into a message to an actor: `make(value, None)` on
    success, `make(None, error)` on failure, told to `ref` (the actor's own inbox keeps
    its state single-threaded)."""

    __slots__ = ("_make", "_ref")

    def __init__(
        self, ref: pykka.ActorRef[Any], make: Callable[[Any, BaseException | None], object]
    ) -> None:
        self._ref, self._make = ref, make

    def ok(self, value: Any) -> None:
        tell(self._ref, self._make(value, None))

    def fail(self, error: BaseException) -> None:
        tell(self._ref, self._make(None, error))
