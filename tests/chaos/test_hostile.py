"""The hostile writer and the checker rules it brings, on hand-made histories.

Why: a node that dies of a request's content, or a 500 to a hostile request, must fail a
chaos run with the evidence (the node's last log lines, the request), while the hostile
writer's own messages never count as sends (nothing of theirs is "lost"); and the
generator must stay away from the honest topics' paths, so that only a real leak shows up
in the honest history.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from chaos.checker import UNAVAILABLE_CODES, check
from chaos.control import ChaosCluster
from chaos.history import Hostile, NodeStop, Recorder
from chaos.hostile import CASES, HOSTILE_TOPIC, Generator, Request, _sent
from chaos.workload import ORDERED, PLAIN
from dledgermq.cli import launcher
from tests.chaos.test_checker import clean


def hostile(status: int, code: str = "", case: str = "odd_heartbeat") -> Hostile:
    return Hostile(
        case=case,
        node="n1",
        method="POST",
        path="/groups/hostile-g/heartbeat",
        sent='{"client_id": "\\ud800", "strategy": "consistent_hash"}',
        status=status,
        code=code,
    )


def stop(node: str, tail: str) -> NodeStop:
    return NodeStop(node=node, pid=4242, returncode=70, log_tail=tail)


def test_a_node_that_stopped_on_its_own_fails_the_run_with_its_log_tail() -> None:
    run = clean()
    tail = "\n".join(f"line {i}" for i in range(30)) + "\nUnicodeEncodeError: surrogates"
    run.add(stop("n2", tail))
    report = run.check()
    assert not report.ok
    [found] = report.unexpected_stops
    assert (found.node, found.pid, found.returncode) == ("n2", 4242, 70)
    assert found.log_tail == tail
    data = json.loads(json.dumps(report.to_json()))
    assert data["unexpected_stops"]["count"] == 1
    assert data["unexpected_stops"]["items"][0]["log_tail"].endswith("surrogates")
    table = report.table()
    assert "unexpected_stops           1  must be 0" in table
    assert "e.g. unexpected_stops: n2 (pid 4242) exited 70" in table
    assert "    | UnicodeEncodeError: surrogates" in table
    assert "    | line 0" not in table  # only the last lines of the tail are printed


def test_a_stop_on_lost_commits_is_allowed_only_where_losses_are() -> None:
    run = clean()
    run.add(stop("n3", "raft.errors.CommittedEntryConflict: entry 17 term 2 vs 3"))
    strict = run.check()
    assert not strict.ok
    assert len(strict.unexpected_stops) == 1
    lenient = run.check(expect_lost_ok=True)
    assert lenient.ok
    assert lenient.unexpected_stops == ()
    assert [s.node for s in lenient.stops_after_loss] == ["n3"]


def test_hostile_answers_are_counted_and_a_server_error_fails_the_run() -> None:
    run = clean()
    for op in (
        hostile(400, "BAD_REQUEST"),
        hostile(421, "NOT_LEADER"),
        hostile(200),
        hostile(0, "ConnectionRefusedError"),
        hostile(503, "BUSY"),
        hostile(504, "TIMEOUT"),
    ):
        run.add(op)
    passed = run.check()
    assert passed.ok
    assert (passed.hostile_requests, passed.hostile_4xx, passed.hostile_unanswered) == (6, 2, 1)
    assert [a.code for a in passed.hostile_unavailable] == ["BUSY", "TIMEOUT"]
    assert passed.hostile_5xx == ()
    run.add(hostile(500, "INTERNAL", case="msgpack_mixed_keys"))
    run.add(hostile(502))  # not even an error body
    failed = run.check()
    assert not failed.ok
    assert [(a.case, a.status, a.code) for a in failed.hostile_5xx] == [
        ("msgpack_mixed_keys", 500, "INTERNAL"),
        ("odd_heartbeat", 502, ""),
    ]
    data = failed.to_json()
    assert (data["hostile_requests"], data["hostile_4xx"], data["hostile_5xx"]["count"]) == (
        8,
        2,
        2,
    )
    assert "hostile: 8 requests, 2 4xx, 4 5xx (2 unavailable), 1 unanswered" in failed.table()
    assert "e.g. hostile_5xx: msgpack_mixed_keys: POST /groups/hostile-g/heartbeat" in (
        failed.table()
    )
    assert "BUSY" in UNAVAILABLE_CODES
    assert "INTERNAL" not in UNAVAILABLE_CODES


def test_hostile_messages_are_no_sends_but_one_in_an_honest_topic_is_unexpected() -> None:
    run = clean()
    run.add(hostile(200, case="poisoned_delay"))
    report = run.check()
    assert report.ok
    assert report.acknowledged == 3
    assert report.lost == ()
    run.read("hostile-7", 0, 2)  # a hostile message delivered into the honest topic
    leaked = run.check()
    assert leaked.unexpected == ("hostile-7",)
    assert not leaked.ok


def test_generator_is_seeded_makes_every_case_and_keeps_off_honest_paths() -> None:
    def requests(seed: int) -> list[Request]:
        generator = Generator(random.Random(seed))
        return [generator.next() for _ in range(1_500)]

    first = requests(5)
    assert first == requests(5)
    assert {r.case for r in first} == {name for name, _ in CASES}
    for request in first:
        assert request.path.isascii()
        assert PLAIN not in request.path
        assert ORDERED not in request.path
        assert len(_sent(request)) <= 310
        if request.body is not None:
            text = request.body.decode(errors="replace")
            if PLAIN in text or ORDERED in text:  # only as a redirect of a delayed message
                assert request.case == "poisoned_delay"
                [message] = json.loads(text)["messages"]
                assert message["body"].startswith("hostile-")
    sends = [r for r in first if r.path.endswith("/messages") and r.method == "POST"]
    assert any(r.path == f"/topics/{HOSTILE_TOPIC}/messages" for r in sends)
    probe_d1 = [
        r
        for r in first
        if r.path.endswith("/heartbeat") and b"consistent_hash" in r.body and b"\\ud800" in r.body
    ]
    assert probe_d1, "the lone-surrogate consistent_hash heartbeat (probe D1) is never made"


def test_generator_learns_ids_from_successful_answers_only() -> None:
    generator = Generator(random.Random(1))
    request = generator.reserved_properties()
    generator.learn(request, 400, {"results": [{"msg_id": "A" * 32}]})
    assert generator.msg_ids == []
    generator.learn(request, 200, {"results": [{"msg_id": "B" * 32}]})
    generator.learn(request, 200, {"transaction_id": "t1", "commitlog_offset": 7})
    assert generator.msg_ids == ["B" * 32]
    assert [t["transaction_id"] for t in generator.transactions] == ["t1"]


def _child(exit_code: int | None) -> subprocess.Popen[bytes]:
    """A process that exits with `exit_code` (awaited), or one that runs until its stdin
    closes."""
    if exit_code is None:
        code = "import sys; sys.stdin.read()"
        return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    child = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({exit_code})"])
    child.wait(timeout=30)
    return child


def test_cluster_reaps_exits_it_did_not_cause_once_with_the_log_tail(tmp_path: Path) -> None:
    recorder = Recorder()
    cluster = ChaosCluster(tmp_path, recorder=recorder)
    running = _child(None)
    try:
        cluster.config.run_dir.mkdir(parents=True)
        launcher.log_file(cluster.config, "n1").write_text("starting\nValueError: REAL_QID\n")
        cluster._children = {"n1": _child(3), "n2": _child(0), "n3": running}
        cluster.down.add("n2")  # killed by the nemesis: its exit is expected
        [found] = cluster.reap()
        assert (found.node, found.returncode) == ("n1", 3)
        assert found.log_tail.endswith("ValueError: REAL_QID")
        assert list(recorder.snapshot()) == [found]
        assert "n1" in cluster.down  # heal_all starts it again
        assert cluster.reap() == []  # each exit is reported once
        assert check(recorder.snapshot(), nodes=[]).unexpected_stops[0].node == "n1"
    finally:
        assert running.stdin is not None
        running.stdin.close()
        running.wait(timeout=30)
        cluster._loop.close()
