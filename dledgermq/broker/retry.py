"""Retry and dead-letter policy for messages a consumer failed to process (RocketMQ's).

A failed message is sent back to the group's retry topic with a growing delay (delay level
3 + reconsume_times: 10s, 30s, 1m ... 2h); after `max_reconsume_times` failures it goes to
the group's dead-letter topic, where nothing consumes it until an operator looks.

Pure: no clock (callers pass `now_ms`), no I/O. The delay scheduler and the consume path
act on the decisions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dledgermq.broker.topics import TOPIC_NAME, check_group_name
from dledgermq.errors import BadRequest

DEFAULT_DELAY_LEVELS = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
# Bounds keep a typo ("10000d") from parking messages for decades.
LEVELS_MAX = 64
DELAY_MAX_MS = 30 * UNIT_MS["d"]
_LEVEL = re.compile(r"^([0-9]{1,9})([smhd])$")

# topics.TOPIC_NAME's length bound (checked below, so a change there cannot go unnoticed).
TOPIC_NAME_MAX = 127
assert TOPIC_NAME.fullmatch("a" * TOPIC_NAME_MAX)
assert not TOPIC_NAME.fullmatch("a" * (TOPIC_NAME_MAX + 1))
RETRY_PREFIX = "%RETRY%"
DLQ_PREFIX = "%DLQ%"
# Level 1 (1s) and 2 (5s) are too short for a consumer to recover; retries start at 10s.
FIRST_RETRY_LEVEL = 3
MAX_RECONSUME_TIMES_DEFAULT = 16
MAX_RECONSUME_TIMES_LIMIT = 1000


class DelayLevelsError(BadRequest, ValueError):
    """A bad delay-level string: a BadRequest on the API, a ValueError for config.py."""


@dataclass(frozen=True, slots=True)
class DelayLevels:
    """Delay levels 1..N, each a fixed delay (RocketMQ's `messageDelayLevel`)."""

    delays_ms: tuple[int, ...]

    def __post_init__(self) -> None:
        assert 1 <= len(self.delays_ms) <= LEVELS_MAX, self.delays_ms
        assert all(0 < d <= DELAY_MAX_MS for d in self.delays_ms), self.delays_ms

    @classmethod
    def parse(cls, text: str = DEFAULT_DELAY_LEVELS) -> DelayLevels:
        """Parse space-separated `<n><unit>` delays, unit one of s m h d.

        Raises:
            DelayLevelsError: empty, too many levels, a malformed token, a zero delay or
                one above `DELAY_MAX_MS`; the message names the offending token.
        """
        if not isinstance(text, str):
            raise DelayLevelsError(f"delay levels must be a string, got {text!r}")
        tokens = text.split()
        if not 1 <= len(tokens) <= LEVELS_MAX:
            raise DelayLevelsError(
                f"delay levels need 1..{LEVELS_MAX} space-separated delays like "
                f"'1s 5s 1m 2h', got {len(tokens)}"
            )
        return cls(tuple(_parse_delay(i, token) for i, token in enumerate(tokens, start=1)))

    @property
    def count(self) -> int:
        """The highest level (levels are numbered from 1)."""
        return len(self.delays_ms)

    def delay_ms(self, level: int) -> int:
        """How long a message sent at `level` waits.

        Raises:
            BadRequest: `level` is not within 1..count.
        """
        if type(level) is not int or not 1 <= level <= self.count:
            raise BadRequest(f"delay level must be within 1..{self.count}, got {level!r}")
        return self.delays_ms[level - 1]

    def due_ms(self, level: int, now_ms: int) -> int:
        """When a message stored at `now_ms` with `level` becomes deliverable."""
        return now_ms + self.delay_ms(level)


def _parse_delay(level: int, token: str) -> int:
    match = _LEVEL.fullmatch(token)
    if match is None:
        raise DelayLevelsError(
            f"delay level {level} is {token!r}: expected a whole number and a unit "
            f"(s, m, h or d), like '10s' or '2h'"
        )
    delay_ms = int(match.group(1)) * UNIT_MS[match.group(2)]
    if not 0 < delay_ms <= DELAY_MAX_MS:
        raise DelayLevelsError(f"delay level {level} is {token!r}: must be within 1s..30d")
    return delay_ms


DEFAULT_LEVELS = DelayLevels.parse()


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Send the message to the retry topic at `delay_level`; it then carries
    `reconsume_times` (one more failure than before)."""

    delay_level: int
    delay_ms: int
    reconsume_times: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Give up: send the message to the dead-letter topic after `reconsume_times` failures."""

    reconsume_times: int


RetryDecision = RetryLater | DeadLetter


def next_retry(
    reconsume_times: int,
    max_reconsume_times: int = MAX_RECONSUME_TIMES_DEFAULT,
    levels: DelayLevels = DEFAULT_LEVELS,
) -> RetryDecision:
    """What to do with a message that failed after `reconsume_times` earlier retries.

    Args:
        reconsume_times: retries the message already had (0 on its first failure).
        max_reconsume_times: retries allowed before dead-lettering (0: straight to the DLQ).
        levels: the broker's delay levels.

    Raises:
        BadRequest: a negative count, or a maximum above `MAX_RECONSUME_TIMES_LIMIT`.
    """
    if type(reconsume_times) is not int or reconsume_times < 0:
        raise BadRequest(f"reconsume_times must be a non-negative integer, got {reconsume_times!r}")
    if type(max_reconsume_times) is not int or not (
        0 <= max_reconsume_times <= MAX_RECONSUME_TIMES_LIMIT
    ):
        raise BadRequest(
            f"max_reconsume_times must be within 0..{MAX_RECONSUME_TIMES_LIMIT}, "
            f"got {max_reconsume_times!r}"
        )
    if reconsume_times >= max_reconsume_times:
        return DeadLetter(reconsume_times)
    level = min(FIRST_RETRY_LEVEL + reconsume_times, levels.count)
    return RetryLater(level, levels.delay_ms(level), reconsume_times + 1)


def retry_topic(group: str) -> str:
    """The topic a group's failed messages wait in before redelivery to that group."""
    return _group_topic(RETRY_PREFIX, group)


def dlq_topic(group: str) -> str:
    """The topic a group's messages go to after their last retry."""
    return _group_topic(DLQ_PREFIX, group)


def is_retry_topic(topic: str) -> bool:
    return topic.startswith(RETRY_PREFIX)


def is_dlq_topic(topic: str) -> bool:
    return topic.startswith(DLQ_PREFIX)


def _group_topic(prefix: str, group: str) -> str:
    """`prefix + group`, refused when that is no valid topic name: group names may be 255
    characters, topic names only 127."""
    check_group_name(group)
    topic = prefix + group
    if not TOPIC_NAME.fullmatch(topic):
        longest = TOPIC_NAME_MAX - len(prefix)
        raise BadRequest(
            f"group name {group!r} is too long for its {prefix} topic: "
            f"at most {longest} characters, got {len(group)}"
        )
    return topic
