"""Errors raised by the contracts when an event cannot be built, encoded or decoded.

    ContractError (ValueError)           field + reason; every one is permanent for a consumer (-> DLQ)
    ├── MalformedEnvelope                not JSON, not an object, a missing or invalid envelope attribute
    ├── UnknownEventType                 a `type` the registry does not know
    │   └── TopicMismatch                a known type read from a topic it does not belong to
    ├── UnsupportedVersion               a known event in a major version this package does not have
    └── InvalidPayload                   `data` does not validate against the registered model

`ContractError` is a `ValueError`, so Pydantic validators may raise it and callers that catch `ValueError`
keep working.
"""

from __future__ import annotations

from typing import Any


class ContractError(ValueError):
    """An event that breaks the contract. `field` is the path of the offending input (None: the whole value)."""

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only `field` would otherwise be lost when the error crosses a process boundary
        return (_rebuild, (type(self), self.reason, self.field))


def _rebuild(cls: type[ContractError], reason: str, field: str | None) -> ContractError:
    return cls(reason, field=field)


class MalformedEnvelope(ContractError):
    """The Kafka value is not a valid CloudEvents envelope (JSON object, attributes, tenant id, headers)."""


class UnknownEventType(ContractError):
    """The event's `type` is not registered."""


class TopicMismatch(UnknownEventType):
    """The event's `type` is registered, but for another topic than the one it was read from."""


class UnsupportedVersion(ContractError):
    """The event is known, but in a major version this package does not define (e.g. `.v2` when only v1 exists)."""


class InvalidPayload(ContractError):
    """The event's `data` does not validate against the model registered for its type."""
