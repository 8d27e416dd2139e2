"""`make kafka` is idempotent and `make stop` leaves nothing running (run through the same CLI the Makefile uses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"} | {"APEV_STATE_DIR": str(state)}
    return subprocess.run(
        [sys.executable, "-m", "apev_stack", *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def _brokers_for(state: Path) -> list[int]:
    """Live Kafka JVMs whose command line names this state folder."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state_char = (proc / "stat").read_text().split(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if "kafka.Kafka" in cmdline and str(state) in cmdline and state_char != "Z":
            pids.append(int(proc.name))
    return pids


def test_kafka_start_twice_runs_one_broker_and_stop_leaves_none(tmp_path: Path) -> None:
    first = _cli(tmp_path, "kafka", "start")
    assert first.returncode == 0, first.stderr
    bootstrap = first.stdout.strip().splitlines()[-1]
    assert bootstrap.startswith("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:")
    second = _cli(tmp_path, "kafka", "start")
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stdout
    assert second.stdout.strip().splitlines()[-1] == bootstrap
    assert len(_brokers_for(tmp_path)) == 1
    assert _cli(tmp_path, "kafka", "status").returncode == 0

    stopped = _cli(tmp_path, "stop")
    assert stopped.returncode == 0 and "stopping pid" in stopped.stdout
    assert _brokers_for(tmp_path) == []
    assert _cli(tmp_path, "kafka", "status").returncode == 1
    assert "nothing was running" in _cli(tmp_path, "stop").stdout
