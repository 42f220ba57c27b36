"""`dledgermq send TOPIC BODY`: one message, or `--count N` copies, through `Producer`."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable
from typing import Any

from dledgermq.cli.common import CliError, client_parser, emit, namesrv_addrs, run_async
from dledgermq.client import Producer

# `send --count N` without a sharding key: sends awaited together (auto-batched).
CLI_SENDS_IN_FLIGHT = 256


def add_commands(commands: Any) -> None:
    send = client_parser(commands, "send", "send a message")
    send.add_argument("topic")
    send.add_argument("body")
    send.add_argument("--tag")
    send.add_argument("--key", action="append", default=[], help="message key (repeatable)")
    send.add_argument("--property", action="append", default=[], help="NAME=VALUE (repeatable)")
    send.add_argument("--sharding-key", help="send to the queue this key hashes to")
    send.add_argument("--count", type=int, default=1, help="send the body N times (1..100000)")
    send.add_argument("--delay-level", type=int, default=0, help="deliver after level N's delay")
    send.add_argument("--deliver-at-ms", type=int, help="deliver at this time (epoch ms)")
    send.set_defaults(handler=send_command)


def send_command(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= 100_000:
        raise CliError("--count must be within 1..100000")
    properties = {}
    for item in args.property:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CliError(f"--property takes NAME=VALUE, got {item!r}")
        properties[name] = value

    # One sharding key's messages keep their order: one at a time. Others go many at
    # once and the producer batches them (--count 100000: seconds, not minutes).
    ordered = args.sharding_key is not None
    in_flight = 1 if ordered else CLI_SENDS_IN_FLIGHT

    async def run() -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        async with Producer(namesrv_addrs(args), auto_batch=not ordered) as producer:

            def send_one() -> Awaitable[Any]:
                return producer.send(
                    args.topic,
                    args.body,
                    tags=args.tag,
                    keys=args.key or None,
                    properties=properties or None,
                    sharding_key=args.sharding_key,
                    delay_level=args.delay_level,
                    deliver_at_ms=args.deliver_at_ms,
                )

            for start in range(0, args.count, in_flight):
                chunk = min(in_flight, args.count - start)
                sent = await asyncio.gather(*(send_one() for _ in range(chunk)))
                results += [_send_result(result) for result in sent]
        return results

    results = run_async(run())
    payload = results[0] if len(results) == 1 else {"results": results}
    emit(
        args,
        payload,
        lambda: "\n".join(
            f"SEND_OK msg_id={r['msg_id']} queue={r['broker_name']}/{r['queue_id']} "
            f"offset={r['queue_offset']}"
            for r in results
        ),
    )
    return 0


def _send_result(result: Any) -> dict[str, Any]:
    return {
        "status": "SEND_OK",
        "msg_id": result.msg_id,
        "unique_key": result.unique_key,
        "topic": result.queue.topic,
        "broker_name": result.queue.broker_name,
        "queue_id": result.queue.queue_id,
        "queue_offset": result.queue_offset,
        "commitlog_offset": result.commitlog_offset,
    }
