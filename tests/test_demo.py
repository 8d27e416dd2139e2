"""`make demo` end to end: a fresh stack, the demo's steps each verified against its real effect, a JSON summary as
the very last line, and nothing left running afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from apev_stack.paths import repo_root

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow]

STEPS = ["stack up", "mcp tenant demo-dental", "onboard ADP, NetSuite, DentalIntel", "catalog, principals, grants",
         "ingestion runs and tasks", "gold tables equal MCP", "agent answers", "insights run",
         "payroll insight held, approved, written", "cost sample", "job fails twice: one page"]  # fmt: skip
# Issue 21: "make demo exits 0 with the JSON line, in under 3 minutes after the first set-up". A machine busy with
# other work may set a larger budget (the failure message names every step's time either way).
BUDGET_SECONDS = float(os.environ.get("APEV_DEMO_BUDGET_SECONDS", "180"))


def _project_processes(state: Path) -> list[str]:
    """Live processes whose command line names this state folder (the demo's children and broker)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            zombie = (proc / "stat").read_text().split(") ", 1)[1].startswith("Z")
        except (OSError, IndexError):
            continue
        if str(state) in cmdline and not zombie:
            found.append(cmdline[:200])
    return found


@pytest.mark.timeout(600)
def test_make_demo_exits_0_with_every_step_verified_in_under_3_minutes(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MCP_"))}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "APEV_STATE_DIR": str(tmp_path), "COLUMNS": "200"}
    started = time.monotonic()
    done = subprocess.run(
        ["make", "--no-print-directory", "demo"], cwd=repo_root(), env=env, capture_output=True, text=True,
        timeout=560, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-3000:]
    summary = json.loads(lines[-1])  # the very last line is the JSON summary
    assert done.returncode == 0 and summary["ok"] is True, done.stdout[-5000:] + done.stderr[-3000:]
    assert [s["name"] for s in summary["steps"]] == STEPS
    for s in summary["steps"]:
        assert s["ok"] is True and "skipped" not in s, s  # every step verified: none skipped, none failed
        assert s["seconds"] >= 0
    assert 0 < summary["total_seconds"] <= elapsed
    print(f"make demo: {elapsed:.1f}s wall; " + ", ".join(f"{s['name']} {s['seconds']}s" for s in summary["steps"]))
    out = done.stdout
    assert "run 1" in out and "#job/" in out  # run ids and run page links on the step lines
    assert "/console/" in out  # the operator console's link on the monitor's steps
    assert "PagerDuty incident" in out and "cost.sampled" in out and "insight.created" in out
    logs = tmp_path / "demo" / "data" / "logs"
    assert {p.name for p in logs.iterdir()} >= {f"{n}.log" for n in ("workspace", "mcp", "sinks", "ingest", "jobs")}
    assert not _project_processes(tmp_path), "the demo left processes running"
    assert not (tmp_path / "demo" / "run" / "stack.json").exists()
    assert elapsed < BUDGET_SECONDS, f"make demo took {elapsed:.0f}s (budget {BUDGET_SECONDS}s): {summary}"
