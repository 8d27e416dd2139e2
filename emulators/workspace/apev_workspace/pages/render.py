"""HTML for the run, task output, job and home pages: plain strings, inline CSS and SVG, no JavaScript
framework and nothing fetched from the network. Every value from a run or job is escaped."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from apev_workspace.jobs import states

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{background:#1b3139;color:#fff;padding:10px 24px;font-weight:600}
header a{color:#fff;text-decoration:none}
main{padding:16px 24px;max-width:1400px}
h1{font-size:20px;margin:8px 0 4px}
h2{font-size:16px;margin:22px 0 8px}
a{color:#0969da}
nav.crumbs{color:#57606a;margin-bottom:6px}
table{border-collapse:collapse;background:#fff;border:1px solid #d0d7de;min-width:50%}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #d0d7de;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:4px 16px;background:#fff;
 border:1px solid #d0d7de;padding:10px 14px;margin:0}
dl.facts dt{color:#57606a}dl.facts dd{margin:0}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.message{background:#fff;border:1px solid #d0d7de;border-left:4px solid #cf222e;padding:8px 12px;
 white-space:pre-wrap}
pre{background:#0d1117;color:#e6edf3;padding:12px;overflow:auto;max-height:600px;white-space:pre-wrap}
svg.dag{background:#fff;border:1px solid #d0d7de}
svg.dag text{font:12px system-ui,sans-serif}
svg.dag .key{font-weight:600;font-size:13px}
.muted{color:#57606a}
"""

COLORS = {
    "SUCCESS": "#1a7f37",
    "SUCCESS_WITH_FAILURES": "#4d8c2f",
    "FAILED": "#cf222e",
    "TIMEDOUT": "#bc4c00",
    "INTERNAL_ERROR": "#a40e26",
    "CANCELED": "#6e7781",
    "UPSTREAM_FAILED": "#d1242f",
    "UPSTREAM_CANCELED": "#8c959f",
    "EXCLUDED": "#8c959f",
    "MAXIMUM_CONCURRENT_RUNS_REACHED": "#8c959f",
    "RUNNING": "#0969da",
    "TERMINATING": "#0969da",
    "QUEUED": "#9a6700",
    "PENDING": "#9a6700",
    "BLOCKED": "#9a6700",
    "WAITING_FOR_RETRY": "#8250df",
    "FINISHED": "#1a7f37",
    "KILLED": "#6e7781",
    "SCHEDULED": "#9a6700",
}
NOT_RUN = ("UPSTREAM_FAILED", "UPSTREAM_CANCELED", "EXCLUDED")
BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 210, 66, 70, 22, 20


def state_of(obj: dict[str, Any]) -> str:
    """What a person wants to see: the result once terminal, else the lifecycle state."""
    life = obj.get("legacy_life") or obj["life"]
    if life == "INTERNAL_ERROR":
        return "INTERNAL_ERROR"
    return str(obj.get("result") or life) if not states.is_active(obj) else str(obj["life"])


def badge(state: str) -> str:
    color = COLORS.get(state, "#57606a")
    return f'<span class="badge" style="background:{color}" data-state="{escape(state)}">{escape(state)}</span>'


def when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(obj: dict[str, Any], now: int, start_key: str = "start_time") -> str:
    start = obj.get(start_key) or obj.get("start_time") or 0
    if not start:
        return "-"
    ms = max(0, (obj.get("end_time") or now) - start)
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {sec:02d}s" if hours else f"{minutes}m {sec:02d}s"


def page(title: str, body: str, *, refresh: bool = False, head: str = "") -> str:
    meta = '<meta http-equiv="refresh" content="3">' if refresh else ""
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{meta}<title>{escape(title)}</title>'
        f"<style>{CSS}</style>{head}</head><body>"
        '<header><a href="/">Local Databricks workspace</a></header>'
        f"<main>{body}</main></body></html>"
    )


def facts(rows: list[tuple[str, str]]) -> str:
    return '<dl class="facts">' + "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# ---------------------------------------------------------------------- the DAG
def layers(tasks: list[dict[str, Any]]) -> dict[str, int]:
    """Depth of each task: 0 without dependencies, else one more than its deepest dependency."""
    deps = {t["task_key"]: [d["task_key"] for d in t["spec"].get("depends_on") or []] for t in tasks}
    depth: dict[str, int] = {}

    def visit(key: str) -> int:
        if key not in depth:
            depth[key] = 0  # guards against a cycle, which validation already refuses
            depth[key] = 1 + max((visit(d) for d in deps[key] if d in deps), default=-1)
        return depth[key]

    for key in deps:
        visit(key)
    return depth


def dag_svg(tasks: list[dict[str, Any]], link: Any, now: int) -> str:
    depth = layers(tasks)
    slots: dict[int, int] = {}
    pos: dict[str, tuple[int, int]] = {}
    for task in tasks:
        layer = depth[task["task_key"]]
        row = slots.get(layer, 0)
        slots[layer] = row + 1
        pos[task["task_key"]] = (PAD + layer * (BOX_W + GAP_X), PAD + row * (BOX_H + GAP_Y))
    width = PAD * 2 + (max(depth.values(), default=0) + 1) * (BOX_W + GAP_X) - GAP_X
    height = PAD * 2 + max(slots.values(), default=1) * (BOX_H + GAP_Y) - GAP_Y
    parts = [
        f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Task graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#57606a"/></marker></defs>',
    ]
    for task in tasks:
        x2, y2 = pos[task["task_key"]]
        for dep in task["spec"].get("depends_on") or []:
            if dep["task_key"] not in pos:
                continue
            x1, y1 = pos[dep["task_key"]]
            sx, sy, ex, ey = x1 + BOX_W, y1 + BOX_H // 2, x2, y2 + BOX_H // 2
            mid = (sx + ex) // 2
            parts.append(
                f'<path class="edge" data-from="{escape(dep["task_key"])}" data-to="{escape(task["task_key"])}" '
                f'd="M{sx},{sy} C{mid},{sy} {mid},{ey} {ex - 2},{ey}" fill="none" stroke="#57606a" '
                'stroke-width="1.5" marker-end="url(#arrow)"/>'
            )
    for task in tasks:
        parts.append(_box(task, pos[task["task_key"]], link(task), now))
    parts.append("</svg>")
    return "".join(parts)


def _box(task: dict[str, Any], at: tuple[int, int], href: str, now: int) -> str:
    x, y = at
    state = state_of(task)
    color = COLORS.get(state, "#57606a")
    key = task["task_key"]
    shown = key if len(key) <= 26 else key[:25] + "…"
    attempts = task["attempt_number"] + 1
    if task.get("result") in NOT_RUN:
        detail = "not run"
    else:
        detail = f"{duration(task, now)} · attempt {attempts}" if task.get("start_time") else "not started"
    return (
        f'<a href="{escape(href)}"><g class="task" data-task="{escape(key)}" data-state="{escape(state)}">'
        f"<title>{escape(key)}: {escape(state)}</title>"
        f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="#fff" stroke="{color}" '
        'stroke-width="2"/>'
        f'<rect x="{x}" y="{y}" width="6" height="{BOX_H}" rx="3" fill="{color}"/>'
        f'<text class="key" x="{x + 14}" y="{y + 20}">{escape(shown)}</text>'
        f'<text x="{x + 14}" y="{y + 39}" fill="{color}" font-weight="600">{escape(state)}</text>'
        f'<text x="{x + 14}" y="{y + 56}" fill="#57606a">{escape(detail)}</text></g></a>'
    )
