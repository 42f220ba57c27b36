"""The NameServer's route table: which broker groups serve which topics, and where.

Owns: live brokers (a registration doubles as a heartbeat), each broker's reported topic
list, and the routes derived from them. Brokers with the same `broker_name` form one group
whose addresses are keyed by `broker_id` (0 is the master/leader). A group's queue data
comes from its master when it is registered, else from its lowest live `broker_id`, so a
slave keeps the group readable while the master is away (RocketMQ keeps queue data until
the whole group is gone, too). The group's permission (`perm`: 4 while write-disabled for
maintenance) masks every topic's perm in its routes, so clients send elsewhere (RocketMQ's
broker does the same masking before it registers); the group's `zone` is its authority's.

A broker with thousands of topics registers in pages (RocketMQ 4's split registration):
each page carries the broker's identity, a slice of its topic table and `page: {round,
index, count}`. Pages of one round arrive in order; the last one swaps the assembled table
in at once, so a route never sees half a table. Every page is a heartbeat. A registration
without `page` is one whole table, as before.

Must not: read a clock (every time is passed in as `now_ms`), do I/O, or persist anything;
the NameServer is stateless and brokers re-register every few seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from dledgermq.errors import BadRequest

PERM_MAX = 7
PERM_READ_WRITE = 6
MASTER_ID = 0
ZONE_MAX_LENGTH = 255
# A round of more pages than this is refused: at 2,000 topics a page (what brokers send)
# that is over two million topics, and it bounds what one broker can make us hold.
PAGES_MAX = 1024
ROUND_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The broker's topic name rule (broker/topics.py), built-in `%` topics included.
TOPIC_NAME = re.compile(r"^[%|a-zA-Z0-9_-]{1,127}$")


def _field(raw: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = raw.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BadRequest(f"{where}: {name} must be {kind.__name__}, got {value!r}", field=name)
    return value


def _count(raw: dict[str, Any], name: str, where: str) -> int:
    value: int = _field(raw, name, int, where)
    if value < 0:
        raise BadRequest(f"{where}: {name} must be >= 0, got {value}", field=name)
    return value


@dataclass(frozen=True, slots=True)
class QueueData:
    """A topic's queues on one broker group (RocketMQ `QueueData`)."""

    broker_name: str
    read_queues: int
    write_queues: int
    perm: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "broker_name": self.broker_name,
            "read_queues": self.read_queues,
            "write_queues": self.write_queues,
            "perm": self.perm,
        }


@dataclass(frozen=True, slots=True)
class TopicQueues:
    """A topic config as a broker reports it: `{topic, read_queues, write_queues, perm}`."""

    topic: str
    read_queues: int
    write_queues: int
    perm: int

    @classmethod
    def from_wire(cls, raw: object) -> TopicQueues:
        """Raises BadRequest on a missing or mistyped field."""
        if not isinstance(raw, dict):
            raise BadRequest(f"topic config must be an object, got {raw!r}")
        topic: str = _field(raw, "topic", str, "topic config")
        if not TOPIC_NAME.fullmatch(topic):
            raise BadRequest(f"topic {topic!r} must match {TOPIC_NAME.pattern}", field="topic")
        perm = _count(raw, "perm", topic)
        if perm > PERM_MAX:
            raise BadRequest(f"{topic}: perm must be within 0..{PERM_MAX}, got {perm}")
        read_queues = _count(raw, "read_queues", topic)
        return cls(topic, read_queues, _count(raw, "write_queues", topic), perm)


@dataclass(frozen=True, slots=True)
class RegistrationPage:
    """Where one page sits in its registration round: `{round, index, count}`."""

    round_id: str
    index: int
    count: int

    @classmethod
    def from_wire(cls, raw: object) -> RegistrationPage:
        """Raises BadRequest on a missing, mistyped or out-of-bounds field."""
        where = "registration page"
        if not isinstance(raw, dict):
            raise BadRequest(f"{where} must be an object, got {raw!r}", field="page")
        round_id: str = _field(raw, "round", str, where)
        if not ROUND_ID.fullmatch(round_id):
            raise BadRequest(f"{where}: round must match {ROUND_ID.pattern}", field="round")
        count = _count(raw, "count", where)
        index = _count(raw, "index", where)
        if not 1 <= count <= PAGES_MAX:
            raise BadRequest(f"{where}: count must be within 1..{PAGES_MAX}", field="count")
        if index >= count:
            raise BadRequest(f"{where}: index must be below count ({count})", field="index")
        return cls(round_id, index, count)

    def to_wire(self) -> dict[str, Any]:
        return {"round": self.round_id, "index": self.index, "count": self.count}


@dataclass(frozen=True, slots=True)
class BrokerRegistration:
    """One broker's register/heartbeat request."""

    cluster: str
    broker_name: str
    broker_id: int
    addr: str
    topics: tuple[TopicQueues, ...] = ()
    perm: int = PERM_READ_WRITE  # The broker group's permission (older brokers omit it).
    zone: str | None = None
    auto_create_topic: bool = False  # A send to an unknown topic creates it there.
    page: RegistrationPage | None = None  # None: `topics` is the whole table.

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> BrokerRegistration:
        """Raises BadRequest on a missing or mistyped field."""
        where = "broker registration"
        name: str = _field(raw, "broker_name", str, where)
        topics = raw.get("topics", [])
        if not isinstance(topics, list):
            raise BadRequest(f"{where}: topics must be a list", field="topics")
        if not name:
            raise BadRequest(f"{where}: broker_name must not be empty", field="broker_name")
        perm = _count(raw, "perm", where) if "perm" in raw else PERM_READ_WRITE
        if perm > PERM_MAX:
            raise BadRequest(f"{where}: perm must be within 0..{PERM_MAX}, got {perm}")
        zone = raw.get("zone")
        if zone is not None:
            zone = _field(raw, "zone", str, where)
            if not 1 <= len(zone) <= ZONE_MAX_LENGTH:
                raise BadRequest(f"{where}: zone must be 1..{ZONE_MAX_LENGTH} characters")
        auto_create = raw.get("auto_create_topic", False)
        if type(auto_create) is not bool:
            raise BadRequest(
                f"{where}: auto_create_topic must be a boolean", field="auto_create_topic"
            )
        page = RegistrationPage.from_wire(raw["page"]) if "page" in raw else None
        return cls(
            cluster=_field(raw, "cluster", str, where),
            broker_name=name,
            broker_id=_count(raw, "broker_id", where),
            addr=_field(raw, "addr", str, where),
            topics=tuple(TopicQueues.from_wire(t) for t in topics),
            perm=perm,
            zone=zone,
            auto_create_topic=auto_create,
            page=page,
        )


@dataclass(frozen=True, slots=True)
class BrokerGroup:
    """The brokers sharing one `broker_name`: addresses by broker_id."""

    broker_name: str
    cluster: str
    addrs: dict[int, str]
    last_seen_ms: int = 0
    perm: int = PERM_READ_WRITE
    zone: str | None = None
    auto_create_topic: bool = False

    def addrs_wire(self) -> dict[str, str]:
        """Addresses keyed by the broker_id as a string (JSON object keys are strings)."""
        return {str(bid): addr for bid, addr in sorted(self.addrs.items())}

    def to_wire(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "broker_name": self.broker_name,
            "addrs": self.addrs_wire(),
            "last_seen_ms": self.last_seen_ms,
            "perm": self.perm,
            "zone": self.zone,
            "auto_create_topic": self.auto_create_topic,
        }


@dataclass(frozen=True, slots=True)
class TopicRoute:
    """Everything a client needs to reach a topic: queue data and broker addresses."""

    topic: str
    queues: tuple[QueueData, ...]
    brokers: tuple[BrokerGroup, ...]

    def to_wire(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "queues": [q.to_wire() for q in self.queues],
            "brokers": [
                {
                    "broker_name": b.broker_name,
                    "cluster": b.cluster,
                    "addrs": b.addrs_wire(),
                    "perm": b.perm,
                    "zone": b.zone,
                }
                for b in self.brokers
            ],
        }


@dataclass(slots=True)
class _Round:
    """The pages of a paged registration received so far."""

    round_id: str
    count: int
    started_ms: int
    next_index: int = 0
    topics: dict[str, TopicQueues] = field(default_factory=dict)


@dataclass(slots=True)
class _LiveBroker:
    registration: BrokerRegistration
    last_seen_ms: int
    topics: dict[str, TopicQueues] = field(default_factory=dict)


class RouteRegistry:
    """Live brokers and the topic routes derived from their latest registrations."""

    def __init__(self, expiry_ms: int = 120_000) -> None:
        assert expiry_ms > 0, expiry_ms
        self.expiry_ms = expiry_ms
        # broker_name -> broker_id -> live broker; names and ids are kept sorted on read.
        self._groups: dict[str, dict[int, _LiveBroker]] = {}
        # (broker_name, broker_id) -> the paged registration being received.
        self._rounds: dict[tuple[str, int], _Round] = {}

    def register(self, info: BrokerRegistration, now_ms: int) -> bool:
        """Add or refresh a broker; its topic table replaces the one it sent before.

        A page refreshes a live broker; the round's last page swaps its table in.

        Returns:
            True when the broker's topic table was replaced (always, unpaged).

        Raises:
            BadRequest: a page that does not follow the previous page of its round; the
                broker sends the round again from page 0.
        """
        if info.page is None:
            self._commit(info, {t.topic: t for t in info.topics}, now_ms)
            return True
        key = (info.broker_name, info.broker_id)
        page = info.page
        if page.index == 0:
            self._rounds[key] = _Round(page.round_id, page.count, now_ms)
        current = self._rounds.get(key)
        if current is None or (current.round_id, current.count, current.next_index) != (
            page.round_id,
            page.count,
            page.index,
        ):
            self._rounds.pop(key, None)
            raise BadRequest(
                f"registration page {page.index + 1}/{page.count} of round {page.round_id} "
                "does not follow the pages received: send the round again from page 0",
                field="page",
            )
        current.topics.update((t.topic, t) for t in info.topics)
        current.next_index += 1
        if current.next_index < current.count:
            live = self._groups.get(info.broker_name, {}).get(info.broker_id)
            if live is not None:
                live.last_seen_ms = now_ms
            return False
        del self._rounds[key]
        self._commit(info, current.topics, now_ms)
        return True

    def _commit(self, info: BrokerRegistration, topics: dict[str, TopicQueues], now: int) -> None:
        group = self._groups.setdefault(info.broker_name, {})
        group[info.broker_id] = _LiveBroker(registration=info, last_seen_ms=now, topics=topics)

    def unregister(self, broker_name: str, broker_id: int) -> bool:
        """Forget one broker (graceful shutdown); False if it was not registered."""
        self._rounds.pop((broker_name, broker_id), None)
        group = self._groups.get(broker_name, {})
        removed = group.pop(broker_id, None) is not None
        if not group:
            # The last broker of the group is gone, and so is the group's queue data.
            self._groups.pop(broker_name, None)
        return removed

    def expire(self, now_ms: int) -> list[tuple[str, int]]:
        """Drop brokers not seen within `expiry_ms`; returns their (broker_name, broker_id)."""
        stale = [
            (name, bid)
            for name, group in self._groups.items()
            for bid, broker in group.items()
            if now_ms - broker.last_seen_ms > self.expiry_ms
        ]
        for name, bid in stale:
            self.unregister(name, bid)
        for key, paged in list(self._rounds.items()):  # A round its broker abandoned.
            if now_ms - paged.started_ms > self.expiry_ms:
                del self._rounds[key]
        return sorted(stale)

    def route(self, topic: str) -> TopicRoute | None:
        """The topic's queues per broker group, or None when no live group serves it."""
        queues: list[QueueData] = []
        brokers: list[BrokerGroup] = []
        for name in sorted(self._groups):
            authority = self._authority(name)
            config = authority.topics.get(topic)
            if config is None:
                continue
            perm = config.perm & authority.registration.perm
            queues.append(QueueData(name, config.read_queues, config.write_queues, perm))
            brokers.append(self._group(name))
        if not queues:
            return None
        return TopicRoute(topic, tuple(queues), tuple(brokers))

    def brokers(self) -> list[BrokerGroup]:
        """Every live broker group, by name."""
        return [self._group(name) for name in sorted(self._groups)]

    def topics(self) -> list[str]:
        """Every topic some live broker group serves, sorted."""
        return sorted({t for name in self._groups for t in self._authority(name).topics})

    def _authority(self, broker_name: str) -> _LiveBroker:
        """The broker whose topic list speaks for its group: the master, else the lowest id."""
        group = self._groups[broker_name]
        return group.get(MASTER_ID) or group[min(group)]

    def _group(self, broker_name: str) -> BrokerGroup:
        group = self._groups[broker_name]
        authority = self._authority(broker_name).registration
        return BrokerGroup(
            broker_name=broker_name,
            cluster=authority.cluster,
            addrs={bid: group[bid].registration.addr for bid in sorted(group)},
            last_seen_ms=max(b.last_seen_ms for b in group.values()),
            perm=authority.perm,
            zone=authority.zone,
            auto_create_topic=authority.auto_create_topic,
        )
