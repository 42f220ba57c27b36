"""What every handler of the broker API shares: the broker context, admission, appends and
reads through the bridge.

Owns: the `BrokerContext` (set once at composition) and the helpers that cross from the loop
to the actors. Must not: know any route.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pykka
from aiohttp import web

from dledgermq import bridge
from dledgermq.actors.published import Published, ReplicaRole
from dledgermq.actors.repair import RepairStats
from dledgermq.actors.reput import Read, ReputPublished
from dledgermq.bridge import ReplyTo
from dledgermq.broker.dispatch import DispatchedMessage
from dledgermq.broker.produce import ProduceLimits, SendPolicy
from dledgermq.broker.queries import StoreQuery
from dledgermq.broker.retry import DEFAULT_LEVELS, DelayLevels
from dledgermq.broker.topics import SYSTEM_PREFIX, TopicConfig, check_topic_name
from dledgermq.clock import SYSTEM_CLOCK, Clock
from dledgermq.config import LimitsConfig, TransactionConfig
from dledgermq.errors import BadRequest, Busy, NotLeader, TopicNotFound
from dledgermq.replication.master_slave import HAStatus
from dledgermq.store.record import MessageDraft

READ_TIMEOUT_S = 10.0
T = TypeVar("T")
MAX_WAIT_PARAM_MS = 3_600_000  # The longest `wait_ms` a long poll may ask for.


@dataclass(frozen=True, slots=True)
class BrokerIdentity:
    cluster: str
    broker_name: str
    addr: str
    node_id: str
    zone: str | None = None  # Registered with the NameServer; zone-aware rebalancing.


# Hands one entry (a producer batch) to whoever appends in this mode, with the producer's
# reply: the CommitLogWriter (standalone) or the Raft node (leader of a Raft group).
SubmitEntry = Callable[[tuple[MessageDraft, ...], ReplyTo[Any]], None]


@dataclass(slots=True)
class BrokerContext:
    identity: BrokerIdentity
    writer: pykka.ActorRef[Any]
    reput: pykka.ActorRef[Any]
    published: ReputPublished
    limits: LimitsConfig
    flush: str
    submit: SubmitEntry
    role: Published[ReplicaRole]
    raft: pykka.ActorRef[Any] | None = None
    raft_ids: dict[str, int] = field(default_factory=dict)  # Node id -> Raft id (the group).
    ha_status: Published[HAStatus] | None = None  # master/slave groups: replication state.
    repair: Published[RepairStats] | None = None  # Raft groups: damaged records and repairs.
    rebalancer: pykka.ActorRef[Any] | None = None  # Consumer-group membership and leases.
    delay_levels: DelayLevels = DEFAULT_LEVELS
    transaction_checker: pykka.ActorRef[Any] | None = None  # Check-backs (the writer's).
    transactions: TransactionConfig = field(default_factory=TransactionConfig)
    clock: Clock = SYSTEM_CLOCK  # The process's one clock (node/ passes it).
    # How registering with the NameServers goes (node.py, which registers, sets it).
    registration_status: Callable[[], dict[str, Any]] | None = None
    appends_in_flight: int = 0
    round_robin: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def produce_limits(self) -> ProduceLimits:
        return ProduceLimits(
            self.limits.max_message_bytes,
            self.limits.max_batch_messages,
            self.limits.max_batch_bytes,
        )

    @property
    def send_policy(self) -> SendPolicy:
        limits = self.limits
        return SendPolicy(
            self.identity.broker_name,
            self.published.broker_perm.value,
            limits.auto_create_topic_queues if limits.auto_create_topic else None,
        )


BROKER = web.AppKey("broker", BrokerContext)


def not_leader(ctx: BrokerContext) -> NotLeader:
    """NOT_LEADER naming the group's writer as far as this node knows (None: electing)."""
    role = ctx.role.value
    return NotLeader(
        f"node {ctx.identity.node_id} is a {role.role} of {ctx.identity.broker_name}; "
        f"the leader is {role.leader_node or 'being elected'}",
        leader=role.leader_node,
        leader_addr=role.leader_addr,
        term=role.term,
    )


def check_admissible(ctx: BrokerContext) -> None:
    """The cheap refusals of an append, to run before its body is read: NOT_LEADER on a
    node that cannot take writes, 503 BUSY when `appends_in_flight_max` are in flight."""
    if not ctx.role.value.writable:
        raise not_leader(ctx)
    if ctx.appends_in_flight >= ctx.limits.appends_in_flight_max:
        raise Busy(f"{ctx.appends_in_flight} appends in flight; retry later")


@contextlib.contextmanager
def admitted(ctx: BrokerContext) -> Iterator[None]:
    """Admission control for appends: at most `appends_in_flight_max` entries are being
    stored at once (`check_admissible` refusals beyond).

    Take it only after the request body is read and checked (probe D9): a slot held
    across a body read lets clients that stall their bodies refuse every send. Bodies
    being read are bounded by the connection cap and `body_read_timeout_ms` instead;
    call `check_admissible` before the read to refuse cheaply."""
    check_admissible(ctx)  # Again: the role or the load may have changed meanwhile.
    ctx.appends_in_flight += 1
    try:
        yield
    finally:
        ctx.appends_in_flight -= 1


async def submit(
    ctx: BrokerContext, drafts: list[MessageDraft], what: str = "append"
) -> tuple[DispatchedMessage, ...]:
    """Append one entry and wait until it is dispatched: the messages that were (a void
    record, e.g. a commit copy that lost to an earlier end, is not)."""
    entry = tuple(drafts)
    try:
        dispatched: tuple[DispatchedMessage, ...] = await bridge.call(
            lambda reply: ctx.submit(entry, reply),
            timeout_s=ctx.limits.send_timeout_ms / 1000,
            what=what,
        )
    except NotLeader:
        raise not_leader(ctx) from None  # with the leader's address, not its Raft id
    return dispatched


async def append(ctx: BrokerContext, drafts: list[MessageDraft]) -> tuple[DispatchedMessage, ...]:
    """Append one entry and wait until it is durable and dispatched (call it admitted).

    Raises:
        TopicNotFound: the topic was deleted (or its queue removed) between validation and
            dispatch; the entry is in the log but can never be consumed.
    """
    dispatched = await submit(ctx, drafts)
    user_messages = sum(not d.topic.startswith(SYSTEM_PREFIX) for d in drafts)
    if len(dispatched) != user_messages:
        raise TopicNotFound(
            f"topic {drafts[0].topic!r} or its queue {drafts[0].queue_id} was removed "
            "while the message was being stored; it will not be delivered",
            topic=drafts[0].topic,
        )
    return dispatched


async def read(ctx: BrokerContext, query: StoreQuery[T]) -> T:
    """Ask the ReputActor one typed query (broker/queries.py) and await its answer."""
    answer: T = await bridge.call(
        lambda reply: ctx.reput.tell(Read(query, reply)), timeout_s=READ_TIMEOUT_S, what="read"
    )
    return answer


def topic_of(request: web.Request) -> str:
    return check_topic_name(request.match_info["topic"])


def existing_topic(ctx: BrokerContext, topic: str) -> TopicConfig:
    config = ctx.published.topics.value.get(topic)
    if config is None:
        raise TopicNotFound(f"topic {topic!r} does not exist on this broker", topic=topic)
    return config


def check_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s): {unknown}")
