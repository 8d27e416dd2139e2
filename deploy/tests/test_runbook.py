"""docs/runbook.md: every fenced block marked `bash runnable` runs here, in order, in one shell per block, against a
throwaway state directory (the backup and restore of a SQLite database and the workspace's data through the
operator CLI); what is restored is what was backed up."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "runbook.md"
BLOCK = re.compile(r"^```bash runnable\n(.*?)^```", re.MULTILINE | re.DOTALL)


def runnable_blocks() -> list[str]:
    return BLOCK.findall(RUNBOOK.read_text())


def test_runbook_runnable_blocks(tmp_path: Path) -> None:
    blocks = runnable_blocks()
    assert len(blocks) >= 3, "the runbook lost its runnable blocks"
    data = tmp_path / "state" / "data" / "services"
    data.mkdir(parents=True)
    workspace = tmp_path / "state" / "data" / "workspace"
    (workspace / "catalogs").mkdir(parents=True)
    (workspace / "catalogs" / "acme.duckdb").write_bytes(b"\x00table data\xff")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "KAFKA_"))},
           "APEV_STATE_DIR": str(tmp_path / "state"), "BACKUP_DIR": str(tmp_path / "backup"),
           "MONITOR_DATA_DIR": str(data), "WORKSPACE_DATA": str(workspace),
           "UV_PYTHON_DOWNLOADS": "never", "UV_FROZEN": "1"}  # fmt: skip
    before: set[str] | None = None
    for i, block in enumerate(blocks):
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=180)  # fmt: skip
        assert done.returncode == 0, f"runbook block {i} failed:\n{block}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        db = data / "monitor.db"
        if i == 0:  # migrated and backed up
            assert (tmp_path / "backup" / "manifest.json").exists() and (
                tmp_path / "backup" / "monitor.sqlite"
            ).exists()
            before = _tables(db)
            assert "monitor_lineage_events" in before
    assert before is not None and _tables(data / "monitor.db") == before  # restored after the runbook deleted it
    assert (workspace / "catalogs" / "acme.duckdb").read_bytes() == b"\x00table data\xff"


def _tables(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()
