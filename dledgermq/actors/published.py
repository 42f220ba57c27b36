"""A value one actor owns and publishes for others to read without asking.

Single writer; readers see some recent value (a plain attribute store/load is atomic in
CPython). Used for monotonic watermarks (written, flushed, dispatched offsets) and for
immutable snapshots (the topic table), never for anything a reader must mutate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class Published(Generic[T]):
    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value


class Watermarks:
    """The three offsets of one broker, each written by exactly one actor.

    written: CommitLogWriterActor (end of the last appended entry);
    flushed: FlusherActor (everything below is fsynced);
    synced: CommitLogWriterActor (everything below is fsynced by the writer itself, for a
        write it made durable at once because nothing else waited; see `durable`);
    dispatched: ReputActor (everything below is in the ConsumeQueues and visible);
    checkpointed: ReputActor (recovery replays the log from here, so it must stay);
    disk_full: CommitLogWriterActor (above the high-water mark: new writes are refused).
    """

    __slots__ = ("checkpointed", "disk_full", "dispatched", "flushed", "synced", "written")

    def __init__(self, start_offset: int) -> None:
        self.disk_full: Published[bool] = Published(False)
        self.written: Published[int] = Published(start_offset)
        self.flushed: Published[int] = Published(start_offset)
        self.synced: Published[int] = Published(start_offset)
        self.dispatched: Published[int] = Published(start_offset)
        self.checkpointed: Published[int] = Published(0)

    @property
    def durable(self) -> int:
        """Everything below is fsynced, whichever of the two actors did it."""
        return max(self.flushed.value, self.synced.value)


@dataclass(frozen=True, slots=True)
class ReplicaRole:
    """Who this node is in its broker group, for the API and the NameServer registration.

    `broker_id` follows RocketMQ: 0 is the node that takes writes (a Raft leader, the
    standalone broker), > 0 a replica that serves reads.
    """

    mode: str  # "standalone" | "raft" | "master_slave"
    role: str  # "master" | "slave" | "leader" | "follower" | "candidate" | "pre_candidate"
    broker_id: int
    term: int = 0
    leader_node: str | None = None
    leader_addr: str | None = None

    @property
    def writable(self) -> bool:
        return self.broker_id == 0
