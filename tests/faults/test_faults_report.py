"""The report's arithmetic: log lines the scan read are not "tried", secrets found make the session unclean, and
the clock covers the fault tests only."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from faults_report import Report

pytestmark = pytest.mark.faults


def test_scanned_lines_are_counted_apart_and_a_secret_makes_it_unclean(tmp_path: Path) -> None:
    r = Report()
    r.record("storm", tried=120, lost=0, duplicated=0)
    r.record("log_scan", tried=0, scanned=5000, found=0)
    assert r.totals()["tried"] == 120 and r.totals()["log_lines_scanned"] == 5000
    assert r.clean
    assert "tried 120, lost 0, duplicated 0; 5000 log lines scanned, 0 secrets found" in r.summary()
    r.record("log_scan_again", tried=0, scanned=10, found=1)
    assert not r.clean
    r.write(tmp_path / "faults.json")
    doc = json.loads((tmp_path / "faults.json").read_text())
    assert doc["totals"]["secrets_found"] == 1 and doc["summary"] == r.summary()


def test_the_clock_starts_with_the_first_fault_test_not_at_import() -> None:
    r = Report()
    time.sleep(0.2)  # collection, other suites' tests ...
    assert r.seconds == 0.0
    r.begin()
    time.sleep(0.1)
    r.begin()  # a later test does not restart it
    r.end()
    assert 0.1 <= r.seconds < 0.2
    assert r.summary().endswith("; 0 s")
