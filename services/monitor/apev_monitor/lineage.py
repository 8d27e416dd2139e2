"""The lineage store: OpenLineage run events from `lineage.emitted`, and the graph of datasets, runs and jobs.

    on_lineage_emitted(event, tx)         one row per (run id, eventType), once; nodes and edges, once
    graph(tenant, node, direction)        {nodes: [{id, kind, name, namespace}], edges: [{from, to}]}
    downstream_tables(tenant, node)       every table and volume path downstream of a dataset (GDPR erasure)

Edges: input dataset -> run -> output dataset; job -> run; parent run -> child run. A run with children (the
job's run of a Databricks job with tasks) is reached through them: its own inputs and outputs (the union of its
tasks') are not followed, so `gold.monthly_kpis` traces back through the task that built it rather than through
every table the job touched. Granularity is the task: a task that reads several tables and writes several counts
each output as downstream of each input.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts import LineageEmitted
from apev_contracts.envelope import CloudEvent
from apev_monitor import lineage_tables as t
from apev_runtime.db.engine import Database

Direction = Literal["both", "upstream", "downstream"]


def node_id(kind: str, namespace: str, name: str) -> str:
    return hashlib.sha256(f"{kind}\x00{namespace}\x00{name}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    namespace: str
    name: str


class LineageStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _insert(self, table: Any, **values: Any) -> Any:
        dialect = postgresql if self.db.dialect == "postgresql" else sqlite
        return dialect.insert(table).values(**values).on_conflict_do_nothing()

    async def on_lineage_emitted(self, event: CloudEvent[LineageEmitted], tx: AsyncConnection) -> bool:
        """Store one run event and what it adds to the graph; False when (run id, eventType) was already stored."""
        data = event.data
        ol: dict[str, Any] = dict(data.openlineage)
        stored = await tx.execute(
            self._insert(
                t.events, run_id=data.run_id, event_type=data.event_type, tenant_id=data.tenant_id,
                job_namespace=data.job_namespace, job_name=data.job_name, event_time=str(ol.get("eventTime", "")),
                event_id=event.id, body=ol, received_at=datetime.now(UTC),
            )
        )  # fmt: skip
        if not stored.rowcount:
            return False
        tenant = data.tenant_id
        run = Node(node_id("run", data.job_namespace, data.run_id), "run", data.job_namespace, data.run_id)
        job = Node(node_id("job", data.job_namespace, data.job_name), "job", data.job_namespace, data.job_name)
        await self._node(tx, tenant, run)
        await self._node(tx, tenant, job)
        await self._edge(tx, tenant, job.id, run.id, "job")
        facets = ol.get("run", {}).get("facets", {}) if isinstance(ol.get("run"), dict) else {}
        parent = facets.get("parent") if isinstance(facets, dict) else None
        if isinstance(parent, dict) and isinstance(parent.get("run"), dict) and isinstance(parent.get("job"), dict):
            ns = str(parent["job"].get("namespace", data.job_namespace))
            pid = str(parent["run"].get("runId", ""))
            prun = Node(node_id("run", ns, pid), "run", ns, pid)
            await self._node(tx, tenant, prun, parent=True)
            await self._edge(tx, tenant, prun.id, run.id, "parent")
        for key, into in (("inputs", False), ("outputs", True)):
            for d in ol.get(key) or []:
                if not isinstance(d, dict) or "name" not in d or "namespace" not in d:
                    continue
                ds = Node(node_id("dataset", str(d["namespace"]), str(d["name"])), "dataset",
                          str(d["namespace"]), str(d["name"]))  # fmt: skip
                await self._node(tx, tenant, ds)
                await self._edge(tx, tenant, *((run.id, ds.id) if into else (ds.id, run.id)), "io")
        return True

    async def _node(self, tx: AsyncConnection, tenant: str, node: Node, *, parent: bool = False) -> None:
        await tx.execute(
            self._insert(
                t.nodes,
                tenant_id=tenant,
                node_id=node.id,
                kind=node.kind,
                namespace=node.namespace,
                name=node.name,
                parent=parent,
            )
        )
        if parent:
            await tx.execute(
                t.nodes.update().where(t.nodes.c.tenant_id == tenant, t.nodes.c.node_id == node.id).values(parent=True)
            )

    async def _edge(self, tx: AsyncConnection, tenant: str, src: str, dst: str, via: str) -> None:
        await tx.execute(self._insert(t.edges, tenant_id=tenant, src=src, dst=dst, via=via))

    # ---------------------------------------------------------------- reading
    async def _load(self, tenant: str) -> tuple[dict[str, Node], set[str], list[tuple[str, str, str]]]:
        async with self.db.engine.connect() as conn:
            nodes = (await conn.execute(select(t.nodes).where(t.nodes.c.tenant_id == tenant))).all()
            edges = (await conn.execute(select(t.edges).where(t.edges.c.tenant_id == tenant))).all()
        by_id = {r.node_id: Node(r.node_id, r.kind, r.namespace, r.name) for r in nodes}
        parents = {r.node_id for r in nodes if r.parent}
        return by_id, parents, [(e.src, e.dst, e.via) for e in edges]

    @staticmethod
    def resolve(nodes: dict[str, Node], node: str) -> list[Node]:
        """A dataset by its name (`cat.gold.t`), its last parts (`gold.monthly_kpis`, `employees`), a node id or
        a run id; a person's entity (`employees`) is the MCP entity dataset of that name."""
        exact = [n for n in nodes.values() if node in (n.id, n.name)]
        if exact:
            return exact
        return [
            n for n in nodes.values()
            if n.kind == "dataset" and (n.name.endswith("." + node) or n.name.rstrip("/").endswith("/" + node))
        ]  # fmt: skip

    async def graph(self, tenant: str, node: str, direction: Direction = "both") -> dict[str, Any] | None:
        """The subgraph reachable from `node` (None when the tenant has no such node)."""
        nodes, parents, edges = await self._load(tenant)
        start = self.resolve(nodes, node)
        if not start:
            return None
        # A parent run's own dataset edges are its tasks' union: followed only through the tasks.
        usable = [(s, d) for s, d, via in edges if not (via == "io" and (s in parents or d in parents))]
        seen_edges: set[tuple[str, str]] = set()
        keep = {n.id for n in start}
        if direction in ("both", "downstream"):
            keep |= _walk(start, usable, seen_edges, forward=True)
        if direction in ("both", "upstream"):
            keep |= _walk(start, usable, seen_edges, forward=False)
        return {
            "nodes": [
                {"id": i, "kind": nodes[i].kind, "name": nodes[i].name, "namespace": nodes[i].namespace}
                for i in sorted(keep)
                if i in nodes
            ],
            "edges": [{"from": s, "to": d} for s, d in sorted(seen_edges)],
        }

    async def downstream_tables(self, tenant: str, node: str) -> dict[str, list[str]] | None:
        """Every table (`catalog.schema.table`) and landing path downstream of a dataset: what an erasure of a
        person's entity must touch. None when the tenant has no such node."""
        found = await self.graph(tenant, node, "downstream")
        if found is None:
            return None
        datasets = [n for n in found["nodes"] if n["kind"] == "dataset"]
        tables = sorted(n["name"] for n in datasets if n["name"].count(".") == 2 and not n["name"].startswith("/"))
        volumes = sorted(n["name"] for n in datasets if n["name"].startswith("/Volumes/"))
        return {"tables": tables, "volumes": volumes}


def _walk(start: list[Node], edges: list[tuple[str, str]], seen: set[tuple[str, str]], *, forward: bool) -> set[str]:
    out: dict[str, list[str]] = {}
    for s, d in edges:
        a, b = (s, d) if forward else (d, s)
        out.setdefault(a, []).append(b)
    reached: set[str] = set()
    queue = deque(n.id for n in start)
    while queue:
        current = queue.popleft()
        for nxt in out.get(current, []):
            seen.add((current, nxt) if forward else (nxt, current))
            if nxt not in reached:
                reached.add(nxt)
                queue.append(nxt)
    return reached
