"""Validation of the orderly fields of a consumer heartbeat (`orderly`, `held`).

An orderly member says which queues it still holds under a lease, so that a new writer
can let it keep them during its grace period (`broker/lock_grace.py`). Kept apart from
`group_handlers.py` so the heartbeat handler only gains a call.

Must not: keep state.
"""

from __future__ import annotations

from typing import Any

from dledgermq.broker.topics import MAX_QUEUES, check_topic_name
from dledgermq.errors import BadRequest

HELD_QUEUES_MAX = 4_096


def orderly_fields(body: dict[str, Any]) -> tuple[bool, tuple[tuple[str, int], ...]]:
    """`orderly` (default false) and `held` ({topic: [queue id]}, default none) as
    (orderly, sorted (topic, queue id) pairs).

    Raises:
        BadRequest: a non-boolean `orderly`, a malformed `held`, or `held` without
            `orderly` (only orderly members claim queues).
    """
    orderly = body.get("orderly", False)
    if type(orderly) is not bool:
        raise BadRequest("`orderly` must be true or false", field="orderly")
    raw = body.get("held", {})
    if not isinstance(raw, dict):
        raise BadRequest("`held` must be an object of topic -> [queue id]", field="held")
    if raw and not orderly:
        raise BadRequest("`held` goes with `orderly: true`", field="held")
    held: set[tuple[str, int]] = set()
    for topic, queue_ids in raw.items():
        check_topic_name(topic, allow_system=True)
        if not isinstance(queue_ids, list) or not all(
            type(q) is int and 0 <= q < MAX_QUEUES for q in queue_ids
        ):
            raise BadRequest(
                f"`held[{topic!r}]` must be a list of queue ids in 0..{MAX_QUEUES - 1}",
                field="held",
            )
        held.update((topic, q) for q in queue_ids)
    if len(held) > HELD_QUEUES_MAX:
        raise BadRequest(f"`held` names more than {HELD_QUEUES_MAX} queues", field="held")
    return orderly, tuple(sorted(held))
