"""The fault suite's session: one `Report` for every scenario, written at the end and summarised last.

Variants: tests marked `faults` run in `make test` (short); tests marked `faults_long` are skipped unless
`APEV_FAULTS_LONG=1` (`make faults`, which also sets `APEV_FAULTS_REPORT=bench/results/faults.json`).
A session that recorded anything lost or duplicated exits non-zero even if every assertion passed.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the suite's helpers, importable by its tests (importlib mode)

from faults_report import Report

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


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a line that cannot be formatted is still scanned by its raw message
            self.lines.append(str(record.msg))


_captured = _Lines()


@pytest.fixture(scope="session")
def service_logs() -> list[str]:
    """Every log line (stdlib + structlog through it) the suite's services produced so far, formatted."""
    return _captured.lines


def pytest_configure(config: pytest.Config) -> None:
    logging.getLogger().addHandler(_captured)


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
    logging.getLogger().removeHandler(_captured)
    if _report.scenarios:
        path = getattr(_report, "path", None)
        sys.stdout.write(f"report: {path}\n{_report.summary()}\n")
        sys.stdout.flush()
