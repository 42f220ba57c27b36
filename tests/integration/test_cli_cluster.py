"""End to end through the CLI: cluster up/status/down, topic, send, consume, query.

Real processes on 127.0.0.1 started by `dledgermq cluster up --detach`; every command is
run as a user would, with --json so the test can read the answers.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_topic_send_consume_query_through_the_cli(cluster: Cluster) -> None:
    status = cluster.json("cluster", "status", str(cluster.path))
    assert [p["up"] for p in status["processes"]] == [True, True]

    created = cluster.json("topic", "create", "TopicTest", "--queues", "8")
    assert created["created"][0]["write_queues"] == 8
    assert "TopicTest" in cluster.json("topic", "list")["topics"]

    sent = cluster.json("send", "TopicTest", "hello", "--tag", "A", "--key", "k1")
    assert sent["status"] == "SEND_OK"

    consumed = cluster.json("consume", "TopicTest", "--group", "g1", "--count", "10")
    assert [m["body"] for m in consumed["messages"]] == ["hello"]
    assert consumed["messages"][0]["msg_id"] == sent["msg_id"]
    # The group committed its offsets: a second consume has nothing new.
    assert cluster.json("consume", "TopicTest", "--group", "g1", "--count", "10")["messages"] == []

    by_key = cluster.json("query", "--key", "k1")["messages"]
    assert [(m["msg_id"], m["body"], m["tags"]) for m in by_key] == [(sent["msg_id"], "hello", "A")]
    by_id = cluster.json("query", "--id", sent["msg_id"])["messages"]
    assert by_id[0]["queue_offset"] == sent["queue_offset"]


def test_cli_errors_are_one_line_and_non_zero(cluster: Cluster) -> None:
    missing = cluster.cli("send", "NoSuchTopic", "x", check=False)
    assert missing.returncode == 1
    assert "NO_ROUTE" in missing.stderr or "TOPIC_NOT_FOUND" in missing.stderr
    bad = cluster.cli("topic", "create", "bad name!", check=False)
    assert bad.returncode == 1
    assert "INVALID_TOPIC" in bad.stderr
    again = cluster.cli("cluster", "up", str(cluster.path), "--detach", check=False)
    assert again.returncode == 1
    assert "already running" in again.stderr


def test_group_progress_and_a_delayed_send_through_the_cli(cluster: Cluster) -> None:
    cluster.json("topic", "create", "Lagging", "--queues", "2")
    for body in ("a", "b", "c"):
        cluster.json("send", "Lagging", body, "--sharding-key", "one-queue")
    consumed = cluster.json("consume", "Lagging", "--group", "g2", "--count", "2")
    assert len(consumed["messages"]) == 2
    progress = cluster.json("group", "progress", "g2", "--topic", "Lagging")
    by_queue = {(q["queue_id"], q["max_offset"], q["consumer_offset"]) for q in progress["queues"]}
    assert sum(q["lag"] for q in progress["queues"]) == 1, progress
    assert any(high == 3 and done == 2 for _, high, done in by_queue), by_queue
    [read_from] = [q for q in progress["queues"] if q["consumer_offset"]]
    assert read_from["last_consumed_ms"] == consumed["messages"][1]["store_timestamp_ms"]
    never = cluster.json("group", "progress", "nobody", "--topic", "Lagging")
    assert sum(q["lag"] for q in never["queues"]) == 3  # no committed offset: all of it
    since = str(consumed["messages"][1]["store_timestamp_ms"])
    timed = cluster.json("consume", "Lagging", "--group", "g3", "--from", since, "--count", "2")
    assert [m["body"] for m in timed["messages"]] == ["b", "c"]
    bad_time = cluster.cli("consume", "Lagging", "--group", "g3", "--from", "noon", check=False)
    assert bad_time.returncode != 0
    assert "ISO 8601" in bad_time.stderr

    delayed = cluster.json("send", "Lagging", "later", "--delay-level", "1")
    assert delayed["status"] == "SEND_OK"
    bad = cluster.cli("send", "Lagging", "x", "--delay-level", "99", check=False)
    assert bad.returncode == 1
    assert "BAD_REQUEST" in bad.stderr


def test_send_count_stores_every_copy_once_and_a_sharding_key_keeps_one_queue(
    cluster: Cluster,
) -> None:
    """`send --count N` sends many at once (batched by the producer) without a sharding
    key, one at a time with one; either way every copy is stored once, in its own place."""
    cluster.json("topic", "create", "Many", "--queues", "4")
    sent = cluster.json("send", "Many", "copy", "--count", "600")["results"]
    places = {(r["queue_id"], r["queue_offset"]) for r in sent}
    assert len(sent) == len(places) == len({r["unique_key"] for r in sent}) == 600
    per_queue = [sorted(o for q, o in places if q == queue) for queue in range(4)]
    assert [offsets == list(range(len(offsets))) for offsets in per_queue] == [True] * 4
    consumed = cluster.json("consume", "Many", "--group", "g", "--count", "1000", "--wait", "1")
    assert [m["body"] for m in consumed["messages"]] == ["copy"] * 600

    keyed = cluster.json("send", "Many", "k", "--count", "5", "--sharding-key", "order-7")
    assert len({r["queue_id"] for r in keyed["results"]}) == 1
    offsets = [r["queue_offset"] for r in keyed["results"]]
    assert offsets == list(range(offsets[0], offsets[0] + 5))  # In the order sent.
