"""cluster.yml -> frozen dataclasses, validated once at start-up (fail fast).

Owns the schema, the defaults and every cross-field rule (unique ids and ports, sane
intervals). Nothing else parses YAML. Paths are resolved relative to the file's folder so
that `dledgermq cluster up path/to/cluster.yml` works from any working directory.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dledgermq.broker.retry import DEFAULT_DELAY_LEVELS, DelayLevels

DEFAULT_CLUSTER_RESOURCE = "default_cluster.yml"
FLUSH_MODES = ("sync", "async")
GROUP_MODES = ("standalone", "raft", "master_slave")
REPLICATED_MODES = ("raft", "master_slave")  # Peer links: peer ports and the cluster secret.
DURABILITIES = ("majority_fsync", "majority_memory")
HA_MODES = ("async", "sync")
RAFT_FIELDS = ("durability", "election_timeout_ms", "heartbeat_interval_ms", "preferred_leader")
HA_FIELDS = ("ha_mode", "sync_timeout_ms")
SYNC_TIMEOUT_MS_RANGE = (500, 60_000)
MiB = 1024 * 1024
# Zone labels travel in registrations, routes and heartbeats (consumers' zones: 1..255).
ZONE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")


class ConfigError(ValueError):
    """cluster.yml is malformed or inconsistent; the message names the field."""


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Storage knobs of one broker node (RocketMQ MessageStoreConfig names, our units)."""

    segment_size_bytes: int = 1024 * MiB
    cq_units_per_file: int = 300_000
    index_slots_per_file: int = 500_000
    index_entries_per_file: int = 2_000_000
    flush: str = "sync"
    flush_interval_ms: int = 500
    checkpoint_interval_ms: int = 3_000
    file_reserved_hours: float = 72.0
    retention_check_interval_ms: int = 10_000
    disk_high_water_ratio: float = 0.90
    # Forced clean (RocketMQ's diskSpaceCleanForciblyRatio, 0.85 there): at this disk usage
    # the oldest segments go before file_reserved_hours, acknowledged and unconsumed ones
    # too. 0 (the default): never; a full disk refuses writes and keeps every message.
    disk_clean_ratio: float = 0.0
    # Background CRC re-verification of the committed CommitLog (replicated groups repair
    # what it finds from a peer); 0 turns it off.
    scrub_bytes_per_s: int = 4 * MiB
    scrub_pass_pause_ms: int = 60_000  # Between two passes over the whole log.
    # Raft groups: a restart re-reads about this much of the log below its checkpoint (the
    # entry index's summary is saved each time this much more commits); the older, fsynced
    # log is trusted at start and left to reads and the scrubber. 0: no summary, every
    # restart reads and checks the whole log (~8 s per GB).
    restart_scan_bytes: int = 64 * MiB
    # Delay levels 1..N for delayed messages (RocketMQ's messageDelayLevel).
    message_delay_level: str = DEFAULT_DELAY_LEVELS

    @property
    def delay_levels(self) -> DelayLevels:
        return DelayLevels.parse(self.message_delay_level)


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Bounds on everything a client can make the broker hold or do."""

    max_message_bytes: int = 4 * MiB
    max_batch_messages: int = 1_000
    max_batch_bytes: int = 4 * MiB  # RocketMQ applies its 4 MiB limit to a whole batch.
    max_pull_messages: int = 256
    max_long_poll_ms: int = 15_000
    appends_in_flight_max: int = 10_000
    long_polls_max: int = 10_000
    send_timeout_ms: int = 5_000
    default_queues: int = 8
    # A send to an unknown topic creates it with `auto_create_topic_queues` read and write
    # queues (RocketMQ's autoCreateTopicEnable / defaultTopicQueueNums). Off: the send
    # gets TOPIC_NOT_FOUND. Names starting with `%` (system topics) are never created.
    auto_create_topic: bool = False
    auto_create_topic_queues: int = 4
    # Consumer queue leases (clustering mode, orderly locks): renewed by heartbeats; a
    # consumer stops a queue after 3/4 of it without a renewal.
    consumer_lease_ms: int = 20_000
    # Slow or stalled clients (probe D9). A request's whole body must arrive within
    # body_read_timeout_ms (else 408 REQUEST_TIMEOUT and the connection is closed); a new
    # connection must deliver its first request head within header_read_timeout_ms; beyond
    # max_connections open client connections, new ones are closed at once.
    body_read_timeout_ms: int = 10_000
    header_read_timeout_ms: int = 10_000
    max_connections: int = 4_096

    def check_client_bounds(self, where: str) -> None:
        """Raise ConfigError unless the slow-client bounds are usable: a timeout too short
        fails honest clients on a slow link, one too long lets stalled ones pile up."""
        for name in ("body_read_timeout_ms", "header_read_timeout_ms"):
            if not 100 <= getattr(self, name) <= 600_000:
                raise ConfigError(f"{where}: {name} must be within 100..600000")
        if not 1 <= self.max_connections <= 1_000_000:
            raise ConfigError(f"{where}: max_connections must be within 1..1000000")


@dataclass(frozen=True, slots=True)
class TransactionConfig:
    """Transactional messages: when half messages without an outcome are checked back with
    their producer group, and how many may be pending (RocketMQ's BrokerConfig values)."""

    check_immunity_s: float = 6.0  # first check-back this long after the half message
    check_interval_s: float = 30.0  # then again every interval
    max_check_times: int = 15  # unanswered check-backs before it is rolled back
    max_pending: int = 10_000  # half messages without an outcome; beyond: 503 BUSY


@dataclass(frozen=True, slots=True)
class ReplicationConfig:
    """How a replicated group agrees: Raft fields (DLedger's names where it has them) and
    master/slave fields (`ha_*`, RocketMQ's HA); each mode refuses the other's fields."""

    durability: str = "majority_fsync"
    election_timeout_ms: int = 800  # A follower waits [T, 2T) without a leader.
    heartbeat_interval_ms: int = 100
    preferred_leader: str = ""  # A node id; the leader hands over to it once caught up.
    # master_slave: async acknowledges after the master's own flush (slaves follow); sync
    # also waits for a slave to store the message, at most sync_timeout_ms (then the
    # producer gets SLAVE_NOT_AVAILABLE while the message stays stored on the master).
    ha_mode: str = "async"
    sync_timeout_ms: int = 3_000


@dataclass(frozen=True, slots=True)
class NodeConfig:
    id: str
    host: str
    port: int
    peer_port: int | None = None  # Replication traffic (Raft, master/slave), on the same host.
    # Where the node binds for peer traffic when peers reach `peer_port` through a proxy or
    # NAT (the chaos suite puts a fault-injecting proxy there); default: peer_port.
    peer_listen_port: int | None = None
    zone: str | None = None  # Overrides the group's zone for this node.

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def peer_bind_port(self) -> int | None:
        return self.peer_listen_port or self.peer_port


@dataclass(frozen=True, slots=True)
class BrokerGroupConfig:
    name: str
    mode: str
    nodes: tuple[NodeConfig, ...]
    store: StoreConfig
    limits: LimitsConfig
    replication: ReplicationConfig = ReplicationConfig()
    transactions: TransactionConfig = TransactionConfig()
    # Where the group runs (availability zone, machine room), for zone-aware consumers;
    # a node's own `zone` overrides it (a Raft group spread over zones).
    zone: str | None = None

    def zone_of(self, node: NodeConfig) -> str | None:
        """The zone a node registers with (its own, else its group's, else None)."""
        return node.zone or self.zone

    def raft_id(self, node_id: str) -> int:
        """A node's Raft id: its 1-based position in the group's list (keep the order)."""
        for position, node in enumerate(self.nodes, start=1):
            if node.id == node_id:
                return position
        raise ConfigError(f"node {node_id!r} is not in broker group {self.name}")

    def node_by_raft_id(self, raft_id: int) -> NodeConfig | None:
        return self.nodes[raft_id - 1] if 1 <= raft_id <= len(self.nodes) else None


@dataclass(frozen=True, slots=True)
class NamesrvConfig:
    id: str
    host: str
    port: int
    broker_expiry_ms: int = 120_000
    scan_interval_ms: int = 10_000

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    cluster: str
    data_dir: Path
    namesrvs: tuple[NamesrvConfig, ...]
    groups: tuple[BrokerGroupConfig, ...]
    heartbeat_interval_ms: int = 30_000
    tick_ms: int = 50
    # HMAC key of the peer links (DESIGN.md §5 rule 8); required by replicated groups.
    secret: str = field(default="", repr=False)
    source: str = field(default="<embedded default>", compare=False)

    def node(self, node_id: str) -> tuple[BrokerGroupConfig, NodeConfig]:
        """The group and node entry of a broker node id (ConfigError if unknown)."""
        for group in self.groups:
            for node in group.nodes:
                if node.id == node_id:
                    return group, node
        known = ", ".join(n.id for g in self.groups for n in g.nodes)
        raise ConfigError(f"unknown broker node {node_id!r} (known: {known})")

    def namesrv(self, namesrv_id: str) -> NamesrvConfig:
        for ns in self.namesrvs:
            if ns.id == namesrv_id:
                return ns
        known = ", ".join(ns.id for ns in self.namesrvs)
        raise ConfigError(f"unknown namesrv {namesrv_id!r} (known: {known})")

    @property
    def namesrv_addrs(self) -> list[str]:
        return [ns.addr for ns in self.namesrvs]

    def node_dir(self, node_id: str) -> Path:
        return self.data_dir / node_id

    @property
    def run_dir(self) -> Path:
        """Where `cluster up` keeps pid and log files."""
        return self.data_dir / "run"


def load_config(path: str | Path | None) -> ClusterConfig:
    """Read and validate cluster.yml; None means the embedded default."""
    if path is None:
        text = resources.files("dledgermq").joinpath(DEFAULT_CLUSTER_RESOURCE).read_text()
        return parse_config(text, base_dir=Path.cwd(), source="<embedded default>")
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror}") from exc
    return parse_config(text, base_dir=file.resolve().parent, source=str(file))


def parse_config(text: str, *, base_dir: Path, source: str = "<string>") -> ClusterConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping")
    data_dir = Path(str(raw.get("data_dir", "./data")))
    config = ClusterConfig(
        cluster=str(raw.get("cluster", "DefaultCluster")),
        data_dir=data_dir if data_dir.is_absolute() else (base_dir / data_dir).resolve(),
        namesrvs=tuple(_namesrv(item) for item in _list(raw, "namesrvs")),
        groups=tuple(_group(item, raw) for item in _list(raw, "brokers")),
        heartbeat_interval_ms=_int(raw, "heartbeat_interval_ms", 30_000),
        tick_ms=_int(raw, "tick_ms", 50),
        secret=str(raw.get("secret", "")),
        source=source,
    )
    validate(config)
    return config


def validate(config: ClusterConfig) -> None:
    """Every cross-field rule, so a bad file fails at start-up with a clear message."""
    if not config.namesrvs:
        raise ConfigError("at least one namesrv is required")
    if not config.groups:
        raise ConfigError("at least one broker group is required")
    ids = [ns.id for ns in config.namesrvs] + [n.id for g in config.groups for n in g.nodes]
    _unique(ids, "node/namesrv id")
    _unique([g.name for g in config.groups], "broker group name")
    endpoints = [ns.addr for ns in config.namesrvs] + [
        n.addr for g in config.groups for n in g.nodes
    ]
    endpoints += [f"{n.host}:{n.peer_port}" for g in config.groups for n in g.nodes if n.peer_port]
    endpoints += [
        f"{n.host}:{n.peer_listen_port}"
        for g in config.groups
        for n in g.nodes
        if n.peer_listen_port and n.peer_listen_port != n.peer_port
    ]
    _unique(endpoints, "host:port")
    if any(g.mode in REPLICATED_MODES for g in config.groups) and len(config.secret) < 16:
        raise ConfigError("secret: replicated groups need a cluster secret of 16+ characters")
    for ns in config.namesrvs:
        if ns.broker_expiry_ms <= config.heartbeat_interval_ms:
            raise ConfigError(
                f"namesrv {ns.id}: broker_expiry_ms ({ns.broker_expiry_ms}) must exceed "
                f"heartbeat_interval_ms ({config.heartbeat_interval_ms})"
            )
    if not 1 <= config.tick_ms <= 1_000:
        raise ConfigError("tick_ms must be within 1..1000")
    for group in config.groups:
        _validate_group(group)


def _validate_group(group: BrokerGroupConfig) -> None:
    where = f"broker group {group.name}"
    if group.mode not in GROUP_MODES:
        raise ConfigError(f"{where}: mode must be one of {GROUP_MODES}, got {group.mode!r}")
    if group.mode == "standalone" and len(group.nodes) != 1:
        raise ConfigError(f"{where}: standalone mode takes exactly one node")
    if group.mode == "raft":
        _validate_raft(where, group)
    if group.mode == "master_slave":
        _validate_master_slave(where, group)
    _validate_store(where, group.store, group.limits)
    _validate_transactions(where, group.transactions)
    if not 1 <= group.limits.default_queues <= 1024:
        raise ConfigError(f"{where}: default_queues must be within 1..1024")
    if not 1 <= group.limits.auto_create_topic_queues <= 1024:
        raise ConfigError(f"{where}: auto_create_topic_queues must be within 1..1024")
    _validate_consumer_lease(where, group)
    group.limits.check_client_bounds(where)
    for zone in (group.zone, *(n.zone for n in group.nodes)):
        if zone is not None and not ZONE_NAME.fullmatch(zone):
            raise ConfigError(f"{where}: zone {zone!r} must match {ZONE_NAME.pattern}")


def _validate_consumer_lease(where: str, group: BrokerGroupConfig) -> None:
    """The lease bounds orderly locks; in a Raft group the quarter of it a consumer keeps
    in reserve must outlast a deposed leader (two election timeouts, check quorum)."""
    lease_ms = group.limits.consumer_lease_ms
    if not 1_000 <= lease_ms <= 600_000:
        raise ConfigError(f"{where}: consumer_lease_ms must be within 1000..600000")
    floor_ms = 8 * group.replication.election_timeout_ms
    if group.mode == "raft" and lease_ms <= floor_ms:
        raise ConfigError(
            f"{where}: consumer_lease_ms ({lease_ms}) must exceed 8 x election_timeout_ms "
            f"({floor_ms}) so that a deposed leader cannot overlap an orderly lock"
        )


def _validate_raft(where: str, group: BrokerGroupConfig) -> None:
    replication = group.replication
    if not 1 <= len(group.nodes) <= 9:
        raise ConfigError(f"{where}: a Raft group takes 1..9 nodes (3 or 5 tolerate failures)")
    missing = [n.id for n in group.nodes if n.peer_port is None]
    if missing:
        raise ConfigError(f"{where}: nodes {missing} need a peer_port (Raft traffic)")
    if replication.durability not in DURABILITIES:
        raise ConfigError(
            f"{where}: durability must be one of {DURABILITIES}, got {replication.durability!r}"
        )
    if replication.election_timeout_ms < 2 * replication.heartbeat_interval_ms:
        raise ConfigError(f"{where}: election_timeout_ms must be >= 2 x heartbeat_interval_ms")
    ids = [n.id for n in group.nodes]
    if replication.preferred_leader and replication.preferred_leader not in ids:
        raise ConfigError(
            f"{where}: preferred_leader {replication.preferred_leader!r} not in {ids}"
        )


def _validate_master_slave(where: str, group: BrokerGroupConfig) -> None:
    replication = group.replication
    if not 2 <= len(group.nodes) <= 9:
        raise ConfigError(
            f"{where}: a master/slave group takes 2..9 nodes (nodes[0] is the master, the "
            "others its slaves)"
        )
    missing = [n.id for n in group.nodes if n.peer_port is None]
    if missing:
        raise ConfigError(f"{where}: nodes {missing} need a peer_port (replication traffic)")
    if replication.ha_mode not in HA_MODES:
        raise ConfigError(
            f"{where}: replication.ha_mode must be one of {HA_MODES}, got {replication.ha_mode!r}"
        )
    low, high = SYNC_TIMEOUT_MS_RANGE
    if not low <= replication.sync_timeout_ms <= high:
        raise ConfigError(
            f"{where}: replication.sync_timeout_ms must be within {low}..{high}, got "
            f"{replication.sync_timeout_ms}"
        )
    sync = replication.ha_mode == "sync"
    if sync and replication.sync_timeout_ms >= group.limits.send_timeout_ms:
        raise ConfigError(
            f"{where}: replication.sync_timeout_ms ({replication.sync_timeout_ms}) must be below "
            f"limits.send_timeout_ms ({group.limits.send_timeout_ms}), so that a producer hears "
            "SLAVE_NOT_AVAILABLE rather than a TIMEOUT"
        )


def _check_replication_fields(where: str, mode: str, raw: dict[str, Any]) -> None:
    """Refuse a field of another mode (it would be ignored silently); an unknown mode is
    reported by `validate`."""
    if mode not in GROUP_MODES:
        return
    if mode == "master_slave":
        foreign = sorted(set(raw) & set(RAFT_FIELDS))
        if foreign:
            raise ConfigError(f"{where}: {foreign} apply to raft groups, not master_slave")
    else:
        foreign = sorted(set(raw) & set(HA_FIELDS))
        if foreign:
            raise ConfigError(f"{where}: {foreign} apply to master_slave groups, not {mode}")


_STORE_MINIMA = (
    ("flush_interval_ms", 1),
    ("checkpoint_interval_ms", 1),
    ("cq_units_per_file", 1),
    ("scrub_bytes_per_s", 0),  # 0: off
    ("restart_scan_bytes", 0),  # 0: off
)


def _validate_store(where: str, store: StoreConfig, limits: LimitsConfig) -> None:
    if store.flush not in FLUSH_MODES:
        raise ConfigError(f"{where}: flush must be one of {FLUSH_MODES}, got {store.flush!r}")
    if store.segment_size_bytes < 64 * 1024:
        raise ConfigError(f"{where}: segment_size_bytes must be at least 65536")
    if limits.max_message_bytes + 4096 > store.segment_size_bytes:
        raise ConfigError(f"{where}: max_message_bytes must fit in one segment")
    if limits.max_batch_bytes + 64 * 1024 > store.segment_size_bytes:
        raise ConfigError(f"{where}: max_batch_bytes must fit in one segment")
    if not 0.0 < store.disk_high_water_ratio <= 1.0:
        raise ConfigError(f"{where}: need 0 < disk_high_water_ratio <= 1")
    if not 0.0 <= store.disk_clean_ratio <= store.disk_high_water_ratio:
        raise ConfigError(f"{where}: need disk_clean_ratio 0 (off) or <= disk_high_water_ratio")
    for name, least in _STORE_MINIMA:
        if getattr(store, name) < least:
            raise ConfigError(f"{where}: {name} must be at least {least}")
    try:
        store.delay_levels  # noqa: B018 - parsed for its errors
    except ValueError as exc:
        raise ConfigError(f"{where}: message_delay_level: {exc}") from None


def _validate_transactions(where: str, txn: TransactionConfig) -> None:
    if not 0 <= txn.check_immunity_s <= 86_400:
        raise ConfigError(f"{where}: transactions.check_immunity_s must be within 0..86400")
    if not 0.1 <= txn.check_interval_s <= 86_400:
        raise ConfigError(f"{where}: transactions.check_interval_s must be within 0.1..86400")
    if not 1 <= txn.max_check_times <= 1_000:
        raise ConfigError(f"{where}: transactions.max_check_times must be within 1..1000")
    if not 1 <= txn.max_pending <= 1_000_000:
        raise ConfigError(f"{where}: transactions.max_pending must be within 1..1000000")


def _namesrv(item: Any) -> NamesrvConfig:
    item = _mapping(item, "namesrvs[]")
    return NamesrvConfig(
        id=_str(item, "id"),
        host=str(item.get("host", "127.0.0.1")),
        port=_port(item),
        broker_expiry_ms=_int(item, "broker_expiry_ms", 120_000),
        scan_interval_ms=_int(item, "scan_interval_ms", 10_000),
    )


def _group(item: Any, root: dict[str, Any]) -> BrokerGroupConfig:
    item = _mapping(item, "brokers[]")
    name = _str(item, "name")
    nodes = tuple(
        NodeConfig(
            id=_str(n, "id"),
            host=str(n.get("host", "127.0.0.1")),
            port=_port(n),
            peer_port=_port(n, "peer_port") if "peer_port" in n else None,
            peer_listen_port=_port(n, "peer_listen_port") if "peer_listen_port" in n else None,
            zone=_zone(n, f"{name}.nodes[].zone"),
        )
        for n in (_mapping(x, f"{name}.nodes[]") for x in _list(item, "nodes"))
    )
    store_raw = {
        **_mapping(root.get("store", {}), "store"),
        **_mapping(item.get("store", {}), "store"),
    }
    limits_raw = {
        **_mapping(root.get("limits", {}), "limits"),
        **_mapping(item.get("limits", {}), "limits"),
    }
    transactions_raw = {
        **_mapping(root.get("transactions", {}), "transactions"),
        **_mapping(item.get("transactions", {}), "transactions"),
    }
    mode = str(item.get("mode", "standalone"))
    replication_raw = _mapping(item.get("replication", {}), f"{name}.replication")
    _check_replication_fields(f"{name}.replication", mode, replication_raw)
    return BrokerGroupConfig(
        name=name,
        mode=mode,
        nodes=nodes,
        store=_dataclass_from(StoreConfig, store_raw, f"{name}.store"),
        limits=_dataclass_from(LimitsConfig, limits_raw, f"{name}.limits"),
        replication=_dataclass_from(ReplicationConfig, replication_raw, f"{name}.replication"),
        transactions=_dataclass_from(TransactionConfig, transactions_raw, f"{name}.transactions"),
        zone=_zone(item, f"{name}.zone"),
    )


def _dataclass_from(cls: type[Any], raw: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known: {sorted(fields)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        expected = type(getattr(cls(), key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # noqa: PLW2901 - YAML writes 72 for 72.0
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{where}.{key}: expected {expected.__name__}, got {value!r}")
        values[key] = value
    return cls(**values)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    return value


def _list(raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list")
    return value


def _str(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: required non-empty string, got {value!r}")
    return value


def _int(raw: dict[str, Any], key: str, default: int) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    return value


def _zone(raw: dict[str, Any], where: str) -> str | None:
    value = raw.get("zone")
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _port(raw: dict[str, Any], key: str = "port") -> int:
    port = raw.get(key)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ConfigError(f"{key}: expected 1..65535, got {port!r}")
    return port


def _unique(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ConfigError(f"duplicate {what}: {value}")
        seen.add(value)
