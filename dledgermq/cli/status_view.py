"""`dledgermq cluster status`: per-group summaries from the nodes' /status documents.

Pure: takes the config and what each process answered (None when it did not), returns
JSON-ready dicts and the text table. A Raft group's match indexes come from its leader
(only the leader knows them); a node's lag is the leader's last index minus its match, in
entries. A master/slave group's come from its master: a slave's match is its
acknowledged CommitLog offset and its lag the bytes it is behind. Whether the group takes
sends (the maintenance write-disable switch) is its writer's word.
"""

from __future__ import annotations

from typing import Any

from dledgermq.config import BrokerGroupConfig, ClusterConfig

Status = dict[str, Any] | None


def group_summary(group: BrokerGroupConfig, statuses: dict[str, Status]) -> dict[str, Any]:
    """Mode, writer, term, commit index and, per node, up/role/match/lag."""
    up = {node_id: s for node_id, s in statuses.items() if s is not None}
    writer = next((s for s in up.values() if s.get("broker_id") == 0), None)
    raft = (writer or {}).get("raft") or {}
    matches: dict[str, int] = {}
    if raft:
        for raft_id, match in raft.get("match_index", {}).items():
            node = group.node_by_raft_id(int(raft_id))
            if node is not None:
                matches[node.id] = match
        assert writer is not None
        matches[writer["node_id"]] = raft.get("persisted_index", 0)
    last: int | None = raft.get("last_index")
    ha = (writer or {}).get("ha") or {}
    if ha.get("slaves") is not None:
        assert writer is not None
        last = int(writer["write_offset"])
        matches[writer["node_id"]] = last
        for slave in ha["slaves"]:
            matches[slave["node_id"]] = slave["acked_offset"]
    nodes = []
    for node in group.nodes:
        status = statuses.get(node.id)
        match = matches.get(node.id)
        nodes.append(
            {
                "id": node.id,
                "addr": node.addr,
                "up": status is not None,
                "role": status.get("role") if status else None,
                "term": status.get("term") if status else None,
                "match_index": match,
                "lag": last - match if last is not None and match is not None else None,
                "write_offset": status.get("write_offset") if status else None,
                "dispatched_offset": status.get("dispatched_offset") if status else None,
            }
        )
    return {
        "name": group.name,
        "mode": group.mode,
        "writer": writer["node_id"] if writer else None,
        "term": writer.get("term") if writer else None,
        "commit_index": raft.get("commit_index"),
        "last_index": last,
        "writable": writer.get("writable") if writer else None,
        "zone": writer.get("zone") if writer else None,
        "nodes": nodes,
    }


def cluster_summary(config: ClusterConfig, statuses: dict[str, Status]) -> list[dict[str, Any]]:
    return [
        group_summary(group, {n.id: statuses.get(n.id) for n in group.nodes})
        for group in config.groups
    ]


def render(namesrvs: list[dict[str, Any]], groups: list[dict[str, Any]]) -> str:
    lines = []
    for ns in namesrvs:
        state = "up" if ns["up"] else "DOWN"
        lines.append(f"namesrv {ns['id']:6} {ns['addr']:21} pid {ns['pid'] or '-':>7} {state}")
    for group in groups:
        writer = group["writer"] or "NONE"
        head = f"group {group['name']} mode={group['mode']} "
        head += "leader" if group["mode"] == "raft" else "master"
        head += f"={writer}"
        if group["mode"] == "raft":
            head += f" term={_dash(group['term'])} commit={_dash(group['commit_index'])}"
        elif group["mode"] == "master_slave":
            head += " (match = acknowledged offset, lag in bytes)"
        if group.get("writable") is False:
            head += " WRITES DISABLED"
        if group.get("zone"):
            head += f" zone={group['zone']}"
        lines.append(head)
        lines.append(
            f"  {'NODE':6} {'ADDR':21} {'STATE':5} {'ROLE':13} {'MATCH':>8} {'LAG':>6} "
            f"{'WRITE':>12} {'DISPATCHED':>12}"
        )
        for node in group["nodes"]:
            lines.append(
                f"  {node['id']:6} {node['addr']:21} {'up' if node['up'] else 'DOWN':5} "
                f"{_dash(node['role']):13} {_dash(node['match_index']):>8} "
                f"{_dash(node['lag']):>6} {_dash(node['write_offset']):>12} "
                f"{_dash(node['dispatched_offset']):>12}"
            )
    return "\n".join(lines)


def _dash(value: object) -> str:
    return "-" if value is None else str(value)
