"""SUMMARY.md from the `<name>.json` files a benchmark run left in one folder (`bench/run.py` calls it).

uv run python bench/summary.py [bench/results]      # rewrite the summary from the JSON files alone
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}" if abs(value) < 1 else f"{value:,.2f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text} {unit}".strip()


def _met(value: bool | None) -> str:
    return {True: "**met**", False: "**missed**", None: "-"}[value]


def write_summary(folder: Path, order: list[str]) -> Path:
    records, missing = [], []
    for name in order:
        path = folder / f"{name}.json"
        record = json.loads(path.read_text()) if path.exists() else None
        if isinstance(record, dict) and record.get("benchmark") == name and "machine" in record:
            records.append(record)
        else:
            missing.append(name)  # not run by this suite yet (absent, or a file of an older format)
    lines = [
        "# Benchmark summary",
        "",
        "Written by `make bench` (`uv run python bench/run.py`); one benchmark: `make bench ONLY=<name>`. Each figure",
        "is measured beside its baseline in the same run, or is a distribution over many samples. The machine facts",
        "(cores, memory, Python, Kafka, commit, load average at start and end) are in each `<name>.json`.",
        "",
    ]
    loads = [r["machine"].get("load_average_start", [0])[0] for r in records if "machine" in r]
    if records:
        m = records[0]["machine"]
        quick = any(r.get("quick") for r in records)
        lines += [
            f"Machine: {m.get('cores')} cores, {m.get('memory_mib')} MiB, Python {m.get('python')}, Kafka "
            f"{m.get('kafka_version')}, commit `{m.get('commit')}`; 1-minute load average at the benchmarks' start "
            f"{min(loads):.1f}-{max(loads):.1f}"
            + (" (**quick mode**: small sizes, not figures)" if quick else "")
            + ".",
            "",
        ]
        if loads and max(loads) > (m.get("cores") or 1) * 0.75:
            lines += [
                "**This run shared its cores with other work (load average above), so the absolute figures are "
                "pessimistic;** the ratios against baselines measured in the same run are the figures to compare. "
                "Re-run `make bench` on an idle machine for absolute figures.",
                "",
            ]
    lines += [
        "| benchmark | figure | this project | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for r in records:
        name = r["benchmark"]
        if r.get("error"):
            lines.append(f"| {name} | did not run: {r['error'][:120]} | | | | | **failed** |")
            continue
        for s in r.get("summary", []):
            unit = s.get("unit", "")
            lines.append(
                f"| {name} | {s['figure']} | {_fmt(s['this'], unit)} | {_fmt(s.get('baseline'), unit)} | "
                f"{_fmt(s.get('ratio'))} | {s.get('target') or '-'} | {_met(s.get('met'))} |"
            )
            if s.get("note"):
                notes.append(f"- **{name}, {s['figure']}**: {s['note']}")
        for finding in r.get("findings", []):
            notes.append(f"- **{name}**: {finding}")
    if missing:
        lines += ["", f"Not in this summary (not run by the suite into this folder yet): {', '.join(missing)}."]
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += ["", "## Runs", "", "| benchmark | seconds | load average start → end | when |", "|---|---|---|---|"]
    for r in records:
        m = r.get("machine", {})
        start, end = m.get("load_average_start", [None])[0], m.get("load_average_end", [None])[0]
        lines.append(f"| {r['benchmark']} | {r.get('seconds')} | {start:.2f} → {end:.2f} | {r.get('when')} |")
    out = folder / "SUMMARY.md"
    out.write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import BENCHMARKS

    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results"
    print(write_summary(folder, list(BENCHMARKS)))
