"""Dead-letter records: the original bytes, key and headers, plus headers saying what went wrong.

A message on `<topic>.dlq` keeps its value and key untouched, so replay republishes exactly what arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

PREFIX = "x-apev-dlq-"
H_TOPIC = PREFIX + "original-topic"
H_PARTITION = PREFIX + "original-partition"
H_OFFSET = PREFIX + "original-offset"
H_CONSUMER = PREFIX + "consumer"
H_REASON = PREFIX + "reason"
H_ERROR_CLASS = PREFIX + "error-class"
H_ERROR_MESSAGE = PREFIX + "error-message"
H_ATTEMPTS = PREFIX + "attempts"
H_FIRST_SEEN = PREFIX + "first-seen"
H_DEAD_LETTERED_AT = PREFIX + "dead-lettered-at"
H_ORIGINAL_BYTES = PREFIX + "original-bytes"
"""Present when the value was cut to fit the DLQ: the original value's length (and `-original-sha256`)."""
H_ORIGINAL_SHA256 = PREFIX + "original-sha256"
H_REPLAYED_FROM = "x-apev-replayed-from"
H_REPLAY_COUNT = "x-apev-replay-count"

MAX_ERROR_MESSAGE = 2000


class Reason(StrEnum):
    PERMANENT = "permanent"  # validation, decode, typed permanent errors, 4xx
    TRANSIENT_EXHAUSTED = "transient_exhausted"  # retries ran out (attempts or time)
    CONFLICT = "conflict"  # same event id seen before with different content
    OVERSIZE = "oversize"  # larger than the configured limit


@dataclass(frozen=True)
class DeadLetter:
    """What went wrong with one message, in the headers written next to its original bytes."""

    topic: str
    partition: int
    offset: int
    consumer: str
    reason: Reason
    error_class: str
    error_message: str
    attempts: int
    first_seen: datetime
    dead_lettered_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (H_TOPIC, self.topic.encode()),
            (H_PARTITION, str(self.partition).encode()),
            (H_OFFSET, str(self.offset).encode()),
            (H_CONSUMER, self.consumer.encode()),
            (H_REASON, self.reason.value.encode()),
            (H_ERROR_CLASS, self.error_class.encode()),
            (H_ERROR_MESSAGE, self.error_message[:MAX_ERROR_MESSAGE].encode("utf-8", "replace")),
            (H_ATTEMPTS, str(self.attempts).encode()),
            (H_FIRST_SEEN, self.first_seen.isoformat().encode()),
            (H_DEAD_LETTERED_AT, self.dead_lettered_at.isoformat().encode()),
        ]

    @classmethod
    def from_headers(cls, headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> DeadLetter:
        h = {k: v.decode("utf-8", "replace") for k, v in headers if k.startswith(PREFIX)}
        missing = [k for k in (H_TOPIC, H_PARTITION, H_OFFSET, H_REASON) if k not in h]
        if missing:
            raise ValueError(f"not a dead-letter record: headers {missing} missing")
        return cls(
            topic=h[H_TOPIC],
            partition=int(h[H_PARTITION]),
            offset=int(h[H_OFFSET]),
            consumer=h.get(H_CONSUMER, ""),
            reason=Reason(h[H_REASON]),
            error_class=h.get(H_ERROR_CLASS, ""),
            error_message=h.get(H_ERROR_MESSAGE, ""),
            attempts=int(h.get(H_ATTEMPTS, "0")),
            first_seen=datetime.fromisoformat(h[H_FIRST_SEEN]) if H_FIRST_SEEN in h else datetime.now(UTC),
            dead_lettered_at=datetime.fromisoformat(h[H_DEAD_LETTERED_AT])
            if H_DEAD_LETTERED_AT in h
            else datetime.now(UTC),
        )


def strip_dlq_headers(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> list[tuple[str, bytes]]:
    """The original message's headers, without what dead-lettering or an earlier replay added."""
    return [(k, v) for k, v in headers if not k.startswith(PREFIX) and k not in (H_REPLAYED_FROM, H_REPLAY_COUNT)]
