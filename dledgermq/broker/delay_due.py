"""Which delayed messages are due: the delay scheduler's read of the schedule topic.

Runs on the dispatch owner's thread (the ReputActor answering the `DueDelayed` query of
`broker/queries.py`), over the Dispatcher's queues: the schedule topic's ConsumeQueue
units carry each copy's due time in their tag slot (`delay.ScheduleRecords`), so what is
due is found without reading the log.
"""

from __future__ import annotations

from typing import NamedTuple

from dledgermq.broker.delay import SCHEDULE_TOPIC, release_problem
from dledgermq.broker.dispatch import Dispatcher
from dledgermq.broker.store_reads import read_record
from dledgermq.store.record import Record


class DueMessage(NamedTuple):
    """A scheduled message whose time came (`record` None: to be passed over)."""

    queue_id: int
    queue_offset: int
    record: Record | None


def due_delayed(store: Dispatcher, now_ms: int, max_per_queue: int) -> list[DueMessage]:
    """Scheduled messages due by `now_ms`, each schedule queue in order from the
    delivered progress on. A record retention removed, or one that names no queue a
    client may receive from, comes as None (to be passed over); a damaged one raises
    CorruptData (never skipped)."""
    due = []
    for queue_id in range(store.builtin_config(SCHEDULE_TOPIC).read_queues):
        cq = store.cqs.get(SCHEDULE_TOPIC, queue_id)
        if cq is None:
            continue
        start = max(store.state.delay_progress.get(queue_id, 0), cq.min_offset)
        for unit in cq.get(start, max_per_queue):
            if unit.tag_hash > now_ms:
                break  # Each queue is in due order.
            record = read_record(store, unit.commitlog_offset, unit.size)
            problem = None if record is None else release_problem(record.properties)
            if problem is not None:
                store.passed_over(unit.commitlog_offset, SCHEDULE_TOPIC, problem)
                record = None  # Passed over: the scheduler's progress moves past it.
            due.append(DueMessage(queue_id, unit.queue_offset, record))
    return due
