"""Transactional messages on real broker processes started through the CLI.

Goal: with the Python client, a committed transaction's message is consumed exactly once,
a rolled-back one never; a transaction left UNKNOWN is decided by the producer's check
callback; one whose producer never answers is rolled back after `max_check_times` and
`dledgermq txn list` shows it. In a Raft group whose leader is SIGKILLed with transactions
pending (checks already counted), a commit in flight and others already ended: after the
failover nothing committed is lost, nothing rolled back is delivered, nothing is delivered
twice, on every node, and the check counts carried on.

Method: clusters with short check timings (`transactions` in cluster.yml), HTTP reads of
every queue on every node, waits on conditions with deadlines.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dledgermq.client import (
    HalfMessage,
    LocalTransactionState,
    SyncTransactionProducer,
    TransactionCheck,
)
from tests.conftest import wait_until
from tests.integration.conftest import started, write_test_cluster
from tests.integration.test_raft_group import converged, leader, nodes
from tests.integration.test_retry_dlq import http

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]
QUEUES = 2


def write_cluster(tmp_path: Path, *, mode: str, max_checks: int) -> Path:
    checks = f"check_immunity_s: 1, check_interval_s: 1, max_check_times: {max_checks}"
    return write_test_cluster(tmp_path, "TxnIt", mode=mode, head=f"transactions: {{{checks}}}\n")


def bodies(addr: str, topic: str = "T") -> Counter[str]:
    """How often each body is stored in `topic` on one node (every queue)."""
    seen: Counter[str] = Counter()
    for queue in range(QUEUES):
        status, page = http(
            "GET", addr, f"/topics/{topic}/queues/{queue}/messages?offset=0&max=256"
        )
        assert status == 200, page
        seen.update(base64.b64decode(m["body_base64"]).decode() for m in page["messages"])
    return seen


def transactions(addr: str) -> dict[str, Any]:
    status, answer = http("GET", addr, "/transactions?state=all&max=1000")
    assert status == 200, answer
    return answer


class Decisions:
    """The application's local state: the outcome of each body (None: still unknown)."""

    def __init__(self, outcomes: dict[str, LocalTransactionState]) -> None:
        self.outcomes = outcomes
        self.checked: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def local(self, half: HalfMessage) -> LocalTransactionState:
        return LocalTransactionState.UNKNOWN

    def check(self, check: TransactionCheck) -> LocalTransactionState:
        body = check.message.body.decode()
        with self._lock:
            self.checked.append((body, check.check_times))
        return self.outcomes.get(body, LocalTransactionState.UNKNOWN)


def test_commit_rollback_check_back_and_expiry_with_the_client(tmp_path: Path) -> None:
    with started(write_cluster(tmp_path, mode="standalone", max_checks=3)) as cluster:
        cluster.json("topic", "create", "T", "--queues", str(QUEUES))
        addr = cluster.broker
        decisions = Decisions({"decided-by-check": LocalTransactionState.COMMIT})
        with SyncTransactionProducer(
            [cluster.namesrv], "pg", check=decisions.check, poll_wait_ms=1000
        ) as producer:
            committed = producer.send_in_transaction(
                "T", "committed", lambda half: LocalTransactionState.COMMIT, keys="k1"
            )
            assert (committed.ended, committed.state) == (True, LocalTransactionState.COMMIT)
            rolled = producer.send_in_transaction(
                "T", "rolled-back", lambda half: LocalTransactionState.ROLLBACK
            )
            assert (rolled.ended, rolled.msg_id) == (True, None)

            def failing(half: HalfMessage) -> LocalTransactionState:
                raise RuntimeError("the local transaction crashed")

            unknown = producer.send_in_transaction("T", "decided-by-check", failing)
            assert (unknown.ended, unknown.state) == (False, LocalTransactionState.UNKNOWN)
            wait_until(lambda: bodies(addr)["decided-by-check"] == 1, timeout_s=30, what="check")
            assert ("decided-by-check", 1) in decisions.checked

        # A group whose producer is gone: nobody answers, rolled back after 3 checks.
        status, orphan = http(
            "POST",
            addr,
            "/topics/T/transactions",
            {"producer_group": "gone", "message": {"body": "orphan"}},
        )
        assert status == 200, orphan

        def expired() -> dict[str, Any] | None:
            ended = transactions(addr)["ended"]
            return next((e for e in ended if e["transaction_id"] == orphan["transaction_id"]), None)

        outcome = wait_until(expired, timeout_s=30, what="the rollback after max checks")
        assert (outcome["outcome"], outcome["by"], outcome["checks"]) == (
            "rollback",
            "max_checks",
            3,
        )
        assert bodies(addr) == Counter({"committed": 1, "decided-by-check": 1})
        assert transactions(addr)["pending_total"] == 0

        listed = cluster.json("txn", "list", "--state", "ended")["brokers"]["broker-a"]["ended"]
        assert {(e["topic"], e["outcome"], e["by"]) for e in listed} == {
            ("T", "commit", "producer"),
            ("T", "rollback", "producer"),
            ("T", "rollback", "max_checks"),
        }
        assert "rollback by max_checks" in cluster.cli("txn", "list").stdout
        done = cluster.cli("txn", "list", "--max", "0", check=False)
        assert done.returncode != 0
        assert "--max" in done.stderr
        done = cluster.cli(
            "txn",
            "end",
            "broker-a",
            orphan["transaction_id"],
            "--offset",
            str(orphan["commitlog_offset"]),
            "--group",
            "gone",
            "--commit",
            check=False,
        )
        assert done.returncode != 0
        assert "TRANSACTION_CONFLICT" in done.stderr, done.stderr


def test_a_leader_kill_with_transactions_in_every_state_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    with started(write_cluster(tmp_path, mode="raft", max_checks=60)) as raft:
        raft.json("topic", "create", "T", "--queues", str(QUEUES))
        boss = wait_until(lambda: leader(raft), timeout_s=30, what="a leader")
        addr = nodes(raft)[boss]

        def half(body: str) -> dict[str, Any]:
            status, sent = http(
                "POST",
                addr,
                "/topics/T/transactions",
                {"producer_group": "pg", "message": {"body": body}},
            )
            assert status == 200, sent
            return sent

        def end(target: str, sent: dict[str, Any], outcome: str) -> tuple[int, Any]:
            body = {
                "producer_group": "pg",
                "commitlog_offset": sent["commitlog_offset"],
                "outcome": outcome,
            }
            return http("POST", target, f"/transactions/{sent['transaction_id']}/end", body)

        sent = {body: half(body) for body in ("A", "B", "C", "D", "E", "X")}
        assert end(addr, sent["A"], "commit")[0] == 200
        assert end(addr, sent["B"], "rollback")[0] == 200

        def counted() -> dict[str, int] | None:
            pending = {p["transaction_id"]: p["checks"] for p in transactions(addr)["pending"]}
            checks = {b: pending.get(sent[b]["transaction_id"], 0) for b in ("D", "E")}
            return checks if min(checks.values()) >= 1 else None

        # Nobody polls yet: D and E are checked (counted in the log), unanswered.
        before = wait_until(counted, timeout_s=20, what="check-backs counted")

        # A commit in flight while the leader dies: its outcome is unknown to the sender.
        def commit_x() -> None:
            with contextlib.suppress(OSError):  # The leader died under it: outcome unknown.
                end(addr, sent["X"], "commit")

        in_flight = threading.Thread(target=commit_x)
        in_flight.start()
        os.kill(raft.pid(boss), signal.SIGKILL)
        in_flight.join(15)
        survivors = set(nodes(raft)) - {boss}
        new = wait_until(lambda: leader(raft, among=survivors), timeout_s=30, what="a new leader")
        new_addr = nodes(raft)[new]
        raft.cli("cluster", "up", str(raft.path), "--detach")

        status, answer = end(new_addr, sent["C"], "commit")
        assert (status, answer["outcome"]) == (200, "commit"), answer
        status, answer = end(new_addr, sent["X"], "commit")  # The producer's retry.
        assert (status, answer["outcome"]) == (200, "commit"), answer
        status, answer = end(new_addr, sent["B"], "commit")
        assert (status, answer["code"]) == (409, "TRANSACTION_CONFLICT"), "a rollback was lost"
        status, answer = end(new_addr, sent["A"], "commit")
        assert (status, answer["already_ended"]) == (200, True), "a commit was lost"

        decisions = Decisions(
            {"D": LocalTransactionState.COMMIT, "E": LocalTransactionState.ROLLBACK}
        )
        with SyncTransactionProducer(
            [raft.namesrv], "pg", check=decisions.check, poll_wait_ms=1000, route_refresh_s=1.0
        ):
            wait_until(
                lambda: transactions(new_addr)["pending_total"] == 0,
                timeout_s=60,
                what="the check-backs answered by the new leader",
            )
        wait_until(lambda: converged(raft), timeout_s=30, what="every node caught up")
        ended = {e["transaction_id"]: e for e in transactions(new_addr)["ended"]}
        for body in ("D", "E"):
            assert ended[sent[body]["transaction_id"]]["checks"] > before[body], "a count was lost"
        assert {b: ended[s["transaction_id"]]["outcome"] for b, s in sent.items()} == {
            "A": "commit",
            "B": "rollback",
            "C": "commit",
            "D": "commit",
            "E": "rollback",
            "X": "commit",
        }
        for node, node_addr in nodes(raft).items():
            assert bodies(node_addr) == Counter("ACDX"), f"{node} delivers the wrong set"
            assert transactions(node_addr)["pending_total"] == 0, node


def test_a_master_slave_group_ends_transactions_on_the_master_and_its_slave_agrees(
    tmp_path: Path,
) -> None:
    with started(write_cluster(tmp_path, mode="master_slave", max_checks=2)) as pair:
        pair.json("topic", "create", "T", "--queues", str(QUEUES))
        master, slave = (n.addr for n in pair.config.groups[0].nodes)
        half = {"producer_group": "pg", "message": {"body": "m"}}
        status, error = http("POST", slave, "/topics/T/transactions", half)
        assert (status, error["code"]) == (421, "NOT_LEADER")
        status, error = http("GET", slave, "/producers/pg/checks?client_id=c")
        assert (status, error["code"]) == (421, "NOT_LEADER")
        with SyncTransactionProducer(
            [pair.namesrv], "pg", check=Decisions({}).check, poll_wait_ms=1000
        ) as producer:
            for body, state in (
                ("kept", LocalTransactionState.COMMIT),
                ("dropped", LocalTransactionState.ROLLBACK),
                ("forgotten", LocalTransactionState.UNKNOWN),  # check says UNKNOWN: expires
            ):
                producer.send_in_transaction("T", body, lambda half, s=state: s)
            wait_until(
                lambda: transactions(master)["pending_total"] == 0,
                timeout_s=30,
                what="the unanswered transaction rolled back",
            )

        def replicated() -> bool:
            return transactions(slave)["ended"] == transactions(master)["ended"]

        wait_until(replicated, timeout_s=20, what="the slave's outcomes")
        outcomes = {(e["outcome"], e["by"]) for e in transactions(slave)["ended"]}
        assert outcomes == {
            ("commit", "producer"),
            ("rollback", "producer"),
            ("rollback", "max_checks"),
        }
        assert bodies(master) == bodies(slave) == Counter(["kept"])
