"""The chaos workload: writers and a consumer that record every operation, and the drain.

- `ClientWriter` sends through the Python client (`SyncProducer`: route refresh, failover
  and retries of its own). A retried send may have been stored by an earlier attempt, so
  any error it ends with is indeterminate (`SendInfo`).
- `BatchingWriter` sends from several coroutines at once through `Producer(auto_batch=True)`,
  so the producer's batches (one request for many senders, each answered alone) face the
  faults too; its errors are indeterminate like `ClientWriter`'s.
- `HttpWriter` speaks HTTP itself, one attempt per message, following `NOT_LEADER`'s
  `leader_addr`; its errors are classified by `history.classify_send_error`.
- `Consumer` pulls every queue of every topic through the client (the writer, else a
  replica) as group `g1` and records each delivery.
- `drain` reads every queue of every topic from every node after the run has healed.

Messages are traceable: the body is the message id `writer-seq` (`SendInvoke.new`); a
body that is not (a hostile message that leaked into an honest topic) is recorded as read
anyway, never dropped, so the checker reports it as `unexpected`. The
ordered topic sends with a sharding key; the HTTP writer maps the key to a queue itself.
Every loop stops on its event and is bounded by `MAX_OPS`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
import zlib
from typing import Any

from chaos.history import (
    Read,
    Recorder,
    SendFail,
    SendInfo,
    SendInvoke,
    SendOk,
    classify_send_error,
)
from dledgermq.client import Producer, SendResult, SyncProducer, SyncPullConsumer
from dledgermq.errors import MQError

PLAIN, ORDERED = "chaos-plain", "chaos-ordered"
TOPICS = (PLAIN, ORDERED)
QUEUES = 4
KEYS = [f"k{i}" for i in range(8)]
MAX_OPS = 200_000
BATCHING_SENDERS = 8
HTTP_TIMEOUT_S = 3.0


def _http(method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        return json.loads(response.read())


class _Worker(threading.Thread):
    def __init__(self, name: str, recorder: Recorder, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.recorder = recorder
        self.stop_event = stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:  # surfaced by the runner; a broken harness fails loudly
            self.error = exc

    def work(self) -> None:
        raise NotImplementedError


def _acknowledged(invoke: SendInvoke, result: SendResult) -> SendOk:
    return SendOk(
        msg=invoke.msg,
        broker=result.queue.broker_name,
        queue=result.queue_id,
        offset=result.queue_offset,
        msg_id=result.msg_id,
    )


def _indeterminate(invoke: SendInvoke, exc: Exception) -> SendInfo:
    """A client send that failed after its retries: an earlier attempt may have stored it."""
    code = exc.code if isinstance(exc, MQError) else type(exc).__name__
    return SendInfo(msg=invoke.msg, error=code)


class ClientWriter(_Worker):
    def __init__(
        self, name: str, recorder: Recorder, stop: threading.Event, namesrv: str, topic: str
    ) -> None:
        super().__init__(name, recorder, stop)
        self._namesrv = namesrv
        self._topic = topic

    def work(self) -> None:
        producer = SyncProducer([self._namesrv], send_timeout_s=2.0, retries=3, route_refresh_s=1.0)
        producer.start()
        try:
            for seq in range(MAX_OPS):
                if self.stop_event.is_set():
                    return
                key = KEYS[seq % len(KEYS)] if self._topic == ORDERED else None
                invoke = SendInvoke.new(self.name, seq, self._topic, key)
                self.recorder.record(invoke)
                try:
                    result = producer.send(self._topic, invoke.msg, sharding_key=key)
                except Exception as exc:  # retried sends: the outcome is unknown
                    self.recorder.record(_indeterminate(invoke, exc))
                    continue
                self.recorder.record(_acknowledged(invoke, result))
        finally:
            producer.close()


class BatchingWriter(_Worker):
    def __init__(self, name: str, recorder: Recorder, stop: threading.Event, namesrv: str) -> None:
        super().__init__(name, recorder, stop)
        self._namesrv = namesrv

    def work(self) -> None:
        asyncio.run(self._senders())

    async def _senders(self) -> None:
        seqs = itertools.count()
        async with Producer(
            [self._namesrv], send_timeout_s=2.0, retries=3, route_refresh_s=1.0, auto_batch=True
        ) as producer:

            async def sender() -> None:
                for seq in seqs:
                    if seq >= MAX_OPS or self.stop_event.is_set():
                        return
                    invoke = SendInvoke.new(self.name, seq, PLAIN)
                    self.recorder.record(invoke)
                    try:
                        result = await producer.send(PLAIN, invoke.msg)
                    except Exception as exc:  # retried sends: the outcome is unknown
                        self.recorder.record(_indeterminate(invoke, exc))
                        continue
                    self.recorder.record(_acknowledged(invoke, result))

            await asyncio.gather(*(sender() for _ in range(BATCHING_SENDERS)))


class HttpWriter(_Worker):
    def __init__(
        self, name: str, recorder: Recorder, stop: threading.Event, addrs: list[str], topic: str
    ) -> None:
        super().__init__(name, recorder, stop)
        self._addrs = addrs
        self._topic = topic
        self._target = 0

    def work(self) -> None:
        for seq in range(MAX_OPS):
            if self.stop_event.is_set():
                return
            key = KEYS[seq % len(KEYS)] if self._topic == ORDERED else None
            invoke = SendInvoke.new(self.name, seq, self._topic, key)
            body: dict[str, Any] = {"messages": [{"body": invoke.msg}]}
            if key is not None:
                body["queue_id"] = zlib.crc32(key.encode()) % QUEUES
            self.recorder.record(invoke)
            addr = self._addrs[self._target]
            try:
                answer = _http("POST", f"http://{addr}/topics/{self._topic}/messages", body)
            except urllib.error.HTTPError as exc:
                error = _error_body(exc)
                code = str(error.get("code", f"HTTP_{exc.code}"))
                self.recorder.record(_failure(invoke.msg, code))
                self._follow(error.get("leader_addr"))
                continue
            except OSError as exc:  # refused (never sent) or lost mid-request (unknown)
                refused = isinstance(getattr(exc, "reason", exc), ConnectionRefusedError)
                self.recorder.record(_failure(invoke.msg, "NOT_SENT" if refused else "TIMEOUT"))
                self._follow(None)
                continue
            [result] = answer["results"]
            self.recorder.record(
                SendOk(
                    msg=invoke.msg,
                    broker="broker-a",
                    queue=result["queue_id"],
                    offset=result["queue_offset"],
                    msg_id=result["msg_id"],
                )
            )

    def _follow(self, leader_addr: object) -> None:
        if isinstance(leader_addr, str) and leader_addr in self._addrs:
            self._target = self._addrs.index(leader_addr)
        else:
            self._target = (self._target + 1) % len(self._addrs)
            self.stop_event.wait(0.05)  # Back off a little before the next node.


def _failure(msg: str, code: str) -> SendFail | SendInfo:
    if classify_send_error(code) == "fail":
        return SendFail(msg=msg, error=code)
    return SendInfo(msg=msg, error=code)


def _error_body(exc: urllib.error.HTTPError) -> dict[str, Any]:
    try:
        body = json.loads(exc.read())
    except (ValueError, OSError):
        return {}
    return body if isinstance(body, dict) else {}


class Consumer(_Worker):
    """Group g1 pulls every queue round-robin from offset 0, through the client."""

    def __init__(self, name: str, recorder: Recorder, stop: threading.Event, namesrv: str) -> None:
        super().__init__(name, recorder, stop)
        self._namesrv = namesrv

    def work(self) -> None:
        consumer = SyncPullConsumer([self._namesrv], "g1", request_timeout_s=2.0)
        consumer.start()
        offsets: dict[Any, int] = {}
        try:
            while not self.stop_event.is_set():
                for topic in TOPICS:
                    try:
                        queues = consumer.fetch_queues(topic)
                        for mq in queues:
                            self._pull(consumer, mq, offsets)
                    except Exception:  # faults make pulls fail; go on
                        self.stop_event.wait(0.1)
        finally:
            consumer.close()

    def _pull(self, consumer: SyncPullConsumer, mq: Any, offsets: dict[Any, int]) -> None:
        result = consumer.pull(mq, offsets.get(mq, 0), max_messages=64)
        for message in result.messages:
            self.recorder.record(
                Read(
                    node=None,
                    group="g1",
                    topic=mq.topic,
                    broker=mq.broker_name,
                    queue=mq.queue_id,
                    offset=message.queue_offset,
                    msg=message.body.decode(errors="backslashreplace"),
                )
            )
        offsets[mq] = result.next_offset


def _read_page(url: str, attempts: int = 100) -> dict[str, Any]:
    """One pull; CORRUPT_DATA (a damaged record, refused) is asked again while the node
    repairs it from a peer (bounded): the drain must end with every record intact."""
    for _ in range(attempts - 1):
        try:
            return _http("GET", url)
        except urllib.error.HTTPError as exc:
            if exc.code != 500 or json.loads(exc.read()).get("code") != "CORRUPT_DATA":
                raise
        time.sleep(0.1)  # Pacing the retries of another process's repair; nothing to await.
    return _http("GET", url)


def _drained_body(message: dict[str, Any]) -> str:
    """The body as text; a binary body (only a hostile message has one: `unexpected` in an
    honest topic) as its base64, so the drain records it instead of failing."""
    body = message.get("body")
    return body if isinstance(body, str) else f"base64:{message['body_base64']}"


def drain(recorder: Recorder, node: str, addr: str) -> int:
    """Read every queue of every topic on one node; returns how many messages it holds."""
    count = 0
    for topic in TOPICS:
        for queue in range(QUEUES):
            offset = 0
            while True:
                url = (
                    f"http://{addr}/topics/{topic}/queues/{queue}/messages?offset={offset}&max=256"
                )
                page = _read_page(url)
                for message in page["messages"]:
                    recorder.record(
                        Read(
                            node=node,
                            group=None,
                            topic=topic,
                            broker="broker-a",
                            queue=queue,
                            offset=message["queue_offset"],
                            msg=_drained_body(message),
                        )
                    )
                    count += 1
                if page["next_offset"] >= page["max_offset"]:
                    break
                offset = page["next_offset"]
    return count
