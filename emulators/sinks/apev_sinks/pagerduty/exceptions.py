"""PagerDuty Events API v2 errors, carrying the JSON body and status PagerDuty answers with."""

from __future__ import annotations

from typing import Any

THROTTLE_MESSAGE = "Requests for this service are arriving too quickly. Please retry later."


class PagerDutyError(Exception):
    status = 400

    def body(self) -> dict[str, Any]:
        raise NotImplementedError


class InvalidEventError(PagerDutyError):
    """400: the client must fix the event; retrying the same event never helps."""

    status = 400

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors

    def body(self) -> dict[str, Any]:
        return {"status": "invalid event", "message": "Event object is invalid", "errors": self.errors}


class ThrottledError(PagerDutyError):
    """429: more events for this routing key than the window allows; retry later."""

    status = 429

    def __init__(self, routing_key: str, limit: int, window: float) -> None:
        super().__init__(f"more than {limit} events in {window:g} s for routing key {routing_key[:6]}...")
        self.limit = limit
        self.window = window

    def body(self) -> dict[str, Any]:
        return {"status": "throttle event", "message": THROTTLE_MESSAGE}
