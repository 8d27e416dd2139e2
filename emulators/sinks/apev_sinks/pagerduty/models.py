"""The PagerDuty backend: routing keys, events, and one incident per open dedup key.

Semantics, as PagerDuty documents them for Events API v2:
- a trigger whose dedup key has an open incident (triggered or acknowledged) joins it: no new incident, the
  status stays as it is (an acknowledged incident stays acknowledged);
- resolved is final: a later trigger with the same dedup key opens a NEW incident;
- acknowledge or resolve for a dedup key with no open incident is accepted (202) and changes nothing.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from apev_sinks.clock import Clock
from apev_sinks.pagerduty.exceptions import InvalidEventError, ThrottledError

ROUTING_KEY_LENGTH = 32
MAX_DEDUP_KEY = 255
MAX_SUMMARY = 1024
MAX_EVENT_BYTES = 512 * 1024
ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")

# Routing (integration) key -> the service it pages. Real keys are 32 characters; so are these.
DEFAULT_ROUTING_KEYS: Mapping[str, str] = {
    "apevlocalpagerdutyroutingkey0001": "apev-oncall",
    "apevlocalpagerdutyroutingkey0002": "apev-data-platform",
}

IncidentStatus = Literal["triggered", "acknowledged", "resolved"]
Outcome = Literal["opened", "deduplicated", "acknowledged", "resolved", "ignored"]


@dataclass
class Incident:
    id: str
    routing_key: str
    service: str
    dedup_key: str
    status: IncidentStatus
    summary: str
    severity: str
    source: str
    created_at: datetime
    custom_details: Any = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    trigger_count: int = 1
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.status != "resolved"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "routing_key": self.routing_key,
            "service": self.service,
            "dedup_key": self.dedup_key,
            "status": self.status,
            "summary": self.summary,
            "severity": self.severity,
            "source": self.source,
            "custom_details": self.custom_details,
            "created_at": self.created_at.isoformat(),
            "acknowledged_at": self.acknowledged_at.isoformat() if self.acknowledged_at else None,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "trigger_count": self.trigger_count,
            "log": self.log,
        }


@dataclass(frozen=True)
class EnqueuedEvent:
    id: int
    routing_key: str
    event_action: str
    dedup_key: str
    outcome: Outcome
    incident_id: str | None
    event: dict[str, Any]
    received_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "routing_key": self.routing_key,
            "event_action": self.event_action,
            "dedup_key": self.dedup_key,
            "outcome": self.outcome,
            "incident_id": self.incident_id,
            "event": self.event,
            "received_at": self.received_at.isoformat(),
        }


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def validate_event(event: Any, known_keys: Mapping[str, str]) -> list[str]:
    """Every reason the event is invalid, in PagerDuty's wording where it is known; empty when valid."""
    if not isinstance(event, dict):
        return [f"Event object must be a JSON object, got {type(event).__name__}"]
    errors: list[str] = []
    key = event.get("routing_key")
    if _blank(key):
        errors.append("'routing_key' is missing or blank")
    elif not isinstance(key, str) or len(key) != ROUTING_KEY_LENGTH:
        errors.append(f"Length of 'routing_key' is incorrect (should be {ROUTING_KEY_LENGTH} characters)")
    elif key not in known_keys:
        errors.append("Invalid routing key")
    action = event.get("event_action")
    if _blank(action):
        errors.append("'event_action' is missing or blank")
    elif action not in ACTIONS:
        errors.append(f"'event_action' must be one of {', '.join(ACTIONS)} (got {action!r})")
    dedup = event.get("dedup_key")
    if dedup is not None:
        if not isinstance(dedup, str):
            errors.append("'dedup_key' must be a string")
        elif len(dedup) > MAX_DEDUP_KEY:
            errors.append(f"'dedup_key' is too long (maximum is {MAX_DEDUP_KEY} characters, got {len(dedup)})")
    if action in ("acknowledge", "resolve") and _blank(dedup):
        errors.append(f"'dedup_key' is missing or blank (required to {action})")
    if action == "trigger":
        errors.extend(_validate_trigger_payload(event.get("payload")))
    return errors


def _validate_trigger_payload(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object (required to trigger)"]
    errors: list[str] = []
    summary = payload.get("summary")
    if _blank(summary) or not isinstance(summary, str):
        errors.append("'payload.summary' is missing or blank")
    elif len(summary) > MAX_SUMMARY:
        errors.append(f"'payload.summary' is too long (maximum is {MAX_SUMMARY} characters, got {len(summary)})")
    source = payload.get("source")
    if _blank(source) or not isinstance(source, str):
        errors.append("'payload.source' is missing or blank")
    severity = payload.get("severity")
    if _blank(severity):
        errors.append("'payload.severity' is missing or blank")
    elif severity not in SEVERITIES:
        errors.append(f"'payload.severity' must be one of {', '.join(SEVERITIES)} (got {severity!r})")
    timestamp = payload.get("timestamp")
    if timestamp is not None:
        try:
            datetime.fromisoformat(str(timestamp))
        except ValueError:
            errors.append(f"'payload.timestamp' must be an ISO 8601 timestamp (got {timestamp!r})")
    return errors


class PagerDutyBackend:
    def __init__(
        self,
        clock: Clock,
        *,
        rate_limit: int = 120,
        rate_window: float = 60.0,
        routing_keys: Mapping[str, str] | None = None,
    ) -> None:
        if rate_limit < 1 or rate_window <= 0:
            raise ValueError(f"rate limit must be >= 1 event per > 0 s, got {rate_limit} per {rate_window}")
        self.clock = clock
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self._lock = threading.Lock()
        self._event_ids = itertools.count(1)
        self._incident_numbers = itertools.count(1)
        self._keys: dict[str, str] = {}
        self._incidents: list[Incident] = []
        self._events: list[EnqueuedEvent] = []
        self._recent: dict[str, deque[float]] = {}
        for key, service in (DEFAULT_ROUTING_KEYS if routing_keys is None else routing_keys).items():
            self.register(key, service)

    def register(self, routing_key: str, service: str | None = None) -> None:
        if len(routing_key) != ROUTING_KEY_LENGTH:
            raise ValueError(
                f"a routing key has exactly {ROUTING_KEY_LENGTH} characters, like PagerDuty's; "
                f"{routing_key!r} has {len(routing_key)}"
            )
        with self._lock:
            self._keys[routing_key] = service or f"service-{routing_key[:6]}"

    def routing_keys(self) -> dict[str, str]:
        with self._lock:
            return dict(self._keys)

    def enqueue_bytes(self, body: bytes) -> EnqueuedEvent:
        """Parse and enqueue a raw request body, as `POST /v2/enqueue` does."""
        if len(body) > MAX_EVENT_BYTES:
            raise InvalidEventError([f"Event is too large ({len(body)} bytes; the maximum is {MAX_EVENT_BYTES} bytes)"])
        try:
            event = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidEventError([f"Malformed JSON: {exc}"]) from exc
        return self.enqueue(event)

    def enqueue(self, event: Any) -> EnqueuedEvent:
        """Apply one event, or raise `InvalidEventError` (400) or `ThrottledError` (429)."""
        with self._lock:
            errors = validate_event(event, self._keys)
            if errors:
                raise InvalidEventError(errors)
            key: str = event["routing_key"]
            self._admit(key)
            action: str = event["event_action"]
            dedup_key: str = event.get("dedup_key") or uuid.uuid4().hex
            now = self.clock.now()
            incident = next(
                (i for i in self._incidents if i.routing_key == key and i.dedup_key == dedup_key and i.open), None
            )
            outcome: Outcome
            if action == "trigger":
                if incident is None:
                    incident = self._open(key, dedup_key, event["payload"], now)
                    outcome = "opened"
                else:
                    incident.trigger_count += 1
                    outcome = "deduplicated"
            elif incident is None:
                outcome = "ignored"
            elif action == "acknowledge":
                if incident.status == "triggered":
                    incident.status, incident.acknowledged_at = "acknowledged", now
                outcome = "acknowledged"
            else:
                incident.status, incident.resolved_at = "resolved", now
                outcome = "resolved"
            if incident is not None:
                incident.log.append({"event_action": action, "outcome": outcome, "at": now.isoformat()})
            record = EnqueuedEvent(
                id=next(self._event_ids),
                routing_key=key,
                event_action=action,
                dedup_key=dedup_key,
                outcome=outcome,
                incident_id=incident.id if incident else None,
                event=event,
                received_at=now,
            )
            self._events.append(record)
            return record

    def _open_incident(self, key: str, dedup_key: str) -> Incident | None:
        return next((i for i in self._incidents if i.routing_key == key and i.dedup_key == dedup_key and i.open), None)

    def _admit(self, key: str) -> None:
        """Sliding window of accepted events per routing key."""
        now = self.clock.monotonic()
        recent = self._recent.setdefault(key, deque())
        while recent and recent[0] <= now - self.rate_window:
            recent.popleft()
        if len(recent) >= self.rate_limit:
            raise ThrottledError(key, self.rate_limit, self.rate_window)
        recent.append(now)

    def _open(self, key: str, dedup_key: str, payload: dict[str, Any], now: datetime) -> Incident:
        incident = Incident(
            id=f"PAPEV{next(self._incident_numbers):05d}",
            routing_key=key,
            service=self._keys[key],
            dedup_key=dedup_key,
            status="triggered",
            summary=payload["summary"],
            severity=payload["severity"],
            source=payload["source"],
            custom_details=payload.get("custom_details"),
            created_at=now,
        )
        self._incidents.append(incident)
        return incident

    def incidents(
        self, *, dedup_key: str | None = None, status: str | None = None, routing_key: str | None = None
    ) -> list[Incident]:
        with self._lock:
            return [
                i
                for i in self._incidents
                if (dedup_key is None or i.dedup_key == dedup_key)
                and (status is None or i.status == status)
                and (routing_key is None or i.routing_key == routing_key)
            ]

    def incident(self, incident_id: str) -> Incident | None:
        with self._lock:
            return next((i for i in self._incidents if i.id == incident_id), None)

    def events(self, *, dedup_key: str | None = None) -> list[EnqueuedEvent]:
        with self._lock:
            return [e for e in self._events if dedup_key is None or e.dedup_key == dedup_key]

    def reset(self) -> None:
        """Forget events, incidents and rate-limit state; keep the routing keys."""
        with self._lock:
            self._incidents.clear()
            self._events.clear()
            self._recent.clear()
