"""The hostile writer: random and adversarial requests to every node's HTTP API, during
every chaos run, so that a request's content that ends a process or gets a 500 is found
under faults as well as in calm.

Goal: the broker contains bad input to the request (a 4xx, or accepted harmlessly) on the
leader and on followers; the checker counts the answers (`Hostile` ops: 5xx must be 0)
and every node process that exits without the nemesis killing it (`NodeStop`).

What it sends (one case per request, picked by a seeded RNG; `CASES` lists them):

- messages whose properties use the names the broker reserves (`RESERVED_PROPERTIES`)
  with hostile values (`HOSTILE_VALUES`: system and read-only topic names, huge,
  negative and Unicode-digit numbers, lone surrogates, empty strings), with and without
  delay levels and `deliver_at_ms`: the poisoned delayed messages of the security probe
  (D2-D6), including ones whose `REAL_TOPIC` names an honest topic;
- system topics in the path (`%SYS%...`, `%RETRY%`, `%DLQ%`, `%DELAY%SCHEDULE`,
  `%TRANS%HALF`): sends, reads, creates, updates and deletes;
- random bytes in `body_base64`, bad base64, bodies and fields of the wrong type, raw
  garbage under a JSON or msgpack content type, mismatched content types;
- msgpack maps with keys of mixed types and strings that are not UTF-8 (D7);
- transactions with odd properties and immunity values (D8), ends with bogus ids;
- group heartbeats with lone-surrogate client ids and `consistent_hash` (D1), odd
  strategies, zones, subscriptions and held queues; leave, release, members;
- offsets committed far beyond the queue end (or negative, or in Unicode digits), odd
  reads, queries, send-backs and DLQ resends; messages with many keys.

What it never does: send a message to an honest topic's path or change honest state by
admin calls (delete or update an honest topic, write-disable the group, move the leader):
the honest history (`chaos/workload.py`) must stay judgeable. Anything hostile that shows
up in an honest topic anyway is `unexpected` to the checker: a finding.

Bounded: at most `max_requests`, at `rate` requests per second, each with a 3 s timeout;
writes go to the leader it learnt from `NOT_LEADER` most of the time, else to a random
node. Hostile message bodies are `hostile-N` (text) or random bytes.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chaos.history import Hostile, Recorder
from chaos.workload import ORDERED, PLAIN

HOSTILE_TOPIC = "chaos-hostile"
READONLY_TOPIC = "chaos-readonly"
HOSTILE_GROUP = "hostile-g"
HOSTILE_QUEUES = 4
TIMEOUT_S = 3.0
SENT_MAX = 300  # characters of a request body kept in the history
DEFAULT_RATE = 4.0
DEFAULT_MAX_REQUESTS = 2_000

# Unicode digits that str.isdigit() and int() accept but a wire format of ASCII digits
# does not (the probe's "offset=\u0660" and D8's "\u00b2").
ARABIC_ZERO = "\u0660"
ARABIC_THREE = "\u0663"
FULLWIDTH_ONE = "\uff11"
NKO_ZERO = "\u07c0"
SUPERSCRIPT_TWO = "\u00b2"

RESERVED_PROPERTIES = (
    "REAL_TOPIC",
    "REAL_QID",
    "DELAY",
    "DELIVER_AT",
    "DUE_AT",
    "UNIQ_KEY",
    "TRAN_MSG",
    "TRANSACTION_ID",
    "PGROUP",
    "TRAN_HALF_OFFSET",
    "CHECK_IMMUNITY_TIME_IN_SECONDS",
    "RETRY_TOPIC",
    "ORIGIN_MESSAGE_ID",
    "TAGS",
    "KEYS",
    "MAX_OFFSET",
    "MIN_OFFSET",
    "WAIT",
    "RECONSUME_TIME",
    "MAX_RECONSUME_TIMES",
)
SYSTEM_TOPICS = (
    "%SYS%TOPIC",
    "%SYS%BROKER",
    "%SYS%OFFSET",
    "%SYS%DELAY",
    "%SYS%TXN",
    "%SYS%",
    "%DELAY%SCHEDULE",
    "%DELAY%1",
    "%TRANS%HALF",
    "%TRANS%OP",
    f"%RETRY%{HOSTILE_GROUP}",
    f"%DLQ%{HOSTILE_GROUP}",
    "%RETRY%",
    "%DLQ%",
)
TOPIC_VALUES = (*SYSTEM_TOPICS, READONLY_TOPIC, HOSTILE_TOPIC, "no-such-topic", "")
NUMBER_VALUES = (
    SUPERSCRIPT_TWO,
    ARABIC_ZERO,
    FULLWIDTH_ONE,
    NKO_ZERO,
    "-1",
    "-0",
    "0",
    "+1",
    " 1",
    "1_000",
    "0x10",
    "1e3",
    "1.5",
    "nan",
    "inf",
    "3000000000",
    "18446744073709551616",
    "-9223372036854775809",
    "9" * 40,
    "not-a-number",
)
HOSTILE_VALUES = (
    *NUMBER_VALUES,
    *TOPIC_VALUES,
    "",
    "\ud800",
    "\udfff",
    "a\ud800b",
    "a\x00b",
    "true",
    "false",
    "null",
    "\u202e",
    "x" * 5000,
)
# msgpack of {"perm": 4}: what %SYS%BROKER stores to write-disable the group (probe D4).
PERM_READ_ONLY = "gaRwZXJtBA=="
ODD_NUMBERS: tuple[Any, ...] = (
    -1,
    0,
    1,
    2,
    3,
    18,
    19,
    99,
    2**31,
    2**63,
    2**64,
    -(2**63) - 1,
    1.5,
    float("1e308"),
    "1",
    SUPERSCRIPT_TWO,
    True,
    None,
    [],
    {},
)


@dataclass(frozen=True, slots=True)
class Request:
    case: str
    method: str
    path: str
    body: bytes | None = None
    content_type: str | None = "application/json"
    write: bool = False  # goes to the leader learnt from NOT_LEADER, mostly

    def __post_init__(self) -> None:
        assert self.path.isascii(), self.path  # odd text is percent-encoded (`_quote`)


def _json(value: Any) -> bytes:
    """JSON text; lone surrogates become `\\ud800` escapes, which JSON allows."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode()


def _quote(text: str) -> str:
    """Percent-encoded UTF-8; a lone surrogate becomes its (invalid) 3-byte encoding."""
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


def _query(**params: str) -> str:
    return "&".join(f"{name}={_quote(value)}" for name, value in params.items())


def _mp_str(raw: bytes) -> bytes:
    """A msgpack str of raw bytes (need not be UTF-8)."""
    assert len(raw) < 256
    return (bytes([0xA0 | len(raw)]) if len(raw) < 32 else bytes([0xD9, len(raw)])) + raw


def _mp_map(pairs: list[tuple[bytes, bytes]]) -> bytes:
    assert len(pairs) < 16
    return bytes([0x80 | len(pairs)]) + b"".join(k + v for k, v in pairs)


def _mp_array(items: list[bytes]) -> bytes:
    assert len(items) < 16
    return bytes([0x90 | len(items)]) + b"".join(items)


def _mp_int(value: int) -> bytes:
    assert 0 <= value < 128
    return bytes([value])


def _mp_bin(raw: bytes) -> bytes:
    assert len(raw) < 256
    return bytes([0xC4, len(raw)]) + raw


class Generator:
    """Makes one hostile request after another from a seeded RNG (pure but for the RNG and
    what earlier answers taught it: message and transaction ids to reuse)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.seq = 0
        self.msg_ids: list[str] = []
        self.transactions: list[dict[str, Any]] = []

    def next(self) -> Request:
        name, make = self.rng.choice(CASES)
        request = make(self)
        assert request.case == name, (request.case, name)
        return request

    def learn(self, request: Request, status: int, answer: Any) -> None:
        """Keep ids from successful answers for later reads, send-backs and ends."""
        if not 200 <= status < 300 or not isinstance(answer, dict):
            return
        for result in answer.get("results", []):
            if isinstance(result, dict) and isinstance(result.get("msg_id"), str):
                self.msg_ids = [*self.msg_ids[-31:], result["msg_id"]]
        if isinstance(answer.get("transaction_id"), str):
            self.transactions = [*self.transactions[-15:], answer]

    # -- helpers -----------------------------------------------------------------------

    def _pick(self, values: tuple[Any, ...]) -> Any:
        return self.rng.choice(values)

    def _body_id(self) -> str:
        self.seq += 1
        return f"hostile-{self.seq}"

    def _random_bytes(self, most: int = 512) -> bytes:
        return self.rng.randbytes(self.rng.randrange(most + 1))

    def _properties(self, count_max: int = 4) -> dict[str, str]:
        names = self.rng.sample(RESERVED_PROPERTIES, self.rng.randint(1, count_max))
        return {name: self._pick(HOSTILE_VALUES) for name in names}

    def _message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"properties": self._properties()}
        if self.rng.random() < 0.3:
            message["body_base64"] = base64.b64encode(self._random_bytes()).decode()
        else:
            message["body"] = self._body_id()
        if self.rng.random() < 0.4:
            message["delay_level"] = self._pick(ODD_NUMBERS)
        if self.rng.random() < 0.2:
            message["deliver_at_ms"] = self._pick(ODD_NUMBERS)
        if self.rng.random() < 0.3:
            message["tags"] = self._pick(HOSTILE_VALUES)
        if self.rng.random() < 0.3:
            message["keys"] = [self._pick(HOSTILE_VALUES) for _ in range(self.rng.randint(1, 4))]
        return message

    def _send(self, case: str, topic: str, body: bytes, content_type: str | None = None) -> Request:
        return Request(
            case,
            "POST",
            f"/topics/{_quote(topic)}/messages",
            body,
            content_type or "application/json",
            write=True,
        )

    # -- cases -------------------------------------------------------------------------

    def reserved_properties(self) -> Request:
        messages = [self._message() for _ in range(self.rng.randint(1, 3))]
        body: dict[str, Any] = {"messages": messages}
        if self.rng.random() < 0.3:
            body["queue_id"] = self._pick(ODD_NUMBERS)
        return self._send("reserved_properties", HOSTILE_TOPIC, _json(body))

    def poisoned_delay(self) -> Request:
        """The probe's D2-D6: a delayed message whose REAL_TOPIC/REAL_QID the scheduler
        would trust (also an honest topic: anything landing there is `unexpected`)."""
        real_topic = self._pick((*TOPIC_VALUES, PLAIN, ORDERED))
        properties = {
            "REAL_TOPIC": real_topic,
            "REAL_QID": self._pick(("0", "1", *NUMBER_VALUES, "", "\ud800")),
        }
        if self.rng.random() < 0.3:
            properties["DELAY"] = self._pick(NUMBER_VALUES)
        message: dict[str, Any] = {
            "delay_level": self._pick((1, 1, 2, 3)),
            "properties": properties,
        }
        if real_topic in (PLAIN, ORDERED):
            message["body"] = self._body_id()
        else:
            message["body_base64"] = self._pick(
                (
                    PERM_READ_ONLY,
                    base64.b64encode(b"not msgpack").decode(),
                    base64.b64encode(self._random_bytes(64)).decode(),
                )
            )
        return self._send("poisoned_delay", HOSTILE_TOPIC, _json({"messages": [message]}))

    def system_topic_path(self) -> Request:
        topic = self._pick(SYSTEM_TOPICS)
        quoted = _quote(topic)
        choice = self.rng.randrange(6)
        body: dict[str, Any]
        if choice == 0:
            body = {"messages": [{"body_base64": PERM_READ_ONLY}]}
            return Request("system_topic_path", "POST", f"/topics/{quoted}/messages", _json(body))
        if choice == 1:
            message = self._message()
            return self._send("system_topic_path", topic, _json({"messages": [message]}))
        if choice == 2:
            query = _query(offset=self._pick(("0", "1", "-1", ARABIC_ZERO)), max="8")
            path = f"/topics/{quoted}/queues/{self._pick(('0', '1', '17'))}/messages?{query}"
            return Request("system_topic_path", "GET", path, None, None)
        if choice == 3:
            body = {"topic": topic, "queues": self._pick((1, 4, 0, -1, 10**6)), "perm": 6}
            return Request("system_topic_path", "POST", "/topics", _json(body), write=True)
        if choice == 4:
            body = {"perm": self._pick((2, 4, 6, 0, 7, -1)), "write_queues": 1}
            return Request("system_topic_path", "PUT", f"/topics/{quoted}", _json(body), write=True)
        return Request("system_topic_path", "DELETE", f"/topics/{quoted}", None, None, write=True)

    def random_bytes(self) -> Request:
        choice = self.rng.randrange(4)
        if choice == 0:
            data = base64.b64encode(self._random_bytes()).decode()
            body = _json({"messages": [{"body_base64": data}]})
            return self._send("random_bytes", HOSTILE_TOPIC, body)
        if choice == 1:
            bad = self._pick(("!!!", "a", "====", "gaRwZXJtBA", "\ud800", "🎉"))
            body = _json({"messages": [{"body_base64": bad}]})
            return self._send("random_bytes", HOSTILE_TOPIC, body)
        content_type = self._pick(("application/json", "application/msgpack"))
        return self._send("random_bytes", HOSTILE_TOPIC, self._random_bytes(), content_type)

    def wrong_types(self) -> Request:
        odd = self._pick((*ODD_NUMBERS, "x", "\ud800", [{"body": "x"}]))
        field = self.rng.randrange(8)
        message: dict[str, Any] = {"body": self._body_id()}
        body: dict[str, Any] = {"messages": [message]}
        if field == 0:
            message["body"] = odd
        elif field == 1:
            body["messages"] = odd
        elif field == 2:
            message["properties"] = self._pick((["REAL_TOPIC"], "x", {"DELAY": 1}, {"": ""}, odd))
        elif field == 3:
            message["keys"] = odd
        elif field == 4:
            message["tags"] = odd
        elif field == 5:
            body["queue_id"] = odd
        elif field == 6:
            message["delay_level"] = odd
            message["deliver_at_ms"] = self._pick(ODD_NUMBERS)
        else:
            return self._send("wrong_types", HOSTILE_TOPIC, _json(odd))
        return self._send("wrong_types", HOSTILE_TOPIC, _json(body))

    def msgpack_mixed_keys(self) -> Request:
        """The probe's D7: msgpack maps whose keys are not all strings, strings that are
        not UTF-8, properties with int keys or values."""
        odd_key = self._pick((_mp_int(1), _mp_bin(b"k"), _mp_str(b"\xed\xa0\x80"), b"\xc0"))
        variants = [
            [(_mp_str(b"body"), _mp_str(b"x")), (odd_key, _mp_int(2))],
            [(_mp_str(b"body"), _mp_str(b"\xed\xa0\x80"))],
            [
                (_mp_str(b"body"), _mp_bin(b"x")),
                (_mp_str(b"properties"), _mp_map([(odd_key, _mp_str(b"v"))])),
            ],
            [
                (_mp_str(b"body"), _mp_bin(b"x")),
                (_mp_str(b"properties"), _mp_map([(_mp_str(b"REAL_QID"), _mp_int(7))])),
            ],
            [(odd_key, _mp_bin(b"x"))],
        ]
        message = _mp_map(self._pick(tuple(variants)))
        pairs = [(_mp_str(b"messages"), _mp_array([message]))]
        if self.rng.random() < 0.3:
            pairs.append((odd_key, _mp_int(3)))
        body = _mp_map(pairs)
        return self._send("msgpack_mixed_keys", HOSTILE_TOPIC, body, "application/msgpack")

    def odd_transaction(self) -> Request:
        """The probe's D8: half messages with odd properties and immunity values; ends
        with bogus or real ids (commit, rollback, unknown, something else)."""
        if self.transactions and self.rng.random() < 0.3:
            known = self._pick(tuple(self.transactions))
            body = {
                "producer_group": self._pick((known.get("producer_group"), "other", "\ud800")),
                "commitlog_offset": self._pick((known.get("commitlog_offset"), -1, 2**63, "0")),
                "outcome": self._pick(("commit", "rollback", "unknown", "maybe", 1)),
            }
            path = f"/transactions/{_quote(str(known['transaction_id']))}/end"
            return Request("odd_transaction", "POST", path, _json(body), write=True)
        if self.rng.random() < 0.15:
            tid = self._pick(("x", "\ud800", "0" * 64, "%SYS%TXN", "../status"))
            body = {"producer_group": "pg", "commitlog_offset": self._pick(ODD_NUMBERS)}
            body["outcome"] = "commit"
            path = f"/transactions/{_quote(tid)}/end"
            return Request("odd_transaction", "POST", path, _json(body), write=True)
        properties = {
            "CHECK_IMMUNITY_TIME_IN_SECONDS": self._pick((*NUMBER_VALUES, "", "\ud800")),
            **self._properties(3),
        }
        message: dict[str, Any] = {"body": self._body_id(), "properties": properties}
        tx: dict[str, Any] = {
            "producer_group": self._pick(("pg1", "", "\ud800", 7)),
            "message": message,
        }
        if self.rng.random() < 0.4:
            tx["check_immunity_s"] = self._pick(ODD_NUMBERS)
        if self.rng.random() < 0.2:
            message["delay_level"] = 1
        if self.rng.random() < 0.2:
            tx["queue_id"] = self._pick(ODD_NUMBERS)
        topic = self._pick((HOSTILE_TOPIC, HOSTILE_TOPIC, READONLY_TOPIC, *SYSTEM_TOPICS[:4]))
        path = f"/topics/{_quote(topic)}/transactions"
        return Request("odd_transaction", "POST", path, _json(tx), write=True)

    def odd_heartbeat(self) -> Request:
        """The probe's D1: a lone-surrogate client id with `consistent_hash`, and other odd
        members, strategies, zones and held queues; leave, release and members too."""
        client = self._pick(("\ud800", "\udfff", "a\ud800", "", "\x00", "c" * 3000, "hostile-c"))
        group = _quote(self._pick((HOSTILE_GROUP, HOSTILE_GROUP, "\ud800", "%SYS%g")))
        choice = self.rng.randrange(5)
        if choice == 1:
            body = {"client_id": client}
            return Request("odd_heartbeat", "POST", f"/groups/{group}/leave", _json(body))
        if choice == 2:
            body = {"client_id": client, "topic": HOSTILE_TOPIC, "queue_ids": [-1, 2**40, "0"]}
            return Request("odd_heartbeat", "POST", f"/groups/{group}/release", _json(body))
        if choice == 3:
            return Request("odd_heartbeat", "GET", f"/groups/{group}/members", None, None)
        subscriptions = self._pick(
            (
                {HOSTILE_TOPIC: "*"},
                {HOSTILE_TOPIC: "a||\ud800"},
                {"%SYS%TOPIC": "*"},
                {"": ""},
                {HOSTILE_TOPIC: 5},
                [HOSTILE_TOPIC],
            )
        )
        body = {
            "client_id": client,
            "subscriptions": subscriptions,
            "strategy": self._pick(
                ("consistent_hash", "consistent_hash", "zone_aware", "average_by_circle", "x", 1)
            ),
        }
        if self.rng.random() < 0.4:
            body["zone"] = self._pick(("\ud800", "", "z" * 1000, 3))
        if self.rng.random() < 0.3:
            body["orderly"] = True
            body["held"] = self._pick(({HOSTILE_TOPIC: [-1, 2**40, "0"]}, {"x": 1}, []))
        return Request("odd_heartbeat", "POST", f"/groups/{group}/heartbeat", _json(body))

    def far_offsets(self) -> Request:
        """Offsets committed far beyond the queue end, negative, or in Unicode digits."""
        if self.rng.random() < 0.3:
            topic = self._pick((HOSTILE_TOPIC, "%SYS%OFFSET", "\ud800"))
            path = f"/groups/{HOSTILE_GROUP}/progress?" + _query(topic=topic)
            return Request("far_offsets", "GET", path, None, None)
        offsets = {
            self._pick(
                ("0", "1", "99999", "-1", "x", SUPERSCRIPT_TWO, ARABIC_ZERO, "")
            ): self._pick((10**15, 2**63, 2**64, -5, ARABIC_ZERO, "1", 1.5, None))
            for _ in range(self.rng.randint(1, 4))
        }
        body = {
            "topic": self._pick((HOSTILE_TOPIC, "%SYS%OFFSET", "no-such-topic")),
            "offsets": offsets,
        }
        return Request(
            "far_offsets", "POST", f"/groups/{HOSTILE_GROUP}/offsets", _json(body), write=True
        )

    def many_keys(self) -> Request:
        count = self.rng.choice((100, 1_000, 5_000))
        keys = [f"k{self.rng.randrange(10**6)}" for _ in range(count)]
        message: dict[str, Any] = {"body": self._body_id(), "keys": keys}
        if self.rng.random() < 0.3:
            message["properties"] = {"KEYS": " ".join(keys[:500]), "UNIQ_KEY": "dup-key"}
        return self._send("many_keys", HOSTILE_TOPIC, _json({"messages": [message]}))

    def odd_reads(self) -> Request:
        choice = self.rng.randrange(5)
        if choice == 0:
            queue = self._pick(("0", ARABIC_ZERO, "-1", "99999", SUPERSCRIPT_TWO, "1.0"))
            query = _query(
                offset=self._pick(
                    (ARABIC_ZERO, " 0", "-1", "1e3", "9" * 30, "0", "", SUPERSCRIPT_TWO)
                ),
                max=self._pick(("0", "-1", "257", ARABIC_THREE, "8")),
                tags=self._pick(("*", "a||b", "\ud800", "||", "")),
                wait_ms=self._pick(("0", "-1", ARABIC_ZERO)),
            )
            path = f"/topics/{HOSTILE_TOPIC}/queues/{_quote(queue)}/messages?{query}"
        elif choice == 1:
            known = self._pick(tuple(self.msg_ids)) if self.msg_ids else "0" * 32
            msg_id = self._pick((known, "f" * 32, "\ud800", "x", "0" * 33, "dup-key"))
            path = f"/messages/{_quote(msg_id)}"
        elif choice == 2:
            key = self._pick(("\ud800", "dup-key", "k1", "", "%SYS%"))
            path = "/messages?" + _query(key=key, max=self._pick(("64", "65", "-1", ARABIC_ZERO)))
        elif choice == 3:
            stamp = self._pick(("-1", ARABIC_ZERO, "9" * 30, "nan", "0"))
            path = f"/topics/{HOSTILE_TOPIC}/queues/0/offset-by-time?" + _query(timestamp_ms=stamp)
        else:
            offset = self._pick(("-1", ARABIC_ZERO, "9" * 25))
            path = f"/groups/{HOSTILE_GROUP}/dlq?" + _query(offset=offset)
        return Request("odd_reads", "GET", path, None, None)

    def odd_send_back(self) -> Request:
        ids = [self._pick((*self.msg_ids[-4:], "f" * 32, "", "\ud800", "0" * 32))]
        if self.rng.random() < 0.5:
            body: dict[str, Any] = {
                "msg_ids": ids,
                "max_reconsume_times": self._pick(ODD_NUMBERS),
                "dead_letter": self._pick((True, False, "yes")),
                "reconsume_times": self._pick(ODD_NUMBERS),
            }
            path = f"/groups/{HOSTILE_GROUP}/send-back"
        else:
            body = self._pick(({"msg_ids": ids}, {"all": True, "max": self._pick(ODD_NUMBERS)}))
            path = f"/groups/{HOSTILE_GROUP}/dlq/resend"
        return Request("odd_send_back", "POST", path, _json(body), write=True)

    def odd_content_type(self) -> Request:
        body = _json({"messages": [{"body": self._body_id()}]})
        content_type = self._pick(
            (
                "application/msgpack",
                "text/plain",
                None,
                "application/json; charset=utf-16",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
            )
        )
        if self.rng.random() < 0.3:
            body = "\ufeff".encode("utf-16") + body
        return Request(
            "odd_content_type",
            "POST",
            f"/topics/{HOSTILE_TOPIC}/messages",
            body,
            content_type,
            write=True,
        )


CASES: tuple[tuple[str, Callable[[Generator], Request]], ...] = tuple(
    (name, getattr(Generator, name))
    for name in (
        "reserved_properties",
        "poisoned_delay",
        "system_topic_path",
        "random_bytes",
        "wrong_types",
        "msgpack_mixed_keys",
        "odd_transaction",
        "odd_heartbeat",
        "far_offsets",
        "many_keys",
        "odd_reads",
        "odd_send_back",
        "odd_content_type",
    )
)


def _sent(request: Request) -> str:
    if request.body is None:
        return ""
    if request.content_type == "application/msgpack" or not request.body.isascii():
        return "hex:" + request.body[: SENT_MAX // 2].hex()
    return request.body[:SENT_MAX].decode()


@dataclass(frozen=True, slots=True)
class HostileOptions:
    seed: int
    rate: float = DEFAULT_RATE  # requests per second
    max_requests: int = DEFAULT_MAX_REQUESTS

    def __post_init__(self) -> None:
        assert self.rate > 0, self.rate
        assert self.max_requests >= 0, self.max_requests


class HostileWriter(threading.Thread):
    """Sends `Generator`'s requests at `rate` per second, at most `max_requests`, until
    `stop`; records each with its status as a `Hostile` op."""

    def __init__(
        self,
        name: str,
        recorder: Recorder,
        stop: threading.Event,
        addrs: dict[str, str],
        options: HostileOptions,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.recorder = recorder
        self.stop_event = stop
        self.error: BaseException | None = None
        self._addrs = addrs
        self._rng = random.Random(options.seed)
        self._generator = Generator(random.Random(options.seed + 1))
        self._interval = 1.0 / options.rate
        self._max = options.max_requests
        self._leader = next(iter(addrs))

    def run(self) -> None:
        try:
            for _ in range(self._max):
                if self.stop_event.wait(self._interval):  # The rate limit, not a sync.
                    return
                self._one(self._generator.next())
        except BaseException as exc:  # surfaced by the runner; a broken harness fails loudly
            self.error = exc

    def _one(self, request: Request) -> None:
        node = self._leader
        if not request.write or self._rng.random() < 0.3:
            node = self._rng.choice(list(self._addrs))
        status, code, answer = _exchange(self._addrs[node], request)
        self.recorder.record(
            Hostile(
                case=request.case,
                node=node,
                method=request.method,
                path=request.path[:SENT_MAX],
                sent=_sent(request),
                status=status,
                code=code,
            )
        )
        self._generator.learn(request, status, answer)
        if status == 421 and isinstance(answer, dict):
            leader = [n for n, a in self._addrs.items() if a == answer.get("leader_addr")]
            self._leader = leader[0] if leader else self._leader


def _exchange(addr: str, request: Request) -> tuple[int, str, Any]:
    """(status, error code, parsed answer); status 0 when no answer came."""
    headers = {} if request.content_type is None else {"Content-Type": request.content_type}
    outgoing = urllib.request.Request(
        f"http://{addr}{request.path}", data=request.body, method=request.method, headers=headers
    )
    try:
        with urllib.request.urlopen(outgoing, timeout=TIMEOUT_S) as response:
            return response.status, "", _parse(response.read())
    except urllib.error.HTTPError as exc:
        try:
            answer = _parse(exc.read())
        except (OSError, http.client.HTTPException):
            answer = None
        code = answer.get("code", "") if isinstance(answer, dict) else ""
        return exc.code, str(code), answer
    except (OSError, ValueError, http.client.HTTPException) as exc:  # no answer: refused,
        # reset, cut short or timed out
        reason = getattr(exc, "reason", exc)
        return 0, type(reason).__name__, None


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
