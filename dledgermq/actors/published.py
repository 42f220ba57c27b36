"""A value one actor owns and publishes for others to read without asking.

Single writer; readers see some recent value (a plain attribute store/load is atomic in
CPython). Used for monotonic watermarks (written, flushed, dispatched offsets) and for
immutable snapshots (the topic table), never for anything a reader must mutate.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Published(Generic[T]):
    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value
