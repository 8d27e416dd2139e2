"""Smoke test of the benchmark suite: `bench/run.py --quick` runs and writes each file with the expected keys.

Nothing about speed is asserted. The cheapest benchmarks run in quick mode here (on the session's broker and
PostgreSQL); the others' quick modes are slower than the suite's budget (a workspace, several services each) and
run with `APEV_BENCH_SMOKE_ALL=1` (or `uv run python bench/run.py --quick`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

BENCH = Path(__file__).resolve().parents[1] / "bench"
CHEAP = ["delivery", "writeback"]
ALL = ["delivery", "latency", "api_cost", "freshness", "tenants", "writeback", "monitor", "serving", "memory"]


@pytest.mark.timeout(1800)
def test_quick_mode_writes_each_result_and_the_summary(kafka_bootstrap: str, tmp_path: Path) -> None:
    names = ALL if os.environ.get("APEV_BENCH_SMOKE_ALL") else CHEAP
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    cmd = [sys.executable, str(BENCH / "run.py"), "--quick", "--out-dir", str(tmp_path)]
    cmd += [arg for name in names for arg in ("--only", name)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    for name in names:
        record = json.loads((tmp_path / f"{name}.json").read_text())
        assert record["benchmark"] == name and record["quick"] is True and "error" not in record
        machine = record["machine"]
        for key in ("cores", "memory_mib", "python", "kafka_version", "commit", "load_average_start",
                    "load_average_end"):  # fmt: skip
            assert machine[key] not in (None, ""), key
        assert record["figures"] and all(isinstance(v, int | float) for v in record["figures"].values())
        assert record["summary"], name
        for line in record["summary"]:
            assert set(line) >= {"figure", "this", "baseline", "ratio", "target", "met", "note"}
    summary = (tmp_path / "SUMMARY.md").read_text()
    assert "| benchmark | figure | this project | baseline | ratio | target | met |" in summary
    for name in names:
        assert f"| {name} |" in summary


def test_an_unknown_benchmark_is_refused_with_the_known_names(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--only", "nope", "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "unknown benchmark" in done.stderr and "api_cost" in done.stderr
    assert not list(tmp_path.iterdir())
