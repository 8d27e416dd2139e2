"""A typed async publisher for the backend: `await publisher.publish(event)` picks topic, key and headers.

    async with EventPublisher("127.0.0.1:9092") as publisher:
        await publisher.publish(new_event(data, tenant_id=t, source="/agentprovision/backend"))

aiokafka's idempotent producer underneath (`acks=all`, ordered per partition, no duplicates from its own
retries). aiokafka is imported only when a publisher is built: install `apev-contracts[kafka]`.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from apev_contracts.envelope import CloudEvent, encode

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer
    from aiokafka.structs import RecordMetadata


class EventPublisher:
    """Publishes contract events to Kafka. Use as an async context manager, or call `start()` and `stop()`."""

    def __init__(self, bootstrap_servers: str, *, client_id: str = "apev-publisher", **producer_kwargs: Any) -> None:
        try:
            import aiokafka  # noqa: F401 - fail here, with the remedy, rather than at start()
        except ImportError as exc:
            raise ImportError("EventPublisher needs aiokafka: install `apev-contracts[kafka]`") from exc
        if producer_kwargs.pop("enable_idempotence", True) is not True:
            raise ValueError("EventPublisher always uses an idempotent producer (enable_idempotence=True)")
        self._bootstrap_servers = bootstrap_servers
        self._client_id = client_id
        self._producer_kwargs = producer_kwargs
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect. The producer is created here, on the running loop, so a publisher can be built anywhere."""
        if self._producer is not None:
            return
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap_servers,
            client_id=self._client_id,
            enable_idempotence=True,
            **self._producer_kwargs,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # aiokafka keeps sockets and tasks of a failed start until stopped
            raise
        self._producer = producer

    async def stop(self) -> None:
        """Flush what is pending and disconnect."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def publish(
        self, event: CloudEvent[Any], *, traceparent: str | None = None, topic: str | None = None
    ) -> RecordMetadata:
        """Send one event and wait until the broker has it (all in-sync replicas). `topic` overrides the
        registry's topic (tests use private topics); the key is always the tenant id."""
        if self._producer is None:
            raise RuntimeError("EventPublisher is not started: use `async with` or call start()")
        record = encode(event, traceparent=traceparent)
        return await self._producer.send_and_wait(
            topic or record.topic, value=record.value, key=record.key, headers=record.headers
        )
