"""The message properties the broker interprets, in one list, and what a client may set.

A record's properties are data a client wrote, yet some of them steer the broker: where a
delayed message is re-put (`REAL_TOPIC`, `REAL_QID`), when (`DELIVER_AT`, `DUE_AT`), which
transaction a commit copy ends (`TRAN_HALF_OFFSET`). A client that could set those could
write into the broker's own state topics, past a topic's permissions, or into a queue that
does not exist (the probe's D2-D6). So every property name the broker reads is listed
here, in one of three sets, and `check_user_properties` enforces them on every message a
client sends, before it is proposed:

- `BROKER_ONLY`: written by the broker alone; a client message carrying one is refused
  (RESERVED_PROPERTY), as RocketMQ's client refuses `putUserProperty` on them. Refusing
  beats stripping: a client that means something by the name learns at once that it
  cannot, instead of finding its value silently gone.
- `FROM_FIELDS`: tags and keys come from the request's own fields, never as properties.
- `CLIENT_SET`: a client may set them, in the form checked here (a unique key of id
  characters; a check immunity of ASCII digits).

A test reads the source of the package and fails on any property read that is not listed.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from dledgermq.errors import InvalidMessage, ReservedProperty

# -- delay (broker/delay.py) -------------------------------------------------------------
PROPERTY_REAL_TOPIC = "REAL_TOPIC"  # Where a delayed or half message really goes.
PROPERTY_REAL_QID = "REAL_QID"
PROPERTY_DELIVER_AT = "DELIVER_AT"  # When the sender wants it delivered (ms).
PROPERTY_DUE_AT = "DUE_AT"  # When this hop ends (ms): the ConsumeQueue unit's tag slot.
PROPERTY_DELAY = "DELAY"  # The level the sender asked for (kept on delivery, as RocketMQ).
# -- retries and dead letters (broker/send_back.py) ----------------------------------------
PROPERTY_RETRY_TOPIC = "RETRY_TOPIC"  # The topic the message was first sent to.
PROPERTY_ORIGIN_MESSAGE_ID = "ORIGIN_MESSAGE_ID"  # Its msg_id there.
# -- transactions (broker/transactions.py) -------------------------------------------------
PROPERTY_PRODUCER_GROUP = "PGROUP"
PROPERTY_TRANSACTION_ID = "TRANSACTION_ID"
PROPERTY_TRANSACTION = "TRAN_MSG"  # "true" on half messages and their committed copies.
PROPERTY_HALF_OFFSET = "TRAN_HALF_OFFSET"  # On a commit copy: the half message it ends.
PROPERTY_CHECK_IMMUNITY = "CHECK_IMMUNITY_TIME_IN_SECONDS"
# -- every message (broker/produce.py) -----------------------------------------------------
PROPERTY_TAGS = "TAGS"
PROPERTY_KEYS = "KEYS"
PROPERTY_UNIQ_KEY = "UNIQ_KEY"
# RocketMQ's names for a pulled message's queue bounds: not read here, but a client that
# sets them expects the broker's meaning, so they are refused as RocketMQ refuses them.
PROPERTY_MIN_OFFSET = "MIN_OFFSET"
PROPERTY_MAX_OFFSET = "MAX_OFFSET"

BROKER_ONLY = frozenset(
    {
        PROPERTY_REAL_TOPIC,
        PROPERTY_REAL_QID,
        PROPERTY_DELIVER_AT,
        PROPERTY_DUE_AT,
        PROPERTY_DELAY,
        PROPERTY_RETRY_TOPIC,
        PROPERTY_ORIGIN_MESSAGE_ID,
        PROPERTY_PRODUCER_GROUP,
        PROPERTY_TRANSACTION_ID,
        PROPERTY_TRANSACTION,
        PROPERTY_HALF_OFFSET,
        PROPERTY_MIN_OFFSET,
        PROPERTY_MAX_OFFSET,
    }
)
FROM_FIELDS = frozenset({PROPERTY_TAGS, PROPERTY_KEYS})
CLIENT_SET = frozenset({PROPERTY_UNIQ_KEY, PROPERTY_CHECK_IMMUNITY})
INTERPRETED = BROKER_ONLY | FROM_FIELDS | CLIENT_SET

# A client's unique key (RocketMQ's message id, ours is 32 hex digits): id characters only,
# so that it can be indexed, printed and used in a path as it is.
UNIQUE_KEY = re.compile(r"[0-9A-Za-z_-]{1,64}")
CHECK_IMMUNITY_MAX_S = 24 * 3_600
_DECIMAL = re.compile(r"-?[0-9]{1,19}")


def parse_decimal(text: object) -> int | None:
    """`text` as a base-10 integer of ASCII digits, or None.

    `int()` also takes spaces, underscores and any Unicode digit (Arabic-Indic
    zero reads as 0): the broker reads a value as every other system that sees it does.
    """
    if not isinstance(text, str) or _DECIMAL.fullmatch(text) is None:
        return None
    return int(text)


def check_user_properties(properties: Mapping[str, str]) -> None:
    """Refuse what a client may not set; check the form of what it may.

    Raises:
        ReservedProperty: a broker-only name, or tags/keys as properties.
        InvalidMessage: a malformed unique key or check immunity.
    """
    reserved = properties.keys() & (BROKER_ONLY | FROM_FIELDS)
    if reserved:
        name = min(reserved)
        hint = "use the `tags`/`keys` fields" if name in FROM_FIELDS else "the broker sets it"
        raise ReservedProperty(f"property {name!r} is reserved ({hint})", property=name)
    unique_key = properties.get(PROPERTY_UNIQ_KEY)
    if unique_key is not None and UNIQUE_KEY.fullmatch(unique_key) is None:
        raise InvalidMessage(
            f"property {PROPERTY_UNIQ_KEY} must be 1..64 characters of [0-9A-Za-z_-]",
            property=PROPERTY_UNIQ_KEY,
        )
    immunity = properties.get(PROPERTY_CHECK_IMMUNITY)
    if immunity is not None:
        seconds = parse_decimal(immunity)
        if seconds is None or not 0 <= seconds <= CHECK_IMMUNITY_MAX_S:
            raise InvalidMessage(
                f"property {PROPERTY_CHECK_IMMUNITY} must be ASCII digits within "
                f"0..{CHECK_IMMUNITY_MAX_S}, got {immunity!r}",
                property=PROPERTY_CHECK_IMMUNITY,
            )
