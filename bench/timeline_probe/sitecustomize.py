"""Stage stamps for `python -m bench.timeline` (imported by every Python process that has
this folder on PYTHONPATH; does nothing unless DLEDGERMQ_TIMELINE names an output folder).

Wraps, as their modules load, the `on_receive` of the Raft node, writer, flusher and
ReputActor, `bridge.call` and the transport's post/loop-send/deliver, and stamps
`time.monotonic_ns()` (one clock for all processes) at each. A daemon thread appends the
stamps to `<folder>/<pid>.txt` twice a second, and once more at exit. Measurement only:
it adds a few microseconds per stamp, the same to every stage.
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

OUT = os.environ.get("DLEDGERMQ_TIMELINE")
EVENTS: list[tuple[int, str]] = []
ACTORS = {
    "dledgermq.actors.raft_node": ("RaftNodeActor", "raft"),
    "dledgermq.actors.commitlog_writer": ("CommitLogWriterActor", "writer"),
    "dledgermq.actors.flusher": ("FlusherActor", "flusher"),
    "dledgermq.actors.reput": ("ReputActor", "reput"),
}


def stamp(tag: str) -> None:
    EVENTS.append((time.monotonic_ns(), tag))


def flush(folder: str) -> None:
    count = len(EVENTS)
    if count:
        chunk = EVENTS[:count]
        del EVENTS[:count]
        with open(f"{folder}/{os.getpid()}.txt", "a") as out:
            out.writelines(f"{t} {tag}\n" for t, tag in chunk)


def keep_flushing(folder: str) -> None:
    while True:
        time.sleep(0.5)  # A periodic write-out, not synchronisation.
        flush(folder)


def message_tag(message: object) -> str | None:
    """What a stage is called; None for ticks and heartbeats (not on a send's path)."""
    name = type(message).__name__
    if name == "Tick":
        return None
    inner = getattr(message, "message", None)
    if name == "Inbound" and inner is not None:
        if type(inner).__name__ == "AppendEntries" and not inner.entries:
            return None
        return type(inner).__name__
    return name


def wrap_receive(cls: type, name: str) -> None:
    original = cls.on_receive  # type: ignore[attr-defined]

    def on_receive(self: Any, message: object) -> None:
        tag = message_tag(message)
        if tag is None:
            return original(self, message)
        stamp(f"{name}.{tag}>")
        try:
            return original(self, message)
        finally:
            stamp(f"{name}.{tag}<")

    cls.on_receive = on_receive  # type: ignore[attr-defined]


def stamped(tag: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        stamp(tag)
        return function(*args, **kwargs)

    return wrapper


def patch(module: ModuleType) -> None:
    name = module.__name__
    if name in ACTORS:
        cls_name, tag = ACTORS[name]
        wrap_receive(getattr(module, cls_name), tag)
    elif name == "dledgermq.bridge":
        call = module.call

        async def timed_call(send: Any, *, timeout_s: float, what: str = "") -> Any:
            stamp("call>")
            try:
                return await call(send, timeout_s=timeout_s, what=what)
            finally:
                stamp("call<")

        module.call = timed_call  # type: ignore[attr-defined]
        module.Reply._set_result = stamped("loop.settle", module.Reply._set_result)
    elif name == "dledgermq.transport":
        transport = module.Transport
        transport.post = stamped("post", transport.post)
        transport._send_posted = stamped("loop.send", transport._send_posted)
        transport._deliver = stamped("loop.deliver", transport._deliver)


TARGETS = frozenset({*ACTORS, "dledgermq.bridge", "dledgermq.transport"})


class PatchingFinder(importlib.abc.MetaPathFinder):
    """Runs `patch` on the modules above right after they execute."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in TARGETS:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        execute = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            patch(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if OUT:
    threading.Thread(target=keep_flushing, args=(OUT,), daemon=True, name="timeline").start()
    atexit.register(flush, OUT)
    sys.meta_path.insert(0, PatchingFinder())
