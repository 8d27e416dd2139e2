"""W3C trace context: carried from consumed events to published events and outgoing HTTP calls.

FastStream's `KafkaTelemetryMiddleware` (installed by `make_broker`) opens a span per consumed message
from its `traceparent` header. Code publishing through the outbox or calling out over HTTP takes the
current context from here, so one trace follows an event across services.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

_configured = False


def setup_tracing(service_name: str) -> None:
    """Install an SDK tracer provider (real trace and span ids). Exporters are configured by deployment."""
    global _configured
    if _configured:
        return
    trace.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": service_name})))
    _configured = True


def current_traceparent() -> str | None:
    """The `traceparent` of the active span, or None outside any trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def inject_headers(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add `traceparent` (and `tracestate`) of the active span to outgoing HTTP headers."""
    propagate.inject(headers)
    return headers
