"""The record handlers of a broker, composed in one place (broker/record_handlers.py).

A new kind of record the broker interprets is added here with one line: its handler, and
for a built-in topic the topic's config. The dispatch loop does not change.
"""

from __future__ import annotations

from dledgermq.broker.delay import SCHEDULE_TOPIC, ScheduleRecords, schedule_config
from dledgermq.broker.record_handlers import BuiltinTopic, RecordHandlers
from dledgermq.broker.retry import DEFAULT_LEVELS, DelayLevels
from dledgermq.broker.state import StateRecords
from dledgermq.broker.transactions import (
    FLAG_TRANSACTION_END,
    HALF_TOPIC,
    CommitCopies,
    HalfMessages,
    half_topic_config,
)


def broker_handlers(delay_levels: DelayLevels = DEFAULT_LEVELS) -> RecordHandlers:
    return RecordHandlers(
        system=StateRecords(),
        builtin={
            SCHEDULE_TOPIC: BuiltinTopic(schedule_config(delay_levels), ScheduleRecords()),
            HALF_TOPIC: BuiltinTopic(half_topic_config(), HalfMessages()),
        },
        gates={FLAG_TRANSACTION_END: CommitCopies()},
    )
