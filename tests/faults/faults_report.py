"""What the fault suite tried and found: a tally per scenario, written as JSON, summarised in one line.

Each test adds its scenario (`report.record("broker_restart", tried=500, lost=0, duplicated=0, ...)`); the
conftest writes `faults.json` at the end of the session (`APEV_FAULTS_REPORT`, else the session's temporary
folder) and prints the summary as the session's last line. "Tried" counts faults and events put through them;
log lines the secret scan read are counted apart (`scanned`, with `found` secrets), so they do not swell it.
The clock runs from the first fault test's start (`begin()`) to the last one's end (`end()`), whatever else
the pytest session runs around them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Scenario:
    name: str
    tried: int
    lost: int
    duplicated: int
    seconds: float
    scanned: int = 0
    found: int = 0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    variant: str = "short"
    scenarios: list[Scenario] = field(default_factory=list)
    started: float | None = None
    ended: float | None = None

    def begin(self) -> None:
        """A fault test starts: the clock starts with the first one."""
        if self.started is None:
            self.started = time.time()

    def end(self) -> None:
        self.ended = time.time()

    @property
    def seconds(self) -> float:
        if self.started is None:
            return 0.0
        return (self.ended or time.time()) - self.started

    def record(
        self,
        name: str,
        *,
        tried: int,
        lost: int = 0,
        duplicated: int = 0,
        seconds: float = 0.0,
        scanned: int = 0,
        found: int = 0,
        **details: Any,
    ) -> Scenario:
        scenario = Scenario(name, tried, lost, duplicated, round(seconds, 2), scanned, found, details)
        self.scenarios.append(scenario)
        return scenario

    def totals(self) -> dict[str, int]:
        return {
            "scenarios": len(self.scenarios),
            "tried": sum(s.tried for s in self.scenarios),
            "lost": sum(s.lost for s in self.scenarios),
            "duplicated": sum(s.duplicated for s in self.scenarios),
            "log_lines_scanned": sum(s.scanned for s in self.scenarios),
            "secrets_found": sum(s.found for s in self.scenarios),
        }

    @property
    def clean(self) -> bool:
        t = self.totals()
        return t["lost"] == 0 and t["duplicated"] == 0 and t["secrets_found"] == 0

    def summary(self) -> str:
        t = self.totals()
        return (
            f"faults ({self.variant}): {t['scenarios']} scenarios, tried {t['tried']}, lost {t['lost']}, "
            f"duplicated {t['duplicated']}; {t['log_lines_scanned']} log lines scanned, "
            f"{t['secrets_found']} secrets found; {self.seconds:.0f} s"
        )

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "variant": self.variant,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started or time.time())),
            "seconds": round(self.seconds, 1),
            "totals": self.totals(),
            "scenarios": [asdict(s) for s in self.scenarios],
            "summary": self.summary(),
        }
        path.write_text(json.dumps(doc, indent=2) + "\n")
