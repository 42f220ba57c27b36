"""The one place where asyncio and pykka meet.

Rules (DESIGN.md §5.7): the loop thread only *tells* actors (never `.get()` and never awaits
a pykka future); actor threads touch the loop only through `call_soon_threadsafe`; every
awaited answer has a timeout, and a late answer after that timeout is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from dledgermq.errors import Timeout

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class Reply(Generic[T]):
    """One-shot answer from an actor thread into the asyncio loop (thread-safe)."""

    __slots__ = ("_loop", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.future: asyncio.Future[T] = loop.create_future()

    def ok(self, value: T) -> None:
        """Settle with a value; callable from any thread, at most once has effect."""
        self._post(self._set_result, value)

    def fail(self, error: BaseException) -> None:
        """Settle with an error (an `MQError` for expected outcomes)."""
        self._post(self._set_exception, error)

    def _post(self, settle: Callable[[object], None], value: object) -> None:
        # A closed loop means the process is shutting down and nobody is waiting.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(settle, value)

    def _set_result(self, value: object) -> None:
        if not self.future.done():  # Timed out or cancelled meanwhile: drop it.
            self.future.set_result(value)  # type: ignore[arg-type]

    def _set_exception(self, error: object) -> None:
        if not self.future.done():
            assert isinstance(error, BaseException)
            self.future.set_exception(error)


async def call(send: Callable[[Reply[T]], None], *, timeout_s: float, what: str = "") -> T:
    """Tell an actor a request carrying a fresh `Reply`, await its answer with a deadline.

    Raises:
        Timeout: no answer within timeout_s; the outcome of the request is unknown.
    """
    reply: Reply[T] = Reply(asyncio.get_running_loop())
    send(reply)
    try:
        return await asyncio.wait_for(reply.future, timeout_s)
    except TimeoutError:
        raise Timeout(f"no answer within {timeout_s:.1f}s{': ' + what if what else ''}") from None


class ReplyTo(Protocol[T_contra]):
    """What an actor needs of a reply: settle once with a value or an error.

    `Reply` implements it for the asyncio loop; tests may pass any object with these two
    methods, so actors never depend on asyncio.
    """

    def ok(self, value: T_contra) -> None: ...

    def fail(self, error: BaseException) -> None: ...
