"""A topic's route as the client reads it, and the message-id -> broker lookup.

Owns: parsing the NameServer's route answer, the ordered lists of writable and readable
queues (a write-disabled broker group has no writable queue), which address serves writes
(the master, broker_id 0) and reads (the master, else the lowest live id), and matching a
msg_id's 8-hex prefix to a broker group.

Must not: do I/O or cache; `routes.py` fetches and keeps these values.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dledgermq.client.message import MessageQueue

MASTER_ID = 0
PERM_WRITE = 2
PERM_READ = 4
PERM_READ_WRITE = PERM_READ | PERM_WRITE
MSG_ID_LENGTH = 32
BROKER_HASH_LENGTH = 8


def broker_hash(broker_name: str) -> str:
    """The 8-hex prefix a broker group puts on its msg_ids: crc32 of its name."""
    return f"{zlib.crc32(broker_name.encode()) & 0xFFFFFFFF:08X}"


def broker_for_msg_id(msg_id: str, broker_names: Iterable[str]) -> str | None:
    """The broker group whose hash prefixes `msg_id`, or None (e.g. it is a unique key)."""
    if len(msg_id) != MSG_ID_LENGTH:
        return None
    prefix = msg_id[:BROKER_HASH_LENGTH].upper()
    return next((name for name in sorted(broker_names) if broker_hash(name) == prefix), None)


@dataclass(frozen=True, slots=True)
class QueueData:
    """A topic's queue counts and permission on one broker group."""

    broker_name: str
    read_queues: int
    write_queues: int
    perm: int

    @property
    def writable(self) -> bool:
        return bool(self.perm & PERM_WRITE)

    @property
    def readable(self) -> bool:
        return bool(self.perm & PERM_READ)


@dataclass(frozen=True, slots=True)
class BrokerData:
    """One broker group's addresses by broker_id, its permission (4 while write-disabled
    for maintenance), its zone and whether it creates unknown topics on a send."""

    broker_name: str
    cluster: str
    addrs: Mapping[int, str]
    perm: int = PERM_READ_WRITE
    zone: str | None = None
    auto_create_topic: bool = False

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> BrokerData:
        addrs = {int(bid): addr for bid, addr in (raw.get("addrs") or {}).items()}
        return cls(
            raw["broker_name"],
            raw.get("cluster", ""),
            addrs,
            perm=raw.get("perm", PERM_READ_WRITE),
            zone=raw.get("zone"),
            auto_create_topic=bool(raw.get("auto_create_topic", False)),
        )

    @property
    def writable(self) -> bool:
        return bool(self.perm & PERM_WRITE)

    @property
    def master_addr(self) -> str | None:
        """Where writes go; None while the group has no master (or no Raft leader)."""
        return self.addrs.get(MASTER_ID)

    @property
    def read_addr(self) -> str | None:
        """Where reads go: the master, else a slave (RocketMQ reads from slaves too)."""
        if not self.addrs:
            return None
        return self.addrs.get(MASTER_ID) or self.addrs[min(self.addrs)]

    @property
    def read_addrs(self) -> list[str]:
        """Every address that can serve reads, in the order to try them: the master (or
        Raft leader) first, then the replicas by id (they serve committed data only)."""
        return [self.addrs[broker_id] for broker_id in sorted(self.addrs)]


@dataclass(frozen=True, slots=True)
class TopicRouteData:
    """A topic's queues over all broker groups, ordered by broker name."""

    topic: str
    queues: tuple[QueueData, ...]
    brokers: Mapping[str, BrokerData]

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> TopicRouteData:
        queues = tuple(
            sorted(
                (
                    QueueData(q["broker_name"], q["read_queues"], q["write_queues"], q["perm"])
                    for q in raw.get("queues", [])
                ),
                key=lambda q: q.broker_name,
            )
        )
        brokers = {b["broker_name"]: BrokerData.from_wire(b) for b in raw.get("brokers", [])}
        return cls(raw["topic"], queues, brokers)

    def writable_queues(self) -> list[MessageQueue]:
        """Queues a producer may send to: write permission (the topic's and the group's)
        and a master to send to; only the first `write_queues` of each group."""
        return [
            MessageQueue(self.topic, q.broker_name, qid)
            for q in self.queues
            if self.permits_write(q) and self.master_addr(q.broker_name) is not None
            for qid in range(q.write_queues)
        ]

    def permits_write(self, queues: QueueData) -> bool:
        """Write permission of the topic on that group and of the group itself."""
        broker = self.brokers.get(queues.broker_name)
        return queues.writable and (broker is None or broker.writable)

    def readable_queues(self) -> list[MessageQueue]:
        """Queues a consumer may pull from: read permission and some broker to ask."""
        return [
            MessageQueue(self.topic, q.broker_name, qid)
            for q in self.queues
            if q.readable and self.read_addr(q.broker_name) is not None
            for qid in range(q.read_queues)
        ]

    def master_addr(self, broker_name: str) -> str | None:
        broker = self.brokers.get(broker_name)
        return None if broker is None else broker.master_addr

    def read_addr(self, broker_name: str) -> str | None:
        broker = self.brokers.get(broker_name)
        return None if broker is None else broker.read_addr

    def read_addrs(self, broker_name: str) -> list[str]:
        broker = self.brokers.get(broker_name)
        return [] if broker is None else broker.read_addrs
