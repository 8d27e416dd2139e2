"""Fault rules and request counters, without HTTP.

A rule matches a method (or `*`) and a path glob (`fnmatch`, e.g. `/api/2.*/jobs/run-now`), and fires on
the next `count` matching requests, or on a `ratio` of them, or both (then `count` caps the firings).
Actions: `429` (with `Retry-After`), `503`, `error` (any status and code), `latency` (delay, then serve
normally), `lost_response` (serve the request, then drop the connection without answering).
"""

from __future__ import annotations

import fnmatch
import itertools
import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from apev_workspace.faults.exceptions import InvalidParameterValue, ResourceDoesNotExist

ACTIONS = ("429", "503", "error", "latency", "lost_response")


@dataclass
class FaultRule:
    id: int
    path: str
    method: str = "*"
    action: str = "429"
    count: int | None = None  # remaining firings; None = unlimited
    ratio: float = 1.0
    retry_after: int | None = 1
    latency_ms: int = 0
    status: int = 500
    error_code: str = "INTERNAL_ERROR"
    message: str = "Injected fault"
    fired: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Faults:
    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._random = random.Random(seed)
        self.rules: list[FaultRule] = []
        self.counters: Counter[str] = Counter()

    def add(self, spec: dict[str, Any]) -> FaultRule:
        action = str(spec.get("action", "429"))
        if action not in ACTIONS:
            raise InvalidParameterValue(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
        if not spec.get("path"):
            raise InvalidParameterValue("path (a glob such as /api/2.2/jobs/run-now) is required")
        ratio = float(spec.get("ratio", 1.0))
        if not 0.0 <= ratio <= 1.0:
            raise InvalidParameterValue("ratio must be between 0 and 1")
        count = spec.get("count")
        retry_after = spec.get("retry_after", 1 if action == "429" else None)
        rule = FaultRule(
            id=next(self._ids),
            path=str(spec["path"]),
            method=str(spec.get("method", "*")).upper(),
            action=action,
            count=None if count is None else int(count),
            ratio=ratio,
            retry_after=None if retry_after is None else int(retry_after),
            latency_ms=int(spec.get("latency_ms", 0)),
            status=int(spec.get("status", 500)),
            error_code=str(spec.get("error_code", "INTERNAL_ERROR")),
            message=str(spec.get("message", "Injected fault")),
        )
        with self._lock:
            self.rules.append(rule)
        return rule

    def remove(self, rule_id: int) -> None:
        with self._lock:
            before = len(self.rules)
            self.rules = [r for r in self.rules if r.id != rule_id]
            if len(self.rules) == before:
                raise ResourceDoesNotExist(f"Fault rule {rule_id} does not exist")

    def clear(self) -> None:
        with self._lock:
            self.rules = []

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.counters[f"{method.upper()} {path}"] += 1

    def reset_counters(self) -> None:
        with self._lock:
            self.counters.clear()

    def match(self, method: str, path: str) -> FaultRule | None:
        """The first rule that fires for this request (a firing uses up one of its `count`)."""
        with self._lock:
            for rule in self.rules:
                if rule.method not in ("*", method.upper()) or not fnmatch.fnmatchcase(path, rule.path):
                    continue
                if rule.count is not None and rule.count <= 0:
                    continue
                if rule.ratio < 1.0 and self._random.random() >= rule.ratio:
                    continue
                if rule.count is not None:
                    rule.count -= 1
                rule.fired += 1
                return rule
        return None
