"""Runs last in the suite (file order): every log line the fault tests' services wrote holds no token, key,
password or SSN."""

from __future__ import annotations

import re

import pytest
import structlog
from faults_report import Report

pytestmark = pytest.mark.faults

PATTERNS = {
    "jwt": re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "bearer token": re.compile(r"Bearer\s+(?!\[REDACTED\])[A-Za-z0-9._~+/-]{8,}"),
    "databricks token": re.compile(r"dapi[a-z0-9-]{8,}"),
    "password in url": re.compile(r"://[^:/\s\"]+:(?!\[REDACTED\])[^@/\s\"]+@"),
    "ssn": re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),
    "hs256 secret": re.compile(re.escape("faults-suite-hs256-secret-0123456789abcdef")),
}


def findings(lines: list[str]) -> list[str]:
    return [f"{name}: {line[:200]}" for line in lines for name, p in PATTERNS.items() if p.search(line)]


def test_the_scan_finds_what_it_looks_for() -> None:
    planted = ["Authorization: Bearer abcdefgh12345678", "ssn 123-45-6789", "postgresql://apev:hunter2@db/x"]
    assert len(findings(planted)) == 3


def test_no_secret_in_any_log_line(service_logs: list[str], report: Report) -> None:
    # One line carrying every kind of secret, through the same pipeline: it must come out redacted.
    structlog.get_logger("apev.faults").warning(
        "probe",
        authorization="Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
        url="postgresql://apev:hunter2@127.0.0.1/db",
        note="patient 123-45-6789 token dapi0123456789abcdef",
    )
    assert any('"probe"' in line for line in service_logs)
    found = findings(service_logs)
    report.record("log_scan", tried=0, scanned=len(service_logs), found=len(found), findings=found[:20])
    assert not found, found
