"""Benchmark: Vector Search in the local workspace, through databricks-sdk, as serving uses it.

A source table of N chunks (synthetic office-document sentences, ~45 words each, change data feed on) is loaded
with COPY INTO from a volume; then a Delta Sync index over it, embedded by the local embedding endpoint (a served
model in its own worker process, hashed bag of words, 256 dimensions), is created and timed until it is
ONLINE_NO_PENDING_UPDATE with all N rows (`index_build_seconds`: embeddings + writes). Then Q queries with
`query_text` (HTTP + embedding + exact search over all N rows) and Q with `query_vector` (search alone), each
`num_results=10`; p50/p95/max in ms. Finally 1 % of the rows change and a `sync_index` is timed (only changed
rows are re-embedded). Search is exact (DuckDB `array_distance` over every row): no approximate index, so
recall@10 is 1 by construction and is not measured.

    uv run python bench/vector_search.py                     # 100,000 chunks, 200 queries of each kind
    uv run python bench/vector_search.py --quick             # 2,000 chunks, 30 queries (a smoke test)
    uv run python bench/vector_search.py --chunks 20000 --queries 100 --out /tmp/vs.json

The result is appended to `--out` (default bench/results/vector_search.json) as one JSON object; the last line
printed is that object. Exit status 0 when the index was built and every query answered.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORDS = (  # noqa: SIM905 - a word list reads better as prose
    "patient hygiene recall crown implant filling root canal cleaning orthodontics x-ray extraction veneer bridge "
    "sealant payer contract deductible maximum waiting period pre-authorisation claim renewal notice policy "
    "cancellation appointment fee reminder text email schedule staff meeting parking holiday supply sterilisation "
    "autoclave spore record retention chart radiograph minor balance statement collections emergency slot triage "
    "opioid prescription monitoring scrubs shoes privacy screen incident office manager approval front desk "
    "insurance verification survey satisfaction proposal decision owner action item review month week team "
    "delta cigna aetna metlife guardian concordia humana bluecross ameritas principal ppo hmo premier medicare"
).split()


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def _timings(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values), 2),
        "p95_ms": round(_percentile(values, 95), 2),
        "max_ms": round(max(values), 2),
    }


def _text(rng: random.Random, n: int = 45) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _sql(w: Any, statement: str) -> None:
    from databricks.sdk.service.sql import StatementState

    wh = str(next(iter(w.warehouses.list())).id)
    done = w.statement_execution.execute_statement(statement=statement, warehouse_id=wh, wait_timeout="50s")
    while done.status and done.status.state in (StatementState.PENDING, StatementState.RUNNING):
        time.sleep(0.2)
        done = w.statement_execution.get_statement(str(done.statement_id))
    if done.status is None or done.status.state != StatementState.SUCCEEDED:
        raise RuntimeError(f"SQL failed: {done.status}: {statement[:200]}")


def _wait(w: Any, name: str, rows: int, timeout: float) -> float:
    started, deadline = time.monotonic(), time.monotonic() + timeout
    while True:
        status = w.vector_search_indexes.get_index(name).status
        message = status.message or ""
        if "FAILED" in message:
            raise RuntimeError(f"index {name} failed: {message}")
        if status.ready and message.startswith("ONLINE_NO_PENDING_UPDATE") and status.indexed_row_count == rows:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise TimeoutError(f"index {name} not built in {timeout} s: {message}")
        time.sleep(0.1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from databricks.sdk.service import catalog, vectorsearch

    from apev_workspace.serving.embeddings import ensure_local_embedding_endpoint
    from apev_workspace.testing import running_workspace

    for key in [k for k in os.environ if k.startswith("DATABRICKS_")]:
        os.environ.pop(key)
    os.environ["DATABRICKS_CONFIG_FILE"] = "/nonexistent/databrickscfg"
    rng = random.Random(args.seed)
    with running_workspace(Path(tempfile.mkdtemp(prefix="bench-vs-")) / "ws") as ws:
        ws.workspace.serving.transition_seconds = 0.2
        ws.workspace.vector_search.endpoint_provision_seconds = 0.0
        w = ws.client()
        ensure_local_embedding_endpoint(ws)
        w.catalogs.create(name="bench")
        w.schemas.create(name="gold", catalog_name="bench")
        w.volumes.create(
            catalog_name="bench", schema_name="gold", name="landing", volume_type=catalog.VolumeType.MANAGED
        )
        _sql(w, "CREATE TABLE bench.gold.chunks (chunk_id STRING, document_id STRING, title STRING, chunk_text STRING)"
                " TBLPROPERTIES (delta.enableChangeDataFeed = true)")  # fmt: skip
        rows = (
            {"chunk_id": f"c{i}", "document_id": f"d{i // 3}", "title": f"Doc {i // 3}"} for i in range(args.chunks)
        )
        lines = [json.dumps(r | {"chunk_text": _text(rng)}) for r in rows]
        w.files.upload("/Volumes/bench/gold/landing/chunks.json", io.BytesIO("\n".join(lines).encode()), overwrite=True)
        loaded = time.monotonic()
        _sql(w, "COPY INTO bench.gold.chunks FROM '/Volumes/bench/gold/landing/' FILEFORMAT = JSON")
        load_seconds = time.monotonic() - loaded
        print(f"bench: {args.chunks} chunks loaded in {load_seconds:.1f} s", flush=True)

        w.vector_search_endpoints.create_endpoint_and_wait(
            name="bench", endpoint_type=vectorsearch.EndpointType.STANDARD
        )
        spec = vectorsearch.DeltaSyncVectorIndexSpecRequest(
            source_table="bench.gold.chunks",
            pipeline_type=vectorsearch.PipelineType.TRIGGERED,
            embedding_source_columns=[
                vectorsearch.EmbeddingSourceColumn(
                    name="chunk_text", embedding_model_endpoint_name="apev-local-embeddings"
                )
            ],
        )
        name = "bench.gold.chunks_index"
        started = time.monotonic()
        w.vector_search_indexes.create_index(
            name=name, endpoint_name="bench", primary_key="chunk_id",
            index_type=vectorsearch.VectorIndexType.DELTA_SYNC, delta_sync_index_spec=spec,
        )  # fmt: skip
        _wait(w, name, args.chunks, args.timeout)
        build_seconds = time.monotonic() - started
        print(f"bench: index built in {build_seconds:.1f} s", flush=True)

        text_ms, vector_ms = [], []
        for _ in range(args.queries):
            question = _text(rng, 8)
            t0 = time.perf_counter()
            found = w.vector_search_indexes.query_index(
                name, ["chunk_id", "title"], query_text=question, num_results=10
            )
            text_ms.append((time.perf_counter() - t0) * 1000)
            assert found.result is not None and found.result.row_count == 10
        dim = 256
        for _ in range(args.queries):
            vector = [rng.gauss(0, 1) for _ in range(dim)]
            t0 = time.perf_counter()
            found = w.vector_search_indexes.query_index(name, ["chunk_id"], query_vector=vector, num_results=10)
            vector_ms.append((time.perf_counter() - t0) * 1000)
            assert found.result is not None and found.result.row_count == 10

        changed = max(1, args.chunks // 100)
        update = "UPDATE bench.gold.chunks SET chunk_text = concat(chunk_text, ' revised') WHERE "
        _sql(w, update + f"CAST(substr(chunk_id, 2) AS INT) < {int(changed)}")
        t0 = time.monotonic()
        w.vector_search_indexes.sync_index(name)
        time.sleep(0.05)
        _wait(w, name, args.chunks, args.timeout)
        resync_seconds = time.monotonic() - t0

    return {
        "benchmark": "vector_search",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "chunks": args.chunks,
        "dimension": dim,
        "embedding": "apev-local-embeddings (hashed bag of words, local-only)",
        "search": "exact: DuckDB array_distance over every row (no ANN, recall@10 = 1 by construction)",
        "load_seconds": round(load_seconds, 2),
        "index_build_seconds": round(build_seconds, 2),
        "index_build_rows_per_second": round(args.chunks / build_seconds, 1),
        "query_text": {"queries": args.queries, **_timings(text_ms)},
        "query_vector": {"queries": args.queries, **_timings(vector_ms)},
        "resync_changed_rows": changed,
        "resync_seconds": round(resync_seconds, 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0]},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 chunks and 30 queries (a smoke test)")
    parser.add_argument("--chunks", type=int, default=None, help="rows of the source table (default 100,000)")
    parser.add_argument("--queries", type=int, default=None, help="queries of each kind (default 200)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="longest wait for a build or a sync, s")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "vector_search.json")
    args = parser.parse_args()
    args.chunks = args.chunks or (2_000 if args.quick else 100_000)
    args.queries = args.queries or (30 if args.quick else 200)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(args.out.read_text()) if args.out.exists() else []
    existing = existing if isinstance(existing, list) else [existing]
    args.out.write_text(json.dumps([*existing, result], indent=2) + "\n")
    print(f"bench: appended to {args.out}", flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
