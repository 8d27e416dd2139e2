"""Run and task states: the legacy `state` block, the newer `status` block, and how one maps to the other."""

from __future__ import annotations

from typing import Any

ACTIVE = ("QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY")
TERMINAL = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")
V2_STATE = {
    "QUEUED": "QUEUED",
    "PENDING": "PENDING",
    "BLOCKED": "BLOCKED",
    "RUNNING": "RUNNING",
    "TERMINATING": "TERMINATING",
    "WAITING_FOR_RETRY": "WAITING",
    "TERMINATED": "TERMINATED",
    "SKIPPED": "TERMINATED",
    "INTERNAL_ERROR": "TERMINATED",
}
# result_state -> (termination code, termination type)
TERMINATION = {
    "SUCCESS": ("SUCCESS", "SUCCESS"),
    "SUCCESS_WITH_FAILURES": ("SUCCESS_WITH_FAILURES", "SUCCESS"),
    "FAILED": ("RUN_EXECUTION_ERROR", "CLIENT_ERROR"),
    "TIMEDOUT": ("CANCELED", "CLIENT_ERROR"),
    "CANCELED": ("USER_CANCELED", "SUCCESS"),
    "UPSTREAM_FAILED": ("SKIPPED", "SUCCESS"),
    "UPSTREAM_CANCELED": ("SKIPPED", "SUCCESS"),
    "EXCLUDED": ("SKIPPED", "SUCCESS"),
    "MAXIMUM_CONCURRENT_RUNS_REACHED": ("MAX_CONCURRENT_RUNS_EXCEEDED", "CLIENT_ERROR"),
    "DISABLED": ("DISABLED", "CLIENT_ERROR"),
}
SUCCEEDED = ("SUCCESS", "SUCCESS_WITH_FAILURES")
FAILED = ("FAILED", "TIMEDOUT", "UPSTREAM_FAILED")
CANCELED = ("CANCELED", "UPSTREAM_CANCELED")


def is_active(obj: dict[str, Any]) -> bool:
    return obj["life"] in ACTIVE


def set_state(
    obj: dict[str, Any],
    life: str,
    result: str | None = None,
    message: str = "",
    code: str | None = None,
    code_type: str | None = None,
) -> None:
    """Update both vocabularies at once; a terminal state always carries termination details."""
    obj["life"] = life
    obj["result"] = result
    obj["message"] = message
    if life in TERMINAL:
        default_code, default_type = TERMINATION.get(result or "", ("INTERNAL_ERROR", "INTERNAL_ERROR"))
        obj["term"] = {"code": code or default_code, "type": code_type or default_type, "message": message}
    else:
        obj["term"] = None


def legacy_state(obj: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = {
        "life_cycle_state": obj.get("legacy_life") or obj["life"],
        "state_message": obj.get("message", ""),
        "user_cancelled_or_timedout": obj.get("result") in ("CANCELED", "TIMEDOUT"),
    }
    if obj.get("result"):
        state["result_state"] = obj["result"]
    if obj["life"] == "QUEUED" and obj.get("queue_reason"):
        state["queue_reason"] = obj["queue_reason"][1]
    return state


def status(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"state": V2_STATE[obj["life"]]}
    if obj.get("term"):
        out["termination_details"] = dict(obj["term"])
    if obj["life"] == "QUEUED" and obj.get("queue_reason"):
        code, message = obj["queue_reason"]
        out["queue_details"] = {"code": code, "message": message}
    return out
