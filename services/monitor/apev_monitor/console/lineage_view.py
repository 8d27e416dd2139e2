"""The lineage page's drawing: a lineage API answer (`{"nodes": [...], "edges": [{"from", "to"}]}`) laid out in
layers left to right by graph depth (the longest path from a node without inputs; such a node itself just left
of its nearest output), as inline SVG (no script,
nothing fetched), plus the rows of its node and edge tables.

    layout(graph) -> View(nodes=[Placed...], edges=[(Placed, Placed)...], width, height)
    svg(view, centre_ids, link) -> markup    each node a link (`link(node)`) that re-centres the page on it

A cycle (a task that reads and writes one table) is broken where it is found: the graph is still drawn.
Text is escaped; the result is marked safe for Jinja.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html import escape
from typing import Any

from markupsafe import Markup

KIND_COLORS = {"dataset": "#2563eb", "run": "#d97706", "job": "#059669"}
BOX_W, BOX_H, COL_W, ROW_H, PAD = 190, 30, 240, 44, 16


@dataclass
class Placed:
    id: str
    kind: str
    name: str
    namespace: str
    label: str
    layer: int = 0
    row: int = 0
    ups: int = 0
    downs: int = 0
    job: str | None = None  # a run's job (its `job -> run` edge)

    @property
    def x(self) -> float:
        return PAD + self.layer * COL_W

    @property
    def y(self) -> float:
        return PAD + 18 + self.row * ROW_H


@dataclass
class View:
    nodes: list[Placed] = field(default_factory=list)
    edges: list[tuple[Placed, Placed]] = field(default_factory=list)
    width: int = 0
    height: int = 0


def _short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1) :]


def _label(kind: str, name: str, job: str | None) -> str:
    if kind == "dataset":
        if name.startswith("/"):
            return _short(name.rstrip("/").split("/", 5)[-1])
        return _short(".".join(name.split(".")[-2:]))
    if kind == "job":
        return _short(name.rsplit(":", 1)[-1])
    task = job.rsplit(":", 1)[-1].rsplit(".", 1)[-1] if job else "run"
    return _short(f"{task} · {name[:8]}")


def _layers(ids: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layering (Kahn); a node left in a cycle is taken as ready, the cycle's edge ignored."""
    preds: dict[str, set[str]] = {i: set() for i in ids}
    succs: dict[str, set[str]] = {i: set() for i in ids}
    for a, b in edges:
        if a != b:
            preds[b].add(a)
            succs[a].add(b)
    depth = dict.fromkeys(ids, 0)
    waiting = {i: len(preds[i]) for i in ids}
    done: set[str] = set()
    ready = sorted(i for i in ids if not waiting[i])
    while len(done) < len(ids):
        if not ready:  # a cycle: take the first node still waiting
            ready = [min(i for i in ids if i not in done)]
        current = ready.pop(0)
        if current in done:
            continue
        done.add(current)
        for nxt in sorted(succs[current]):
            if nxt in done:
                continue
            depth[nxt] = max(depth[nxt], depth[current] + 1)
            waiting[nxt] -= 1
            if waiting[nxt] <= 0:
                ready.append(nxt)
    # a node without inputs (a job, an MCP entity) sits just left of its nearest output, not all in column 0
    for i in ids:
        if not preds[i] and succs[i]:
            depth[i] = max(depth[i], min(depth[n] for n in succs[i]) - 1)
    return depth


def layout(graph: dict[str, Any]) -> View:
    raw_nodes: list[dict[str, Any]] = [n for n in graph.get("nodes", []) if isinstance(n, dict) and "id" in n]
    kinds = {str(n["id"]): str(n.get("kind", "")) for n in raw_nodes}
    names = {str(n["id"]): str(n.get("name", "")) for n in raw_nodes}
    edges = [(str(e["from"]), str(e["to"])) for e in graph.get("edges", []) if e.get("from") in kinds
             and e.get("to") in kinds]  # fmt: skip
    jobs = {b: names[a] for a, b in edges if kinds[a] == "job" and kinds[b] == "run"}
    ids = sorted(kinds)
    depth = _layers(ids, edges)
    placed = {
        str(n["id"]): Placed(
            id=str(n["id"]), kind=kinds[str(n["id"])], name=names[str(n["id"])], namespace=str(n.get("namespace", "")),
            label=_label(kinds[str(n["id"])], names[str(n["id"])], jobs.get(str(n["id"]))),
            layer=depth[str(n["id"])], job=jobs.get(str(n["id"])),
        )
        for n in raw_nodes
    }  # fmt: skip
    for a, b in edges:
        placed[a].downs += 1
        placed[b].ups += 1
    # rows: each layer ordered by the mean row of its inputs (fewer crossings), then kind and name
    rows: dict[str, float] = {}
    for layer in range(max(depth.values(), default=-1) + 1):
        column = [p for p in placed.values() if p.layer == layer]

        def key(p: Placed) -> tuple[float, str, str]:
            before = [rows[a] for a, b in edges if b == p.id and a in rows]
            return (sum(before) / len(before) if before else 0.0, p.kind, p.name)

        for row, p in enumerate(sorted(column, key=key)):
            p.row = row
            rows[p.id] = row
    nodes = sorted(placed.values(), key=lambda p: (p.layer, p.row))
    layers = max((p.layer for p in nodes), default=0) + 1
    tallest = max((p.row for p in nodes), default=0) + 1
    return View(
        nodes=nodes,
        edges=[(placed[a], placed[b]) for a, b in edges],
        width=int(PAD * 2 + (layers - 1) * COL_W + BOX_W),
        height=int(PAD * 2 + 18 + tallest * ROW_H + 24),
    )


def svg(view: View, centre: Iterable[str], link: Callable[[Placed], str]) -> Markup:
    centre_ids = set(centre)
    out = [
        f'<svg class="lineage" width="{view.width}" height="{view.height}" viewBox="0 0 {view.width} {view.height}" '
        f'role="img" aria-label="lineage graph" xmlns="http://www.w3.org/2000/svg">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#9ca3af"/></marker></defs>',
    ]
    for i, (kind, color) in enumerate(KIND_COLORS.items()):
        out.append(f'<rect x="{PAD + i * 90}" y="4" width="10" height="10" fill="{color}"/>'
                   f'<text x="{PAD + i * 90 + 14}" y="13" class="legend">{kind}</text>')  # fmt: skip
    for a, b in view.edges:
        x1, y1 = a.x + BOX_W, a.y + BOX_H / 2
        x2, y2 = b.x, b.y + BOX_H / 2
        out.append(
            f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" class="edge" '
            f'data-from="{escape(a.id)}" data-to="{escape(b.id)}" marker-end="url(#arrow)"/>'
        )
    for p in view.nodes:
        color = KIND_COLORS.get(p.kind, "#6b7280")
        ring = ' stroke="#111827" stroke-width="3"' if p.id in centre_ids else ""
        title = f"{p.kind} {p.name}" + (f" ({p.job})" if p.job else "") + f" · {p.namespace}"
        out.append(
            f'<a href="{escape(link(p))}" data-node="{escape(p.id)}" data-kind="{escape(p.kind)}">'
            f"<title>{escape(title)}</title>"
            f'<rect x="{p.x:.0f}" y="{p.y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="5" fill="{color}"{ring}/>'
            f'<text x="{p.x + 8:.0f}" y="{p.y + 19:.0f}" class="node-label">{escape(p.label)}</text></a>'
        )
    if not view.nodes:
        out.append(f'<text x="{PAD}" y="{PAD + 40}" class="empty">no nodes</text>')
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every piece of text above is escaped
