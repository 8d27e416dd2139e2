"""Fault injection and request counters shared by the three stand-ins (state only, no HTTP).

A rule matches a request target with a shell-style pattern: the HTTP path (`/services/*`, `/v2/enqueue`) or,
for mail, `smtp:<recipient>` (`smtp:*`, `smtp:*@example.com`). The first live matching rule, in the order
they were added, decides: it adds latency, answers with its status instead of the real answer, or both.
"""

from __future__ import annotations

import fnmatch
import itertools
import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class FaultSpec:
    """What to inject. `status` None means latency only; `count` None means every match (subject to `ratio`)."""

    match: str
    status: int | None = None
    latency: float = 0.0
    count: int | None = None
    ratio: float = 1.0
    retry_after: int | None = None
    body: str | None = None
    # True: the request is applied first, then the fault is answered (the caller believes it failed).
    after_apply: bool = False
    method: str = "*"  # an HTTP method, or `*` for any (SMTP counts as any)
    action: str | None = None  # the `/__admin/faults` action the rule was made from, for its view

    def __post_init__(self) -> None:
        if not self.match:
            raise ValueError("match must be a non-empty pattern such as '/services/*', '/v2/enqueue' or 'smtp:*'")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError(f"status must be an error code between 400 and 599, got {self.status}")
        if self.latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {self.latency}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"count must be >= 1 (or absent for every match), got {self.count}")
        if not 0.0 < self.ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")
        if self.status is None and self.latency == 0:
            raise ValueError("a fault needs a status, a latency, or both")


@dataclass
class FaultRule:
    id: str
    spec: FaultSpec
    remaining: int | None
    hits: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **asdict(self.spec), "remaining": self.remaining, "hits": self.hits}


class Faults:
    """The live rules. Thread-safe: the HTTP loop, the SMTP handler and a test thread may all touch it."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._random = random.Random(seed)  # reproducible with a seed; `ratio` is not a secret

    def add(self, spec: FaultSpec) -> FaultRule:
        with self._lock:
            rule = FaultRule(id=f"fault-{next(self._ids)}", spec=spec, remaining=spec.count)
            self._rules.append(rule)
            return rule

    def remove(self, rule_id: str) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def pick(self, *targets: str, method: str = "*") -> FaultSpec | None:
        """The fault to apply to a request with these targets, consuming one use of a counted rule."""
        with self._lock:
            for rule in self._rules:
                if rule.remaining == 0:
                    continue
                if rule.spec.method not in ("*", method.upper()) and method != "*":
                    continue
                if not any(fnmatch.fnmatchcase(t, rule.spec.match) for t in targets):
                    continue
                if rule.spec.ratio < 1.0 and self._random.random() >= rule.spec.ratio:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                rule.hits += 1
                return rule.spec
            return None


@dataclass
class RequestCounters:
    """How many requests each target got, by answer status (faults included)."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _counts: Counter[tuple[str, str, int]] = field(default_factory=Counter)

    def record(self, sink: str, target: str, status: int) -> None:
        with self._lock:
            self._counts[(sink, target, status)] += 1

    def count(self, sink: str | None = None, target: str | None = None, status: int | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (s, t, st), n in self._counts.items()
                if (sink is None or s == sink) and (target is None or t == target) and (status is None or st == status)
            )

    def snapshot(self) -> dict[str, Any]:
        """`{"total": n, "sinks": {sink: {"total": n, "targets": {target: {status: n}}}}}`."""
        with self._lock:
            sinks: dict[str, Any] = {}
            for (sink, target, status), n in sorted(self._counts.items()):
                entry = sinks.setdefault(sink, {"total": 0, "targets": {}})
                entry["total"] += n
                entry["targets"].setdefault(target, {})[str(status)] = n
            return {"total": sum(self._counts.values()), "sinks": sinks}

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
