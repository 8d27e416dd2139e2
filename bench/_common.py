"""Shared pieces of the benchmarks: the environment they run in, machine facts, distributions, summary rows.

Every benchmark module exposes `NAME`, `TITLE` and `async def run(env: Env, quick: bool, progress: Progress)`
returning a JSON-able dict with at least `figures` (name -> number) and `summary` (rows of the SUMMARY table,
`row(...)`); the runner (`bench/run.py`) adds the machine facts and writes `bench/results/<NAME>.json`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apev_stack.paths import repo_root

Progress = Callable[[float, str | None], None]
"""progress(fraction_done in [0, 1], what it is doing now or None)."""


@dataclass
class Env:
    bootstrap: str
    pg_admin: str  # postgresql://user:pass@host:port/postgres (asyncpg/psql form)
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="apev-bench-")))

    def pg_url(self) -> str:
        """The SQLAlchemy (asyncpg) URL of the benchmarks' own database `apev_bench` (made on first use)."""
        return self.pg_admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + "/apev_bench"

    async def ensure_database(self) -> str:
        import asyncpg

        conn = await asyncpg.connect(self.pg_admin)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = 'apev_bench'"):
                await conn.execute('CREATE DATABASE "apev_bench"')
        finally:
            await conn.close()
        return self.pg_url()

    def prefix(self, tag: str) -> str:
        return f"{tag}{uuid.uuid4().hex[:8]}."


def pg_admin_url() -> str:
    if url := os.environ.get("APEV_TEST_PG_URL"):
        return url
    out = subprocess.run(
        ["bash", str(repo_root() / "deploy" / "postgres.sh")], capture_output=True, text=True, check=True
    )
    return next(line.split("=", 1)[1] for line in out.stdout.splitlines() if line.startswith("APEV_TEST_PG_URL="))


def git_commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(repo_root()), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        ["git", "-C", str(repo_root()), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (out.stdout.strip() or "unknown") + ("+dirty" if dirty else "")


def memory_total_mib() -> float | None:
    with contextlib.suppress(OSError, ValueError, StopIteration):
        line = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal:"))
        return round(int(line.split()[1]) / 1024, 1)
    return None


def machine_facts() -> dict[str, Any]:
    from apev_stack.jars import KAFKA_VERSION

    return {
        "cores": os.cpu_count(),
        "memory_mib": memory_total_mib(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kafka_version": KAFKA_VERSION,
        "commit": git_commit(),
        "load_average": list(os.getloadavg()),
    }


def quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of a sorted list."""
    if not ordered:
        raise ValueError("no samples")
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 1))))
    return ordered[rank - 1]


def distribution(samples: list[float], digits: int = 3) -> dict[str, Any]:
    """n, p50/p95/p99, mean, min, max of `samples` (and the samples themselves, rounded)."""
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "p50": round(quantile(ordered, 0.50), digits),
        "p95": round(quantile(ordered, 0.95), digits),
        "p99": round(quantile(ordered, 0.99), digits),
        "mean": round(statistics.fmean(ordered), digits),
        "min": round(ordered[0], digits),
        "max": round(ordered[-1], digits),
        "samples": [round(x, digits) for x in samples],
    }


def row(
    figure: str,
    this: float | str | None,
    *,
    baseline: float | str | None = None,
    ratio: float | None = None,
    target: str | None = None,
    met: bool | None = None,
    unit: str = "",
    note: str = "",
) -> dict[str, Any]:
    """One line of SUMMARY.md: `met` is None where the figure has no target."""
    return {
        "figure": figure,
        "this": this,
        "baseline": baseline,
        "ratio": None if ratio is None else round(ratio, 3),
        "target": target,
        "met": met,
        "unit": unit,
        "note": note,
    }


@contextlib.contextmanager
def quiet_databricks_env() -> Iterator[None]:
    from apev_runtime.testing import no_databricks_env

    with no_databricks_env():
        yield


def peak_rss_mib(pid: int | None = None) -> float | None:
    """VmHWM (peak resident set) of a process, MiB."""
    path = Path(f"/proc/{pid or 'self'}/status")
    with contextlib.suppress(OSError, StopIteration, ValueError):
        line = next(x for x in path.read_text().splitlines() if x.startswith("VmHWM:"))
        return round(int(line.split()[1]) / 1024, 1)
    return None


def _package_of(path: str | None) -> str:
    if not path:
        return "?"
    p = path.replace("\\", "/")
    for marker in ("site-packages/", "/lib/python3.11/"):
        if marker in p:
            return p.split(marker, 1)[1].split("/", 1)[0].removesuffix(".py")
    for part in p.split("/"):
        if part.startswith("apev_"):
            return part
    return p.rsplit("/", 1)[-1]


def profile_breakdown(session: Any, top: int = 12) -> dict[str, Any]:
    """A pyinstrument session as shares of sampled time: by package (self time) and the top functions."""
    root = session.root_frame()
    if root is None:
        return {"packages": {}, "functions": []}
    by_package: dict[str, float] = {}
    by_function: dict[str, float] = {}
    stack = [root]
    while stack:
        frame = stack.pop()
        stack.extend(frame.children)
        if frame.is_synthetic:
            if frame.parent is None or frame.function != "[self]":
                continue
            own, frame = frame.time, frame.parent  # its parent's own time
        else:
            own = frame.time - sum(c.time for c in frame.children)
        if own <= 0:
            continue
        pkg = _package_of(frame.file_path)
        by_package[pkg] = by_package.get(pkg, 0.0) + own
        key = f"{pkg}:{frame.function}"
        by_function[key] = by_function.get(key, 0.0) + own
    total = sum(by_package.values()) or 1.0
    return {
        "sampled_seconds": round(total, 3),
        "packages": {k: round(v / total, 3) for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])[:top]},
        "functions": [
            {"function": k, "share": round(v / total, 3)}
            for k, v in sorted(by_function.items(), key=lambda kv: -kv[1])[:top]
        ],
    }


def describe_profile(breakdown: dict[str, Any], n: int = 5) -> str:
    parts = [f"{k} {v:.0%}" for k, v in list(breakdown.get("packages", {}).items())[:n]]
    funcs = [f"{f['function']} {f['share']:.0%}" for f in breakdown.get("functions", [])[:3]]
    return (
        "pyinstrument, share of sampled time by package: " + ", ".join(parts) + "; top functions: " + ", ".join(funcs)
    )
