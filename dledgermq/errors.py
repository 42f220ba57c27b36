"""Expected outcomes that cross boundaries as values, and their HTTP mapping.

Broken invariants are asserts (they crash); disk errors are `OSError` and fatal.
Everything a user can cause is a `MQError` with a machine-readable `code`, mapped to an
HTTP status once, at the edge (`api/errors.py`), and back into the same class by the client.
"""

from __future__ import annotations

from typing import Any, ClassVar


class MQError(Exception):
    """A user-visible, expected failure: `{"code": ..., "message": ...}` on the wire."""

    code: ClassVar[str] = "INTERNAL"
    status: ClassVar[int] = 500
    # Retrying the same request may succeed (the client's tenacity policy reads this).
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_wire(self) -> dict[str, Any]:
        """The error body: code, message and any structured details (e.g. a valid range)."""
        return {"code": self.code, "message": self.message, **self.details}


class BadRequest(MQError):
    code = "BAD_REQUEST"
    status = 400


class InvalidTopic(MQError):
    code = "INVALID_TOPIC"
    status = 400


class InvalidMessage(MQError):
    code = "INVALID_MESSAGE"
    status = 400


class ReservedProperty(InvalidMessage):
    """A client message sets a property only the broker may set (broker/reserved.py)."""

    code = "RESERVED_PROPERTY"


class MessageTooLarge(MQError):
    code = "MESSAGE_TOO_LARGE"
    status = 413


class BatchTooLarge(MQError):
    code = "BATCH_TOO_LARGE"
    status = 413


class TopicNotFound(MQError):
    code = "TOPIC_NOT_FOUND"
    status = 404


class TopicExists(MQError):
    code = "TOPIC_EXISTS"
    status = 409


class MessageNotFound(MQError):
    code = "MESSAGE_NOT_FOUND"
    status = 404


class OffsetOutOfRange(MQError):
    """A pull outside [min_offset, max_offset]; details carry the valid range."""

    code = "OFFSET_MOVED"
    status = 400


class NoPermission(MQError):
    code = "NO_PERMISSION"
    status = 403


class QueueNotFound(MQError):
    code = "QUEUE_NOT_FOUND"
    status = 404


class BrokerNotFound(MQError):
    code = "BROKER_NOT_FOUND"
    status = 404


class NoRoute(MQError):
    code = "NO_ROUTE"
    status = 404
    retryable = True


class Busy(MQError):
    """Admission control: too many appends in flight (RocketMQ's SYSTEM_BUSY)."""

    code = "BUSY"
    status = 503
    retryable = True


class RequestTimeout(MQError):
    """The request body did not arrive within `limits.body_read_timeout_ms`; nothing was
    done, and the connection is closed (a stalled client must not hold the server)."""

    code = "REQUEST_TIMEOUT"
    status = 408
    retryable = True


class DiskFull(MQError):
    """Writes refused above the disk high-water mark; reads go on."""

    code = "DISK_FULL"
    status = 507


class NotLeader(MQError):
    code = "NOT_LEADER"
    status = 421
    retryable = True


class Timeout(MQError):
    """The outcome is unknown (the write may or may not have been stored)."""

    code = "TIMEOUT"
    status = 504
    retryable = True


class CorruptData(MQError):
    """Stored data failed its CRC or structure checks; it is never served."""

    code = "CORRUPT_DATA"
    status = 500


class Unavailable(MQError):
    code = "UNAVAILABLE"
    status = 503
    retryable = True


class SlaveNotAvailable(MQError):
    """Master/slave `ha_mode: sync`: no slave acknowledged the message in time. It IS stored
    on the master (and visible to consumers) but not replicated, so a master power loss may
    lose it (RocketMQ's SLAVE_NOT_AVAILABLE). Not retryable: a resend would store it twice.
    """

    code = "SLAVE_NOT_AVAILABLE"
    status = 503


class TransactionNotFound(MQError):
    """No transaction with this id at this half-message offset (pending or remembered)."""

    code = "TRANSACTION_NOT_FOUND"
    status = 404


class TransactionConflict(MQError):
    """The transaction already ended with the other outcome (e.g. rolled back after its
    check-backs went unanswered); the body names the outcome that stands."""

    code = "TRANSACTION_CONFLICT"
    status = 409


ERRORS_BY_CODE: dict[str, type[MQError]] = {
    cls.code: cls
    for cls in (
        MQError,
        BadRequest,
        InvalidTopic,
        InvalidMessage,
        ReservedProperty,
        MessageTooLarge,
        BatchTooLarge,
        TopicNotFound,
        TopicExists,
        MessageNotFound,
        OffsetOutOfRange,
        NoPermission,
        QueueNotFound,
        BrokerNotFound,
        NoRoute,
        Busy,
        RequestTimeout,
        DiskFull,
        NotLeader,
        Timeout,
        Unavailable,
        SlaveNotAvailable,
        CorruptData,
        TransactionNotFound,
        TransactionConflict,
    )
}


def error_from_wire(body: dict[str, Any]) -> MQError:
    """Rebuild the typed error from a wire body (unknown codes become plain MQError)."""
    code = str(body.get("code", "INTERNAL"))
    message = str(body.get("message", code))
    details = {k: v for k, v in body.items() if k not in {"code", "message"}}
    cls = ERRORS_BY_CODE.get(code, MQError)
    error = cls(message, **details)
    if cls is MQError:
        error.code = code  # type: ignore[misc]
    return error
