"""Topic configuration: names, queue counts, permissions, and the reserved system topics."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from dledgermq.errors import BadRequest, InvalidTopic

TOPIC_NAME = re.compile(r"^[%|a-zA-Z0-9_-]{1,127}$")
GROUP_NAME = re.compile(r"^[%|a-zA-Z0-9_-]{1,255}$")
PERM_WRITE = 2
PERM_READ = 4
PERM_READ_WRITE = PERM_READ | PERM_WRITE
VALID_PERMS = (PERM_WRITE, PERM_READ, PERM_READ_WRITE)
MAX_QUEUES = 1024

# Internal records that carry broker state through the log (DESIGN.md §5 rule 5).
SYSTEM_PREFIX = "%SYS%"
TOPIC_CONFIG_TOPIC = "%SYS%TOPIC"
CONSUMER_OFFSET_TOPIC = "%SYS%OFFSET"
DELAY_PROGRESS_TOPIC = "%SYS%DELAY"
BROKER_PERM_TOPIC = "%SYS%BROKER"  # The broker group's own permission (write-disable).
TRANSACTION_OP_TOPIC = "%SYS%TXN"  # Rollbacks and check counts (broker/transactions.py).
# Built-in topics no client may create, send to or read directly (delay.SCHEDULE_TOPIC,
# transactions.HALF_TOPIC).
RESERVED_PREFIXES = (SYSTEM_PREFIX, "%DELAY%", "%TRANS%")
# A user's send never auto-creates a name in the system namespace: `%` starts every
# built-in topic (%SYS%, %DELAY%, %RETRY%<group>, %DLQ%<group>), whether or not it is
# reserved against direct sends.
AUTO_CREATE_REFUSED_PREFIX = "%"


@dataclass(frozen=True, slots=True)
class TopicConfig:
    topic: str
    read_queues: int
    write_queues: int
    perm: int = PERM_READ_WRITE

    @property
    def readable(self) -> bool:
        return bool(self.perm & PERM_READ)

    @property
    def writable(self) -> bool:
        return bool(self.perm & PERM_WRITE)

    @property
    def queue_count(self) -> int:
        """Queues that exist on disk: the larger of the read and write counts."""
        return max(self.read_queues, self.write_queues)

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> TopicConfig:
        config = cls(
            topic=raw["topic"],
            read_queues=raw["read_queues"],
            write_queues=raw["write_queues"],
            perm=raw["perm"],
        )
        assert type(config.perm) is int, config  # Only validated configs reach the log.
        return config


def check_topic_name(topic: object, *, allow_system: bool = False) -> str:
    """The topic name, or InvalidTopic saying which rule it breaks."""
    if not isinstance(topic, str) or not TOPIC_NAME.fullmatch(topic):
        raise InvalidTopic(
            f"invalid topic name {topic!r}: must match {TOPIC_NAME.pattern}",
            pattern=TOPIC_NAME.pattern,
        )
    if not allow_system and topic.startswith(RESERVED_PREFIXES):
        raise InvalidTopic(f"topic {topic!r} is reserved for the broker")
    return topic


def check_client_topic(topic: object) -> str:
    """A topic a client may create or send to: never one of the `%` namespace.

    Retry and dead-letter topics (`%RETRY%<group>`, `%DLQ%<group>`) are read by clients
    but written by the broker alone (send-back, dead-lettering, resend), like every other
    built-in topic; a client writing them could forge another group's retries.
    """
    name = check_topic_name(topic)
    if name.startswith(AUTO_CREATE_REFUSED_PREFIX):
        raise InvalidTopic(
            f"topic {name!r} is in the broker's `%` namespace: clients may read it "
            "but only the broker creates and writes it"
        )
    return name


def may_auto_create(topic: str) -> bool:
    """Whether a send may create `topic` (when the broker allows auto-create at all)."""
    return not topic.startswith(AUTO_CREATE_REFUSED_PREFIX)


def auto_created_config(topic: str, queues: int) -> TopicConfig:
    """The config a send creates: `queues` read and write queues, read-write (RocketMQ's
    defaultTopicQueueNums is 4)."""
    assert 1 <= queues <= MAX_QUEUES, queues
    assert may_auto_create(topic), topic
    return TopicConfig(topic=topic, read_queues=queues, write_queues=queues)


def check_group_name(group: object) -> str:
    if not isinstance(group, str) or not GROUP_NAME.fullmatch(group):
        raise BadRequest(f"invalid group name {group!r}: must match {GROUP_NAME.pattern}")
    return group


def make_topic_config(
    topic: str, raw: dict[str, Any], *, default_queues: int, base: TopicConfig | None = None
) -> TopicConfig:
    """Build a config from a create/update request, rejecting bad counts or permissions."""
    unknown = sorted(set(raw) - {"topic", "queues", "read_queues", "write_queues", "perm"})
    if unknown:
        raise BadRequest(f"unknown topic field(s): {unknown}")
    queues = raw.get("queues")
    fallback = default_queues if base is None else None
    current_read = base.read_queues if base is not None else None
    current_write = base.write_queues if base is not None else None
    read = _count(raw.get("read_queues", queues), "read_queues", current_read, fallback)
    write = _count(raw.get("write_queues", queues), "write_queues", current_write, fallback)
    perm = raw.get("perm", PERM_READ_WRITE if base is None else base.perm)
    if type(perm) is not int or perm not in VALID_PERMS:
        raise BadRequest(
            f"perm must be one of {VALID_PERMS} (2=write, 4=read, 6=both), got {perm!r}"
        )
    return TopicConfig(topic=topic, read_queues=read, write_queues=write, perm=perm)


def _count(value: object, name: str, current: int | None, default: int | None) -> int:
    if value is None:
        value = current if current is not None else default
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_QUEUES:
        raise BadRequest(f"{name} must be an integer within 1..{MAX_QUEUES}, got {value!r}")
    return value
