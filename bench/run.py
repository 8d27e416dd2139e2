"""The benchmark suite: each benchmark against its baseline in the same run, on real Kafka and PostgreSQL.

    uv run python bench/run.py                      # every benchmark (what `make bench` runs)
    uv run python bench/run.py --only api_cost      # one (repeat --only for several; `make bench ONLY=api_cost`)
    uv run python bench/run.py --quick              # small sizes, results under bench/results/quick/
    uv run python bench/run.py --list               # the names

Writes `<out-dir>/<name>.json` (figures, distributions, machine facts at start and end) for each benchmark run
and rewrites `<out-dir>/SUMMARY.md` from every `<name>.json` there. Without KAFKA_BOOTSTRAP_SERVERS it starts a
private broker from the cached jars; without APEV_TEST_PG_URL it runs deploy/postgres.sh. Exit status 1 when a
benchmark failed to run (a missed target is not a failure: the table says so).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import Env, machine_facts, pg_admin_url  # noqa: E402
from summary import write_summary  # noqa: E402

# name -> module in bench/ (order: the 1-9)
BENCHMARKS = {
    "delivery": "bench_delivery",
    "latency": "bench_latency",
    "api_cost": "bench_api_cost",
    "freshness": "bench_freshness",
    "tenants": "bench_tenants",
    "writeback": "bench_writeback",
    "monitor": "bench_monitor",
    "serving": "bench_serving",
    "memory": "bench_memory",
}

app = typer.Typer(add_completion=False, help=__doc__)
console = Console(stderr=True)


def _run_one(name: str, env: Env, quick: bool, progress: Progress, out_dir: Path) -> bool:
    module = importlib.import_module(BENCHMARKS[name])
    task = progress.add_task(f"{name}: starting", total=1000)

    def report(done: float, what: str | None = None) -> None:
        progress.update(task, completed=int(max(0.0, min(1.0, done)) * 1000))
        if what:
            progress.update(task, description=f"{name}: {what}")

    start_facts = machine_facts()
    started = time.monotonic()
    when = datetime.now(UTC).isoformat(timespec="seconds")
    ok = True
    try:
        result: dict[str, Any] = asyncio.run(module.run(env, quick, report))
    except Exception as err:  # recorded, and the suite goes on with the next benchmark
        ok = False
        result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-4000:], "summary": []}
        progress.console.print(f"[red]{name} failed: {type(err).__name__}: {err}")
    seconds = round(time.monotonic() - started, 1)
    record = {
        "benchmark": name,
        "title": module.TITLE,
        "quick": quick,
        "when": when,
        "seconds": seconds,
        "machine": {**start_facts, "load_average_start": start_facts.pop("load_average")},
        **result,
    }
    record["machine"]["load_average_end"] = list(os.getloadavg())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    progress.update(task, completed=1000, description=f"{name}: {'done' if ok else 'FAILED'} in {seconds:.0f}s")
    return ok


@app.command()
def main(
    only: list[str] = typer.Option([], "--only", help="run only these benchmarks (repeatable)"),
    quick: bool = typer.Option(False, "--quick", help="small sizes: proves each runs (the smoke test's mode)"),
    out_dir: Path | None = typer.Option(None, "--out-dir", help="default bench/results (quick: bench/results/quick)"),
    list_names: bool = typer.Option(False, "--list", help="print the benchmarks' names and exit"),
) -> None:
    if list_names:
        for name, module in BENCHMARKS.items():
            print(f"{name:10} {importlib.import_module(module).TITLE}")
        return
    names = [n for part in only for n in part.replace(",", " ").split()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise typer.BadParameter(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}", param_hint="--only")
    out = out_dir or (HERE / "results" / ("quick" if quick else ""))
    from apev_runtime.logging import configure_logging
    from apev_stack.kafka import KafkaBroker, free_port

    configure_logging(os.environ.get("BENCH_LOG_LEVEL", "ERROR"), "console")
    broker: KafkaBroker | None = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = KafkaBroker(home=Path(tempfile.mkdtemp()) / "kafka", port=free_port(), controller_port=free_port())
        console.print(f"bench: starting a private Kafka broker on {broker.bootstrap}")
        broker.start()
        bootstrap = broker.bootstrap
    env = Env(bootstrap=bootstrap, pg_admin=pg_admin_url())
    failed: list[str] = []
    started = time.monotonic()
    try:
        columns = (TextColumn("{task.description:<48}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            for name in names:
                if not _run_one(name, env, quick, progress, out):
                    failed.append(name)
    finally:
        if broker is not None:
            broker.stop()
    summary = write_summary(out, list(BENCHMARKS))
    console.print(f"bench: {len(names)} benchmark(s) in {time.monotonic() - started:.0f}s; wrote {summary}")
    if failed:
        console.print(f"[red]bench: failed to run: {', '.join(failed)}")
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
