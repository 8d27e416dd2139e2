"""End offsets of the dead-letter topics: DLQ growth is read from offsets, not from the (often undecodable)
dead letters themselves."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from apev_contracts.topics import TOPICS, dlq_topic


class DlqOffsets:
    def __init__(self, bootstrap: str, prefix: str = "") -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self._consumer: AIOKafkaConsumer | None = None

    async def end_offsets(self) -> dict[str, int]:
        """Logical DLQ topic -> sum of its partitions' end offsets (topics that do not exist are left out)."""
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
            await consumer.start()
            self._consumer = consumer
        consumer = self._consumer
        # `topics()` answers names only; the partitions come from the same metadata request's cluster view.
        cluster = await consumer._client.fetch_all_metadata()
        names = {self.prefix + dlq_topic(t): dlq_topic(t) for t in TOPICS}
        partitions = [
            TopicPartition(physical, p)
            for physical in names
            for p in sorted(cluster.partitions_for_topic(physical) or ())
        ]
        if not partitions:
            return {}
        ends = await consumer.end_offsets(partitions)
        totals: dict[str, int] = {}
        for tp, offset in ends.items():
            totals[names[tp.topic]] = totals.get(names[tp.topic], 0) + offset
        return totals

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
