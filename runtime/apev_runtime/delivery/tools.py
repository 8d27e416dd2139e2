"""DLQ tools: list what a dead-letter topic holds and why, replay chosen messages to their original topic.

Reading never joins a consumer group (partitions are assigned, nothing is committed), so listing is
side-effect free. Replay republishes the original bytes and key with the original headers plus
`x-apev-replayed-from`; consumers' inboxes make a replay of an already processed event harmless.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from apev_contracts.topics import DLQ_SUFFIX
from apev_runtime.delivery.dlq import (
    H_ORIGINAL_BYTES,
    H_REASON,
    H_REPLAY_COUNT,
    H_REPLAYED_FROM,
    DeadLetter,
    strip_dlq_headers,
)

log = structlog.get_logger("apev.dlq")


@dataclass(frozen=True)
class DlqMessage:
    dlq_topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    letter: DeadLetter
    event_type: str | None

    @property
    def ref(self) -> str:
        """`<partition>:<offset>` within the DLQ topic: how the CLI names one message."""
        return f"{self.partition}:{self.offset}"

    def summary(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "original": f"{self.letter.topic}[{self.letter.partition}]@{self.letter.offset}",
            "reason": self.letter.reason.value,
            "error_class": self.letter.error_class,
            "error": self.letter.error_message,
            "attempts": self.letter.attempts,
            "consumer": self.letter.consumer,
            "event_type": self.event_type,
            "key": (self.key or b"").decode("utf-8", "replace"),
            "dead_lettered_at": self.letter.dead_lettered_at.isoformat(),
        }


@dataclass(frozen=True)
class Filter:
    """Which messages to take: explicit refs, or every message matching all given fields."""

    refs: frozenset[str] = frozenset()
    reason: str | None = None
    error_class: str | None = None  # glob, e.g. '*ValidationError'
    event_type: str | None = None
    consumer: str | None = None

    def __call__(self, m: DlqMessage) -> bool:
        if self.refs and m.ref not in self.refs:
            return False
        if self.reason and m.letter.reason.value != self.reason:
            return False
        if self.error_class and not fnmatch.fnmatch(m.letter.error_class, self.error_class):
            return False
        if self.event_type and m.event_type != self.event_type:
            return False
        return not (self.consumer and m.letter.consumer != self.consumer)


def _ce_type(headers: Iterable[tuple[str, bytes]]) -> str | None:
    for k, v in headers:
        if k == "ce_type":
            return v.decode("utf-8", "replace")
    return None


async def read_dlq(bootstrap: str, dlq_topic: str, timeout_ms: int = 2000) -> list[DlqMessage]:
    """Every message currently on `dlq_topic`, oldest first per partition."""
    if not dlq_topic.endswith(DLQ_SUFFIX):
        raise ValueError(f"{dlq_topic!r} is not a dead-letter topic (they end with {DLQ_SUFFIX!r})")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[DlqMessage] = []
    try:
        partitions = consumer.partitions_for_topic(dlq_topic)
        if partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(dlq_topic) or set()
        tps = [TopicPartition(dlq_topic, p) for p in sorted(partitions)]
        if not tps:
            raise ValueError(f"topic {dlq_topic!r} does not exist")
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=timeout_ms)
            if not batch:
                break
            for tp, records in batch.items():
                for r in records:
                    headers = tuple(r.headers or ())
                    if not any(k == H_REASON for k, _ in headers):
                        # Written there by something else (a hand-made record, a foreign tool): not ours to
                        # list or replay, and no reason to refuse the rest of the topic.
                        log.warning(
                            "dlq_record_not_a_dead_letter", topic=dlq_topic, partition=r.partition, offset=r.offset
                        )
                        continue
                    out.append(
                        DlqMessage(
                            dlq_topic=dlq_topic,
                            partition=r.partition,
                            offset=r.offset,
                            key=r.key,
                            value=r.value or b"",
                            headers=headers,
                            letter=DeadLetter.from_headers(headers),
                            event_type=_ce_type(headers),
                        )
                    )
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return out


async def replay(bootstrap: str, dlq_topic: str, selection: Filter, *, dry_run: bool = False) -> list[DlqMessage]:
    """Republish the selected messages to their original topics (nothing is sent with `dry_run`)."""
    chosen = [m for m in await read_dlq(bootstrap, dlq_topic) if selection(m)]
    cut = [m for m in chosen if any(k == H_ORIGINAL_BYTES for k, _ in m.headers)]
    if cut:
        refs = ", ".join(m.ref for m in cut)
        raise ValueError(
            f"dead letter(s) {refs} were cut to fit the DLQ (only a prefix of the value is kept): they cannot be "
            "replayed; fix the producer and publish the event again"
        )
    if dry_run or not chosen:
        return chosen
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for m in chosen:
            count = next((int(v) for k, v in m.headers if k == H_REPLAY_COUNT), 0) + 1
            headers = [
                *strip_dlq_headers(m.headers),
                (H_REPLAYED_FROM, f"{m.dlq_topic}[{m.partition}]@{m.offset}".encode()),
                (H_REPLAY_COUNT, str(count).encode()),
            ]
            await producer.send_and_wait(m.letter.topic, value=m.value, key=m.key, headers=headers)
    finally:
        await producer.stop()
    return chosen
