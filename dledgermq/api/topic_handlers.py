"""Topic admin: list, create, read, update and delete topics (through the log)."""

from __future__ import annotations

from aiohttp import web

from dledgermq.api.context import BROKER, admitted, append, existing_topic, read, topic_of
from dledgermq.broker.queries import QueueRanges
from dledgermq.broker.state import topic_delete_draft, topic_put_draft
from dledgermq.broker.topics import TopicConfig, check_client_topic, make_topic_config
from dledgermq.errors import BadRequest, TopicExists
from dledgermq.wire import read_body, respond


async def list_topics(request: web.Request) -> web.Response:
    topics = request.app[BROKER].published.topics.value
    return respond(request, {"topics": [c.to_wire() for c in sorted_topics(topics)]})


def sorted_topics(topics: dict[str, TopicConfig]) -> list[TopicConfig]:
    return [topics[name] for name in sorted(topics)]


async def create_topic(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    body = await read_body(request)
    topic = check_client_topic(body.get("topic"))
    config = make_topic_config(topic, body, default_queues=ctx.limits.default_queues)
    if topic in ctx.published.topics.value:
        raise TopicExists(f"topic {topic!r} already exists", topic=topic)
    with admitted(ctx):
        await append(ctx, [topic_put_draft(config, ctx.clock.wall_ms())])
    return respond(request, config.to_wire(), status=201)


async def update_topic(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    topic = topic_of(request)
    current = existing_topic(ctx, topic)
    body = await read_body(request)
    if body.get("topic", topic) != topic:
        raise BadRequest("the topic name cannot be changed")
    config = make_topic_config(topic, body, default_queues=ctx.limits.default_queues, base=current)
    with admitted(ctx):
        await append(ctx, [topic_put_draft(config, ctx.clock.wall_ms())])
    return respond(request, config.to_wire())


async def delete_topic(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    topic = topic_of(request)
    existing_topic(ctx, topic)
    with admitted(ctx):
        await append(ctx, [topic_delete_draft(topic, ctx.clock.wall_ms())])
    return respond(request, {"deleted": topic})


async def get_topic(request: web.Request) -> web.Response:
    ctx = request.app[BROKER]
    config = existing_topic(ctx, topic_of(request))

    ranges = await read(ctx, QueueRanges(config.topic, tuple(range(config.queue_count))))
    queues = [
        {"queue_id": queue_id, "min_offset": low, "max_offset": high}
        for queue_id, (low, high) in ranges.items()
    ]
    return respond(request, {**config.to_wire(), "queues": queues})
