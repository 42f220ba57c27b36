"""The chaos checker on hand-made histories: each one triggers exactly one finding.

Why: the checker is the judge of every chaos run, so each rule is shown to fire on the
smallest history that breaks it and to stay quiet otherwise; a property test adds that
no correct history (dense offsets, complete drains) is ever flagged.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaos.checker import Position, Report, check
from chaos.history import (
    Fault,
    History,
    HistoryError,
    Hostile,
    NodeStop,
    Op,
    Read,
    Recorder,
    SendFail,
    SendInfo,
    SendInvoke,
    SendOk,
    classify_send_error,
    op_from_json,
)

NODES = ["n1", "n2", "n3"]
BROKER = "broker-a"


class Run:
    """A hand-made history; each op's `t` is one second after the previous unless given."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.t = 0.0

    def add(self, op: Op, t: float | None = None) -> None:
        self.t = self.t + 1.0 if t is None else t
        self.ops.append(replace(op, t=self.t))

    def invoke(self, writer: str, seq: int, key: str | None = None, t: float | None = None) -> str:
        self.add(SendInvoke.new(writer, seq, "T", key), t)
        return f"{writer}-{seq}"

    def ok(self, msg: str, queue: int, offset: int, t: float | None = None) -> None:
        self.add(SendOk(msg=msg, broker=BROKER, queue=queue, offset=offset, msg_id="x"), t)

    def send(self, writer: str, seq: int, queue: int, offset: int, key: str | None = None) -> str:
        msg = self.invoke(writer, seq, key)
        self.ok(msg, queue, offset)
        return msg

    def read(self, msg: str, queue: int, offset: int, node: str | None = None) -> None:
        position = Position("T", BROKER, queue, offset)
        self.add(_read(node, position, msg))

    def drain(self, msg: str, queue: int, offset: int, nodes: list[str] = NODES) -> None:
        for node in nodes:
            self.read(msg, queue, offset, node)

    def check(self, **options: bool) -> Report:
        return check(self.ops, nodes=NODES, **options)


def clean() -> Run:
    """Three acked sends, consumed once, drained from every node: nothing to report."""
    run = Run()
    stored = [run.send("w1", 1, 0, 0), run.send("w1", 2, 0, 1), run.send("w2", 1, 1, 0)]
    for msg, (queue, offset) in zip(stored, [(0, 0), (0, 1), (1, 0)], strict=True):
        run.read(msg, queue, offset)
        run.drain(msg, queue, offset)
    return run


def findings(report: Report) -> dict[str, int]:
    return {name: count for name, count in report.counts().items() if count}


def test_clean_history_is_ok() -> None:
    report = clean().check()
    assert findings(report) == {}
    assert report.ok
    assert (report.acknowledged, report.failed, report.indeterminate) == (3, 0, 0)
    assert report.reads == 12


def test_acknowledged_but_never_read_is_lost() -> None:
    run = clean()
    run.send("w1", 3, 0, 2)
    report = run.check()
    assert findings(report) == {"lost": 1}
    assert report.lost == ("w1-3",)
    assert not report.ok


def test_expect_lost_ok_reports_lost_as_allowed() -> None:
    run = clean()
    run.send("w1", 3, 0, 2)
    report = run.check(expect_lost_ok=True)
    assert findings(report) == {"lost_allowed": 1}
    assert report.lost_allowed == ("w1-3",)
    assert report.ok


def test_acknowledged_read_and_then_gone_from_every_node_has_vanished() -> None:
    run = clean()
    msg = run.send("w1", 3, 0, 2)
    run.read(msg, 0, 2)  # a consumer saw it; no node holds it at the end
    report = run.check()
    assert findings(report) == {"vanished": 1}
    assert not report.ok


def lost_master_tail(run: Run) -> tuple[str, str]:
    """An async master acked w1-3 at 0@2 and a consumer read it; the master died before
    its slave had it, came back without it and gave 0@2 to w1-4, which every node holds."""
    lost = run.send("w1", 3, 0, 2, key="k")
    run.read(lost, 0, 2)
    survivor = run.send("w1", 4, 0, 2, key="k")
    run.read(survivor, 0, 2)
    run.drain(survivor, 0, 2)
    return lost, survivor


def test_a_position_handed_out_again_after_an_allowed_loss_is_reuse_after_loss() -> None:
    run = clean()
    lost, _ = lost_master_tail(run)
    strict = run.check()
    assert findings(strict) == {"vanished": 1, "offset_reuse": 1}
    allowed = run.check(expect_lost_ok=True)
    assert findings(allowed) == {"lost_allowed": 1, "reuse_after_loss": 1}
    assert allowed.lost_allowed == (lost,)
    assert allowed.ok


def test_an_ack_naming_a_position_another_message_took_after_an_allowed_loss_is_excused() -> None:
    run = clean()
    run.send("w1", 3, 0, 2)  # acked, never read: the master died before anyone saw it
    survivor = run.send("w1", 4, 0, 2)
    run.drain(survivor, 0, 2)
    assert findings(run.check()) == {"lost": 1, "ack_mismatch": 1}
    assert findings(run.check(expect_lost_ok=True)) == {"lost_allowed": 1}


def test_order_behind_an_allowed_loss_is_excused_but_not_between_survivors() -> None:
    run = clean()
    lost = run.send("w1", 3, 0, 3, key="k")  # acked at 0@3, read, then lost
    run.read(lost, 0, 3)
    later = run.send("w1", 4, 0, 2, key="k")  # the restarted master's next offset
    run.drain(later, 0, 2)
    assert findings(run.check(expect_lost_ok=True)) == {"lost_allowed": 1}
    first = run.send("w1", 5, 0, 5, key="k")
    second = run.send("w1", 6, 0, 4, key="k")  # both survive, in the wrong order
    run.drain(first, 0, 5)
    run.drain(second, 0, 4)
    assert findings(run.check(expect_lost_ok=True)) == {"lost_allowed": 1, "order_violations": 1}


def test_two_surviving_messages_at_one_position_stay_offset_reuse_with_allowed_loss() -> None:
    run = clean()
    lost = run.send("w1", 3, 0, 2)
    run.read(lost, 0, 2)
    survivor, other = run.send("w1", 4, 0, 2), run.send("w2", 2, 0, 2)
    run.drain(survivor, 0, 2, nodes=["n1", "n3"])
    run.drain(other, 0, 2, nodes=["n2"])  # n2 holds something else there: divergence
    report = run.check(expect_lost_ok=True)
    assert findings(report)["offset_reuse"] == 1
    assert not report.ok


def test_read_never_invoked_is_unexpected() -> None:
    run = clean()
    run.drain("ghost-1", 0, 2)
    report = run.check()
    assert findings(report) == {"unexpected": 1}
    assert report.unexpected == ("ghost-1",)
    assert not report.ok


def test_duplicate_is_counted_and_allowed() -> None:
    run = clean()
    msg = run.send("w1", 3, 0, 3)
    run.drain(msg, 0, 2)  # an earlier attempt that timed out inside the client, stored
    run.drain(msg, 0, 3)
    report = run.check()
    assert findings(report) == {"duplicated": 1}
    assert report.ok


def test_indeterminate_send_that_showed_up_is_counted_and_allowed() -> None:
    run = clean()
    msg = run.invoke("w1", 3)
    run.add(SendInfo(msg=msg, error="TIMEOUT"))
    run.drain(msg, 0, 2)
    run.invoke("w1", 4)  # no outcome at all: also indeterminate
    report = run.check()
    assert findings(report) == {"indeterminate_seen": 1}
    assert report.indeterminate == 2
    assert report.ok


def test_definite_failure_that_showed_up_is_a_failure() -> None:
    run = clean()
    msg = run.invoke("w1", 3)
    run.add(SendFail(msg=msg, error="BAD_REQUEST"))
    run.drain(msg, 0, 2)
    report = run.check()
    assert findings(report) == {"failed_seen": 1}
    assert report.failed == 1
    assert not report.ok


def test_same_position_holding_different_messages_on_two_nodes_is_offset_reuse() -> None:
    run = clean()
    acked = run.send("w1", 3, 0, 2)
    other = run.invoke("w1", 4)
    run.add(SendInfo(msg=other, error="TIMEOUT"))
    run.drain(acked, 0, 2, ["n1", "n2"])
    run.read(other, 0, 2, "n3")
    report = run.check()
    # The indeterminate send is read, which is allowed; the divergence is the finding.
    assert findings(report) == {"offset_reuse": 1, "indeterminate_seen": 1}
    assert str(report.offset_reuse[0]) == "T/broker-a/0@2 holds w1-3, w1-4"
    assert not report.ok


def test_ack_naming_a_position_that_holds_another_message_is_a_mismatch() -> None:
    run = clean()
    msg = run.invoke("w1", 3)
    run.ok(msg, 0, 1)  # w1-2 is at offset 1; w1-3 is really stored at offset 2
    run.drain(msg, 0, 2)
    report = run.check()
    assert findings(report) == {"ack_mismatch": 1}
    mismatch = report.ack_mismatch[0]
    assert mismatch.acked == Position("T", BROKER, 0, 1)
    assert mismatch.read_at == (Position("T", BROKER, 0, 2),)
    assert mismatch.found == ("w1-2",)
    assert not report.ok


def test_key_order_inverted_in_queue_is_an_order_violation() -> None:
    run = clean()
    first = run.send("w3", 1, 2, 1, key="k3")
    second = run.send("w3", 2, 2, 0, key="k3")  # sent after first's ack, stored before it
    run.drain(first, 2, 1)
    run.drain(second, 2, 0)
    report = run.check()
    assert findings(report) == {"order_violations": 1}
    violation = report.order_violations[0]
    assert (violation.earlier, violation.later) == (first, second)
    assert (violation.earlier_offset, violation.later_offset) == (1, 0)
    assert not report.ok


def test_concurrent_sends_of_one_key_may_land_in_either_order() -> None:
    run = clean()
    first = run.invoke("w3", 1, key="k3")
    second = run.invoke("w3", 2, key="k3")  # invoked before first's ack: no order promised
    run.ok(first, 2, 1)
    run.ok(second, 2, 0)
    run.drain(first, 2, 1)
    run.drain(second, 2, 0)
    assert findings(run.check()) == {}


def test_node_lacking_a_message_its_peers_have_is_per_node_missing() -> None:
    run = clean()
    msg = run.send("w1", 3, 0, 2)
    run.drain(msg, 0, 2, ["n1", "n2"])
    report = run.check()
    assert findings(report) == {"per_node_missing": 1}
    missing = report.per_node_missing[0]
    assert (missing.node, missing.position, missing.msg) == ("n3", Position("T", BROKER, 0, 2), msg)
    assert not report.ok


def test_node_without_any_drain_is_not_drained() -> None:
    run = clean()
    run.ops = [op for op in run.ops if not (isinstance(op, Read) and op.node == "n3")]
    report = run.check()
    assert findings(report) == {"nodes_not_drained": 1}
    assert report.nodes_not_drained == ("n3",)
    assert not report.ok


def test_availability_gap_per_fault_window() -> None:
    run = Run()
    acks = {1.0: 0, 2.0: 1, 6.0: 2, 7.0: 3, 8.5: 4, 10.0: 5, 11.0: 6}
    faults = {2.5: ("kill", "start"), 5.0: ("kill", "end"), 8.0: ("pause", "start")}
    faults[10.5] = ("pause", "end")
    events = sorted([*acks, *faults])
    for seq, t in enumerate(events, start=1):
        if t in faults:
            fault, phase = faults[t]
            run.add(Fault(fault=fault, target="n2", phase=phase), t)
            continue
        msg = run.invoke("w1", seq, t=t - 0.1)
        run.ok(msg, 0, acks[t], t=t)
        run.drain(msg, 0, acks[t])
    report = run.check()
    assert findings(report) == {}
    kill, pause = report.availability.windows
    # No ack from the kill (2.5) until 6.0, past the end of the window (5.0).
    assert (kill.fault, kill.start, kill.end) == ("kill", 2.5, 5.0)
    assert kill.longest_gap_s == pytest.approx(3.5)
    assert kill.time_to_first_ack_s == pytest.approx(3.5)
    # Acks at 8.5 and 10.0 inside the pause, then 11.0: the longest gap is 8.5 -> 10.0.
    assert pause.longest_gap_s == pytest.approx(1.5)
    assert pause.time_to_first_ack_s == pytest.approx(0.5)
    # Overall: from the first invoke (0.9) through the acks; 2.0 -> 6.0 is the longest.
    assert report.availability.longest_gap_s == pytest.approx(4.0)


def test_unended_fault_window_runs_to_the_end_of_the_history() -> None:
    run = clean()
    run.add(Fault(fault="partition", target="n1|n2,n3", phase="start"), 20.0)
    run.add(Fault(fault="kill", target="n1", phase="start"), 21.0)
    run.add(Fault(fault="kill", target="n1", phase="end"), 22.0)
    run.add(Fault(fault="partition", target="n1|n2,n3", phase="end"), 30.0)
    run.add(Fault(fault="pause", target="n2", phase="start"), 31.0)
    (partition, kill, pause) = run.check().availability.windows
    # No ack after the partition at all: the outage lasts until the history ends (31.0).
    assert (partition.start, partition.end, partition.longest_gap_s) == (20.0, 30.0, 11.0)
    assert kill.time_to_first_ack_s is None
    assert (pause.end, pause.longest_gap_s) == (None, 0.0)


def test_malformed_histories_raise() -> None:
    with pytest.raises(HistoryError, match="never invoked"):
        check([SendOk(msg="w1-1", broker=BROKER, queue=0, offset=0)], nodes=NODES)
    run = clean()
    run.add(SendInfo(msg="w1-1", error="TIMEOUT"))
    with pytest.raises(HistoryError, match="two outcomes"):
        run.check()
    with pytest.raises(HistoryError, match="not in"):
        check(clean().ops, nodes=["n1", "n2"])
    with pytest.raises(HistoryError, match="without a start"):
        check([Fault(fault="kill", target="n1", phase="end")], nodes=[])


def test_report_renders_as_json_and_table() -> None:
    run = clean()
    run.send("w1", 3, 0, 2)
    report = run.check()
    data = json.loads(json.dumps(report.to_json()))
    assert data["ok"] is False
    assert data["lost"] == {"count": 1, "items": ["w1-3"]}
    assert data["per_node_missing"] == {"count": 0, "items": []}
    table = report.table()
    assert table.startswith("chaos check: FAIL")
    assert "e.g. lost: w1-3" in table


def one_of_each_op() -> History:
    return History(
        [
            SendInvoke(writer="w1", seq=17, msg="w1-17", topic="T", key="k3", t=1.5),
            SendOk(msg="w1-17", broker=BROKER, queue=3, offset=42, msg_id="AB", t=2.0),
            SendInvoke(writer="w1", seq=18, msg="w1-18", topic="T", key=None, t=2.5),
            SendFail(msg="w1-18", error="BAD_REQUEST", t=3.0),
            SendInfo(msg="w1-19", error="TIMEOUT", t=3.5),
            Read(node=None, group="g1", topic="T", broker=BROKER, queue=3, offset=42, msg="w1-17"),
            Read(node="n1", group=None, topic="T", broker=BROKER, queue=3, offset=42, msg="w1-17"),
            Fault(fault="kill", target="n2", phase="start", t=4.0),
            Hostile(
                case="odd_heartbeat",
                node="n1",
                method="POST",
                path="/groups/hostile-g/heartbeat",
                sent='{"client_id": "\\ud800"}',
                status=400,
                code="BAD_REQUEST",
                t=4.5,
            ),
            NodeStop(node="n3", pid=4242, returncode=70, log_tail="Traceback\nValueError", t=5.0),
        ]
    )


def test_jsonl_dump_and_load_round_trip(tmp_path: Path) -> None:
    history = one_of_each_op()
    path = tmp_path / "history.jsonl"
    history.dump(path)
    assert History.load(path) == history
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {
        "type": "invoke",
        "op": "send",
        "writer": "w1",
        "seq": 17,
        "msg": "w1-17",
        "topic": "T",
        "key": "k3",
        "t": 1.5,
    }


def test_bad_json_op_raises() -> None:
    with pytest.raises(HistoryError, match="unknown op type"):
        op_from_json({"type": "append"})
    with pytest.raises(HistoryError, match="missing field"):
        op_from_json({"type": "ok", "op": "send", "msg": "w1-1", "t": 1})
    with pytest.raises(HistoryError, match="phase"):
        Fault(fault="kill", target="n1", phase="middle")  # type: ignore[arg-type]


def test_only_errors_raised_before_any_append_are_definite() -> None:
    assert classify_send_error("BAD_REQUEST") == "fail"
    for code in ("NOT_LEADER", "TIMEOUT", "BUSY", "SLAVE_NOT_AVAILABLE", "SOMETHING_NEW"):
        assert classify_send_error(code) == "info"


def test_recorder_is_thread_safe_and_stamps_in_order() -> None:
    ticks = itertools.count()
    recorder = Recorder(clock=lambda: float(next(ticks)))
    threads_n, ops_n = 8, 250

    def produce(writer: str) -> None:
        for seq in range(ops_n):
            recorder.record(SendInvoke.new(writer, seq, "T"))

    threads = [threading.Thread(target=produce, args=(f"w{i}",)) for i in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    history = recorder.snapshot()
    assert len(history) == len(recorder) == threads_n * ops_n
    assert [op.t for op in history] == [float(i) for i in range(threads_n * ops_n)]
    assert len({op.msg for op in history if isinstance(op, SendInvoke)}) == threads_n * ops_n


GROUPS = {"broker-a": ["a1", "a2", "a3"], "broker-b": ["b1", "b2"]}
OUTCOMES = ("ok", "ok_stored_twice", "fail", "info_stored", "info_not_stored", "pending")


@st.composite
def correct_runs(draw: st.DrawFn) -> tuple[History, list[str]]:
    """Sequential sends per writer at dense offsets, some consumed, all drained by every node.

    Keyed sends go to the key's fixed (broker, queue), as an ordered topic shards them.
    """
    ticks = itertools.count()
    recorder = Recorder(clock=lambda: float(next(ticks)))
    next_offset: dict[tuple[str, str, int], int] = {}
    stored: list[tuple[Position, str]] = []
    seqs = dict.fromkeys(("w1", "w2", "w3"), 0)
    fault_open = False
    for _ in range(draw(st.integers(0, 25))):
        writer = draw(st.sampled_from(sorted(seqs)))
        seqs[writer] += 1
        key = draw(st.sampled_from([None, "k0", "k1", "k2"]))
        topic, broker, queue = _route(draw, key)
        invoke = SendInvoke.new(writer, seqs[writer], topic, key)
        recorder.record(invoke)
        if draw(st.booleans()):  # faults toggle on and off between sends
            fault_open = not fault_open
            recorder.record(
                Fault(fault="kill", target="a1", phase="start" if fault_open else "end")
            )
        outcome = draw(st.sampled_from(OUTCOMES))
        copies = {"ok_stored_twice": 2, "ok": 1, "info_stored": 1}.get(outcome, 0)
        for _ in range(copies):
            queue_id = (topic, broker, queue)
            offset = next_offset.get(queue_id, 0)
            next_offset[queue_id] = offset + 1
            stored.append((Position(topic, broker, queue, offset), invoke.msg))
        if outcome != "pending":  # pending: the run ended before an outcome was recorded
            recorder.record(_outcome(outcome, invoke.msg, stored[-1][0] if copies else None))
    for position, msg in stored:
        if draw(st.booleans()):
            recorder.record(_read(None, position, msg))
    nodes = [node for broker in sorted({p.broker for p, _ in stored}) for node in GROUPS[broker]]
    for node in nodes:
        for position, msg in stored:
            if node in GROUPS[position.broker]:
                recorder.record(_read(node, position, msg))
    return recorder.snapshot(), nodes


def _route(draw: st.DrawFn, key: str | None) -> tuple[str, str, int]:
    """(topic, broker, queue): any queue of "T", or the key's fixed queue of "ORDERED"."""
    if key is None:
        return "T", draw(st.sampled_from(sorted(GROUPS))), draw(st.integers(0, 2))
    return "ORDERED", sorted(GROUPS)[int(key[1]) % 2], int(key[1])


def _outcome(outcome: str, msg: str, position: Position | None) -> Op:
    if outcome in ("ok", "ok_stored_twice"):
        assert position is not None
        _, broker, queue, offset = position
        return SendOk(msg=msg, broker=broker, queue=queue, offset=offset, msg_id=msg)
    if outcome == "fail":
        return SendFail(msg=msg, error="BAD_REQUEST")
    return SendInfo(msg=msg, error="TIMEOUT")


def _read(node: str | None, position: Position, msg: str) -> Read:
    topic, broker, queue, offset = position
    group = None if node else "g1"
    return Read(
        node=node, group=group, topic=topic, broker=broker, queue=queue, offset=offset, msg=msg
    )


@settings(deadline=None)
@given(correct_runs())
def test_any_correct_history_checks_ok(run: tuple[History, list[str]]) -> None:
    history, nodes = run
    report = check(history, nodes=nodes)
    assert report.ok, report.table()
