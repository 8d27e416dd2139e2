"""The fault suite's session: one `Report` for every scenario, written at the end and summarised last.

Variants: tests marked `faults` run in `make test` (short); tests marked `faults_long` are skipped unless
`APEV_FAULTS_LONG=1` (`make faults`, which also sets `APEV_FAULTS_REPORT=bench/results/faults.json`).
A session that recorded anything lost or duplicated (or a secret in a log line) exits non-zero even if every
assertion passed. The summary's clock covers the fault tests only (first one's start to last one's end).
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the suite's helpers, importable by its tests (importlib mode)

from faults_report import Report

from apev_runtime.logging import configure_logging

LONG = os.environ.get("APEV_FAULTS_LONG") == "1"
_report = Report(variant="long" if LONG else "short")
_session_tmp: list[Path] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="long fault variant: run with `make faults`")
    for item in items:
        if "faults_long" in item.keywords and not LONG:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    _session_tmp.append(tmp_path_factory.getbasetemp())
    return _report


class _Tee(io.TextIOBase):
    """The stream the suite's log pipeline writes to: kept line by line for the scan, and passed to stderr."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.extend(line for line in text.splitlines() if line.strip())
        sys.stderr.write(text)
        return len(text)

    def isatty(self) -> bool:
        return False


_tee = _Tee()


@pytest.fixture(scope="session", autouse=True)
def service_logs() -> list[str]:
    """Every log line the suite's services wrote (structlog and the standard library through the runtime's
    one redacting pipeline, as JSON), for the secret scan."""
    configure_logging("DEBUG", "json", stream=_tee)
    return _tee.lines


_HERE = Path(__file__).parent


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _HERE in Path(str(item.path)).parents:
        _report.begin()


def pytest_runtest_teardown(item: pytest.Item) -> None:
    if _HERE in Path(str(item.path)).parents:
        _report.end()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _report.scenarios:
        return
    target = os.environ.get("APEV_FAULTS_REPORT")
    path = Path(target) if target else (_session_tmp[0] if _session_tmp else Path(".")) / "faults.json"
    _report.write(path)
    _report.path = path  # type: ignore[attr-defined]
    if not _report.clean and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    if _report.scenarios:
        path = getattr(_report, "path", None)
        sys.stdout.write(f"report: {path}\n{_report.summary()}\n")
        sys.stdout.flush()
