"""Vector Search without HTTP: endpoints, indexes, syncs, queries; Unity Catalog privileges on every call.

An index is a Unity Catalog securable of type TABLE (as on Databricks: `GRANT SELECT ON TABLE <index>`), registered
in the catalog under its three-part name, so grants, inheritance and ownership are Unity Catalog's. Reading
(`get`, `query`) needs `USE_CATALOG`, `USE_SCHEMA` and `SELECT` on the index (or a parent); writing (`sync`,
`upsert-data`, `delete-data`) `MODIFY`; creating `CREATE_TABLE` on the schema and `SELECT` on a Delta Sync source;
deleting `MANAGE` (owners hold everything). Embeddings come from the serving endpoint each index names, through the
serving area (a real served model in its own worker process), in batches.

Delta Sync (TRIGGERED): create runs the initial snapshot in the background; `sync` reads the source table again
as the index's owner, re-embeds only rows whose text changed, rewrites changed rows and drops deleted ones. States
(`status.detailed_state`, also in `status.message`): PROVISIONING_INITIAL_SNAPSHOT (not ready), then
ONLINE_NO_PENDING_UPDATE; ONLINE_TRIGGERED_UPDATE while a sync runs (the previous rows stay queryable);
FAILED / ONLINE_PIPELINE_FAILED with the reason. A sync asked for while one runs runs once more afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apev_workspace.core.store import Store
from apev_workspace.identity.models import Identity, Principal
from apev_workspace.unity_catalog.models import UnityCatalog, check_name, split_name
from apev_workspace.vector_search import filters
from apev_workspace.vector_search.exceptions import (
    ApiError,
    InvalidParameterValue,
    InvalidState,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)
from apev_workspace.vector_search.vectors import Vectors, duck_type

log = logging.getLogger("apev_workspace.vector_search")
_ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,62}$")
ENDPOINT_TYPES = ("STANDARD", "STORAGE_OPTIMIZED")
EMBED_BATCH = 256
MAX_RESULTS = 10_000
CDF_PROPERTY = "delta.enableChangeDataFeed"
DIRECT_TYPES = {"integer": "INT", "long": "LONG", "float": "FLOAT", "double": "DOUBLE", "boolean": "BOOLEAN",
                "string": "STRING", "date": "DATE", "timestamp": "TIMESTAMP"}  # fmt: skip


def now_ms() -> int:
    return int(time.time() * 1000)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass
class Embedder:
    """How an index reaches its embedding endpoint: `invoke(name, kind, payload)` of the serving area, and its
    `get(name)` (raises when there is no such endpoint)."""

    serving: Any

    def check(self, name: str) -> None:
        self.serving.get(name)

    def embed(self, name: str, texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            batch = texts[start : start + EMBED_BATCH]
            _, result = self.serving.invoke(name, "embeddings", {"input": batch})
            data = sorted(result.get("data") or [], key=lambda d: int(d.get("index", 0)))
            if len(data) != len(batch):
                raise InvalidState(f"Embedding endpoint {name} answered {len(data)} embeddings for {len(batch)} texts")
            out += [[float(x) for x in d["embedding"]] for d in data]
        return out


class VectorSearch:
    def __init__(
        self,
        store: Store,
        lock: threading.RLock,
        identity: Identity,
        uc: UnityCatalog,
        sql: Any,
        serving: Any,
        data_dir: Path,
        *,
        public_url: Any,
        endpoint_provision_seconds: float = 1.0,
    ) -> None:
        self._store = store
        self._lock = lock
        self.identity = identity
        self.uc = uc
        self.sql = sql
        self.embedder = Embedder(serving)
        self.data_dir = data_dir
        self.public_url = public_url
        self.endpoint_provision_seconds = endpoint_provision_seconds
        self.endpoints: dict[str, dict[str, Any]] = store.load("vs_endpoint")
        self.indexes: dict[str, dict[str, Any]] = store.load("vs_index")
        self._vectors: dict[str, Vectors] = {}
        self._syncing: dict[str, threading.Thread] = {}
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Syncs that were running when the workspace stopped run again."""
        for name, meta in list(self.indexes.items()):
            if meta.get("pending") or meta["state"] in ("PROVISIONING_INITIAL_SNAPSHOT", "ONLINE_TRIGGERED_UPDATE"):
                self._start_sync(name)

    def close(self) -> None:
        self._closed = True
        for thread in list(self._syncing.values()):
            thread.join(timeout=30)
        for vectors in self._vectors.values():
            vectors.close()
        self._vectors.clear()

    # ------------------------------------------------------------------ endpoints
    def _endpoint_view(self, obj: dict[str, Any]) -> dict[str, Any]:
        online = (now_ms() - obj["creation_timestamp"]) / 1000 >= self.endpoint_provision_seconds
        count = sum(1 for i in self.indexes.values() if i["endpoint_name"] == obj["name"])
        state = "ONLINE" if online else "PROVISIONING"
        return obj | {
            "endpoint_status": {"state": state, "message": f"Endpoint is {state.lower()}"},
            "num_indexes": count,
        }

    def create_endpoint(self, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body.get("name") or "")
        if not _ENDPOINT_NAME.match(name):
            raise InvalidParameterValue(f"Invalid endpoint name {name!r}: letters, digits, '-' and '_', at most 63")
        kind = str(body.get("endpoint_type") or "")
        if kind not in ENDPOINT_TYPES:
            raise InvalidParameterValue(f"endpoint_type must be one of {', '.join(ENDPOINT_TYPES)}, got {kind!r}")
        with self._lock:
            if name in self.endpoints:
                raise ResourceAlreadyExists(f"Vector search endpoint {name} already exists")
            now = now_ms()
            obj = {
                "name": name,
                "id": str(uuid.uuid4()),
                "endpoint_type": kind,
                "creator": who.name,
                "creation_timestamp": now,
                "last_updated_timestamp": now,
                "last_updated_user": who.name,
            }
            self.endpoints[name] = obj
            self._store.put("vs_endpoint", name, obj)
            return self._endpoint_view(obj)

    def _endpoint(self, name: str) -> dict[str, Any]:
        obj = self.endpoints.get(name)
        if obj is None:
            raise ResourceDoesNotExist(f"Vector search endpoint {name} not found")
        return obj

    def get_endpoint(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self._endpoint_view(self._endpoint(name))

    def list_endpoints(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._endpoint_view(e) for _, e in sorted(self.endpoints.items())]

    def delete_endpoint(self, who: Principal, name: str) -> None:
        with self._lock:
            obj = self._endpoint(name)
            if not who.is_admin and obj["creator"] != who.name:
                raise PermissionDenied(f"User {who.name} may not delete vector search endpoint {name}")
            used = sorted(i for i, m in self.indexes.items() if m["endpoint_name"] == name and self._alive(i))
            if used:
                raise InvalidState(f"Vector search endpoint {name} still serves indexes: {', '.join(used)}")
            del self.endpoints[name]
            self._store.delete("vs_endpoint", name)

    # ------------------------------------------------------------------ indexes: metadata and privileges
    def _alive(self, name: str) -> bool:
        """An index lives while its Unity Catalog entry does (dropping its schema or catalog drops it)."""
        if name in self.uc.tables:
            return True
        if name in self.indexes:
            self._forget(name)
        return False

    def _forget(self, name: str) -> None:
        self.indexes.pop(name, None)
        self._store.delete("vs_index", name)
        vectors = self._vectors.pop(name, None)
        if vectors is not None:
            vectors.close()

    def _index(self, name: str) -> dict[str, Any]:
        split_name(name, 3, "index")
        meta = self.indexes.get(name)
        if meta is None or not self._alive(name):
            raise ResourceDoesNotExist(f"Vector index {name} does not exist.")
        return meta

    def _require(self, who: Principal, name: str, privilege: str) -> None:
        self.uc.authorize(who, "TABLE", name, privilege)

    def _require_any(self, who: Principal, name: str) -> None:
        self.uc.authorize(who, "TABLE", name)
        if not any(self.uc.holds(who, "TABLE", name, p) for p in ("SELECT", "MODIFY", "BROWSE", "MANAGE")):
            raise PermissionDenied(f"User {who.name} does not have SELECT on Table '{name}'.")

    def _vectors_of(self, meta: dict[str, Any]) -> Vectors:
        found = self._vectors.get(meta["name"])
        if found is None:
            found = self._vectors[meta["name"]] = Vectors(self.data_dir / f"{meta['id']}.duckdb")
        return found

    def view(self, meta: dict[str, Any]) -> dict[str, Any]:
        state = meta["state"]
        ready = state.startswith("ONLINE")
        message = f"{state}: {meta.get('message') or ''}".rstrip(": ")
        status = {
            "ready": ready,
            "indexed_row_count": meta.get("indexed_row_count", 0),
            "message": message,
            "detailed_state": state,
            "index_url": f"{self.public_url()}/api/2.0/vector-search/indexes/{meta['name']}",
        }
        out = {k: meta[k] for k in ("name", "endpoint_name", "primary_key", "index_type", "creator")}
        out["index_subtype"] = meta.get("index_subtype") or "VECTOR"
        if meta["index_type"] == "DELTA_SYNC":
            out["delta_sync_index_spec"] = meta["spec"] | {"pipeline_id": meta["id"]}
        else:
            out["direct_access_index_spec"] = meta["spec"]
        endpoint = self.endpoints.get(meta["endpoint_name"])
        if endpoint is not None:
            out["endpoint_id"] = endpoint["id"]
        return out | {"status": status}

    def mini(self, meta: dict[str, Any]) -> dict[str, Any]:
        return {k: meta[k] for k in ("name", "endpoint_name", "primary_key", "index_type", "creator")}

    # ------------------------------------------------------------------ create
    def create_index(self, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body.get("name") or "")
        catalog, schema, short = split_name(name, 3, "index")
        check_name(short, "index")
        primary_key = str(body.get("primary_key") or "")
        if not primary_key:
            raise InvalidParameterValue("Missing required field: primary_key")
        index_type = str(body.get("index_type") or "")
        if index_type not in ("DELTA_SYNC", "DIRECT_ACCESS"):
            raise InvalidParameterValue(f"index_type must be DELTA_SYNC or DIRECT_ACCESS, got {index_type!r}")
        if body.get("index_subtype") not in (None, "VECTOR", "HYBRID"):
            raise InvalidParameterValue(f"index_subtype {body['index_subtype']} is not emulated locally (ANN only)")
        with self._lock:
            endpoint = self._endpoint(str(body.get("endpoint_name") or ""))
            if f"{catalog}.{schema}" not in self.uc.schemas:
                raise ResourceDoesNotExist(f"Schema '{catalog}.{schema}' does not exist.")
            self.uc.authorize(who, "SCHEMA", f"{catalog}.{schema}", "CREATE_TABLE")
            self.uc._sync_tables(catalog)
            if (name in self.indexes and self._alive(name)) or name in self.uc.tables:
                raise ResourceAlreadyExists(f"Table or index {name} already exists")
        if index_type == "DELTA_SYNC":
            spec, columns, dimension = self._delta_spec(who, body.get("delta_sync_index_spec"), primary_key)
        else:
            spec, columns, dimension = self._direct_spec(body.get("direct_access_index_spec"), primary_key)
        with self._lock:
            meta = {
                "name": name,
                "id": str(uuid.uuid4()),
                "endpoint_name": endpoint["name"],
                "primary_key": primary_key,
                "index_type": index_type,
                "index_subtype": body.get("index_subtype"),
                "creator": who.name,
                "spec": spec,
                "columns": columns,
                "dimension": dimension,
                "state": "PROVISIONING_INITIAL_SNAPSHOT" if index_type == "DELTA_SYNC" else "ONLINE_NO_PENDING_UPDATE",
                "message": "",
                "indexed_row_count": 0,
                "created_at": now_ms(),
            }
            self.uc.register_table(who, name, "VECTOR_INDEX", {"comment": f"Vector index on {endpoint['name']}"})
            self.indexes[name] = meta
            self._store.put("vs_index", name, meta)
            if index_type == "DIRECT_ACCESS":
                self._vectors_of(meta).create(primary_key, {c: duck_type(t) for c, t in columns.items()}, dimension)
            else:
                meta["pending"] = True
                self._start_sync(name)
            return self.view(meta)

    def _embedding(self, spec: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        sources = spec.get("embedding_source_columns") or []
        vectors = spec.get("embedding_vector_columns") or []
        if len(sources) + len(vectors) != 1:
            raise InvalidParameterValue(
                "Give exactly one of embedding_source_columns or embedding_vector_columns, with one column"
            )
        if sources:
            source = dict(sources[0])
            if not source.get("name") or not source.get("embedding_model_endpoint_name"):
                raise InvalidParameterValue(
                    "embedding_source_columns needs name and embedding_model_endpoint_name (a serving endpoint)"
                )
            for key in ("embedding_model_endpoint_name", "model_endpoint_name_for_query"):
                if source.get(key):
                    try:
                        self.embedder.check(str(source[key]))
                    except ApiError:
                        raise InvalidParameterValue(
                            f"Embedding model endpoint {source[key]} does not exist (a serving endpoint is needed)"
                        ) from None
            return source, None
        vector = dict(vectors[0])
        dim = vector.get("embedding_dimension")
        if not vector.get("name") or not isinstance(dim, int) or dim < 1:
            raise InvalidParameterValue("embedding_vector_columns needs name and a positive embedding_dimension")
        return None, vector

    def _delta_spec(self, who: Principal, spec: Any, primary_key: str) -> tuple[dict[str, Any], dict[str, str], int]:
        if not isinstance(spec, dict):
            raise InvalidParameterValue("delta_sync_index_spec is required for a DELTA_SYNC index")
        source_table = str(spec.get("source_table") or "")
        split_name(source_table, 3, "source table")
        pipeline = str(spec.get("pipeline_type") or "")
        if pipeline != "TRIGGERED":
            raise InvalidParameterValue(
                f"pipeline_type {pipeline or '(missing)'}: the local workspace runs TRIGGERED pipelines only"
            )
        source, vector = self._embedding(spec)
        found = {c["name"]: c for c in self.uc.get_table(who, source_table)["columns"]}  # 404 / 403 as tables
        self.uc.authorize(who, "TABLE", source_table, "SELECT")
        props = (self.uc.tables.get(source_table) or {}).get("properties") or {}
        if str(props.get(CDF_PROPERTY, "")).lower() != "true":
            raise InvalidParameterValue(
                f"Source table {source_table} does not have Change Data Feed enabled: "
                f"ALTER TABLE {source_table} SET TBLPROPERTIES ({CDF_PROPERTY} = true), or create it with that property"
            )
        wanted = list(spec.get("columns_to_sync") or spec.get("columns_to_index") or found)
        special = [primary_key] + [c["name"] for c in (source, vector) if c]
        for column in [*wanted, *special]:
            if column not in found:
                raise InvalidParameterValue(f"Column {column} is not a column of {source_table}: {sorted(found)}")
        vector_name = vector["name"] if vector else None
        columns = {
            c: found[c]["type_name"] for c in dict.fromkeys([primary_key, *wanted, *special]) if c != vector_name
        }
        dimension = int(vector["embedding_dimension"]) if vector else 0
        kept: dict[str, Any] = {"source_table": source_table, "pipeline_type": pipeline}
        kept |= {"embedding_source_columns": [source]} if source else {"embedding_vector_columns": [vector]}
        if spec.get("columns_to_sync") or spec.get("columns_to_index"):
            kept["columns_to_sync"] = wanted
        return kept, columns, dimension

    def _direct_spec(self, spec: Any, primary_key: str) -> tuple[dict[str, Any], dict[str, str], int]:
        if not isinstance(spec, dict):
            raise InvalidParameterValue("direct_access_index_spec is required for a DIRECT_ACCESS index")
        try:
            schema = json.loads(str(spec.get("schema_json") or ""))
        except ValueError:
            raise InvalidParameterValue("direct_access_index_spec.schema_json must be a JSON object") from None
        if not isinstance(schema, dict) or primary_key not in schema:
            raise InvalidParameterValue(f"schema_json must be an object of column -> type naming {primary_key!r}")
        source, vector = self._embedding(spec)
        columns: dict[str, str] = {}
        for column, kind in schema.items():
            text = str(kind).lower().replace(" ", "")
            if vector and column == vector["name"]:
                if text not in ("array<float>", "array<double>"):
                    raise InvalidParameterValue(f"Vector column {column} must be array<float> or array<double>")
                continue
            if text not in DIRECT_TYPES:
                raise InvalidParameterValue(f"Unsupported type {kind!r} of {column}: one of {sorted(DIRECT_TYPES)}")
            columns[column] = DIRECT_TYPES[text]
        if vector and vector["name"] not in schema:
            raise InvalidParameterValue(f"Vector column {vector['name']} is not in schema_json")
        if source and source["name"] not in columns:
            raise InvalidParameterValue(f"Embedding source column {source['name']} is not in schema_json")
        dimension = int(vector["embedding_dimension"]) if vector else 0
        kept: dict[str, Any] = {"schema_json": spec["schema_json"]}
        kept |= {"embedding_source_columns": [source]} if source else {"embedding_vector_columns": [vector]}
        if source:  # the dimension is the embedding endpoint's: learn it from one embedding
            dimension = len(self.embedder.embed(source["embedding_model_endpoint_name"], ["dimension probe"])[0])
        return kept, columns, dimension

    # ------------------------------------------------------------------ read, list, delete
    def get_index(self, who: Principal, name: str) -> dict[str, Any]:
        with self._lock:
            meta = self._index(name)
            self._require_any(who, name)
            return self.view(meta)

    def list_indexes(self, who: Principal, endpoint_name: str) -> list[dict[str, Any]]:
        with self._lock:
            self._endpoint(endpoint_name)
            out = []
            for name, meta in sorted(self.indexes.items()):
                if meta["endpoint_name"] == endpoint_name and self._alive(name) and self.uc.can_see(who, "TABLE", name):
                    out.append(self.mini(meta))
            return out

    def delete_index(self, who: Principal, name: str) -> None:
        with self._lock:
            self._index(name)
            self.uc._require_manage(who, "TABLE", name)
            self.uc.forget_table(name)
            self._forget(name)

    # ------------------------------------------------------------------ Delta Sync
    def sync(self, who: Principal, name: str) -> None:
        with self._lock:
            meta = self._index(name)
            self._require(who, name, "MODIFY")
            if meta["index_type"] != "DELTA_SYNC":
                raise InvalidParameterValue(f"Index {name} is a Direct Access index: sync is for Delta Sync indexes")
            meta["pending"] = True
            if meta["state"] != "PROVISIONING_INITIAL_SNAPSHOT":
                meta["state"] = "ONLINE_TRIGGERED_UPDATE"
            self._store.put("vs_index", name, meta)
            self._start_sync(name)

    def _start_sync(self, name: str) -> None:
        with self._lock:
            running = self._syncing.get(name)
            if running is not None and running.is_alive():
                return  # it sees `pending` and runs once more
            thread = threading.Thread(target=self._sync_loop, args=(name,), name=f"vs-sync-{name}", daemon=True)
            self._syncing[name] = thread
            thread.start()

    def _sync_loop(self, name: str) -> None:
        while not self._closed:
            with self._lock:
                meta = self.indexes.get(name)
                if meta is None or not meta.get("pending"):
                    self._syncing.pop(name, None)
                    return
                meta["pending"] = False
            started = time.monotonic()
            try:
                count = self._sync_once(meta)
            except Exception as err:  # the source, its grants or the embedding endpoint failed: the index says so
                log.warning("vector index %s sync failed: %s", name, err)
                with self._lock:
                    initial = meta["state"] == "PROVISIONING_INITIAL_SNAPSHOT"
                    meta["state"] = "FAILED" if initial else "ONLINE_PIPELINE_FAILED"
                    meta["message"] = f"Sync failed: {getattr(err, 'message', None) or err}"[:2000]
                    self._store.put("vs_index", name, meta)
                continue
            with self._lock:
                meta["indexed_row_count"] = count
                meta["last_sync_ms"] = now_ms()
                meta["message"] = f"{count} rows indexed, last sync took {time.monotonic() - started:.2f} s"
                meta["state"] = "ONLINE_TRIGGERED_UPDATE" if meta.get("pending") else "ONLINE_NO_PENDING_UPDATE"
                self._store.put("vs_index", name, meta)

    def _owner(self, meta: dict[str, Any]) -> Principal:
        owner = (self.uc.tables.get(meta["name"]) or {}).get("owner") or meta["creator"]
        found = self.identity.principal_by_name(owner)
        if found is None:
            raise PermissionDenied(f"The owner {owner} of index {meta['name']} no longer exists")
        return found

    def _sync_once(self, meta: dict[str, Any]) -> int:
        spec, pk, columns = meta["spec"], meta["primary_key"], meta["columns"]
        source = (spec.get("embedding_source_columns") or [None])[0]
        vector = (spec.get("embedding_vector_columns") or [None])[0]
        wanted = list(columns) + ([vector["name"]] if vector else [])
        select = ", ".join(f"`{c}`" for c in wanted)
        result = self.sql.run(self._owner(meta), f"SELECT {select} FROM {spec['source_table']}")  # as the owner  # noqa: S608
        names = [c[0] for c in result.columns]
        rows = [dict(zip(names, r, strict=True)) for r in result.rows]
        vectors = self._vectors_of(meta)
        dimension = meta["dimension"]
        if source and not dimension:
            probe = self.embedder.embed(source["embedding_model_endpoint_name"], ["dimension probe"])
            dimension = meta["dimension"] = len(probe[0])
        if not vectors.exists():
            vectors.create(pk, {c: duck_type(t) for c, t in columns.items()}, dimension)
        stored = vectors.hashes()
        seen: set[str] = set()
        changed: list[dict[str, Any]] = []
        for row in rows:
            key = row.get(pk)
            if key is None or str(key) in seen:
                continue  # a null or repeated key is not indexed (Databricks requires a unique primary key)
            seen.add(str(key))
            row_hash = _digest([row.get(c) for c in wanted])
            text_hash = _digest(row.get(source["name"]) if source else row.get(vector["name"]))
            if stored.get(str(key), ("", ""))[0] != row_hash:
                changed.append(row | {"_row_hash": row_hash, "_text_hash": text_hash})
        reuse = vectors.vectors_of(
            str(r[pk]) for r in changed if stored.get(str(r[pk]), ("", ""))[1] == r["_text_hash"]
        )
        to_embed = [r for r in changed if str(r[pk]) not in reuse]
        if source:
            texts = [str(r.get(source["name"]) or "") for r in to_embed]
            for r, v in zip(to_embed, self.embedder.embed(source["embedding_model_endpoint_name"], texts), strict=True):
                r["_vec"] = v
        else:
            for r in to_embed:
                r["_vec"] = self._vector_value(r.get(vector["name"]), dimension, str(r[pk]))
        for r in changed:
            r.setdefault("_vec", reuse.get(str(r[pk])))
            if vector:
                r.pop(vector["name"], None)
        replaced = [str(r[pk]) for r in changed if str(r[pk]) in stored]
        vectors.write(changed, delete=[k for k in stored if k not in seen] + replaced)
        return vectors.count()

    @staticmethod
    def _vector_value(value: Any, dimension: int, key: str) -> list[float]:
        parsed = json.loads(value) if isinstance(value, str) else value
        if not isinstance(parsed, list) or len(parsed) != dimension:
            raise InvalidParameterValue(f"Row {key}: the vector must be a list of {dimension} numbers")
        return [float(x) for x in parsed]

    # ------------------------------------------------------------------ Direct Access
    def upsert(self, who: Principal, name: str, inputs_json: str) -> dict[str, Any]:
        with self._lock:
            meta = self._index(name)
            self._require(who, name, "MODIFY")
        if meta["index_type"] != "DIRECT_ACCESS":
            raise InvalidParameterValue(f"Index {name} is a Delta Sync index: upsert-data is for Direct Access indexes")
        try:
            given = json.loads(inputs_json)
        except (TypeError, ValueError):
            raise InvalidParameterValue("inputs_json must be a JSON list of row objects") from None
        if not isinstance(given, list):
            raise InvalidParameterValue("inputs_json must be a JSON list of row objects")
        spec, pk, columns = meta["spec"], meta["primary_key"], meta["columns"]
        source = (spec.get("embedding_source_columns") or [None])[0]
        vector = (spec.get("embedding_vector_columns") or [None])[0]
        good, failed = [], []
        for row in given:
            key = row.get(pk) if isinstance(row, dict) else None
            try:
                if key is None or any(c not in columns and (not vector or c != vector["name"]) for c in row):
                    raise InvalidParameterValue("missing primary key or unknown column")
                clean = {c: row.get(c) for c in columns}
                clean["_vec"] = None if source else self._vector_value(row.get(vector["name"]), meta["dimension"], key)
                clean["_row_hash"] = _digest(row)
                clean["_text_hash"] = _digest(row.get(source["name"]) if source else None)
                good.append(clean)
            except (InvalidParameterValue, TypeError, ValueError):
                failed.append(str(key))
        good = list({str(r[pk]): r for r in good}.values())  # a key given twice: the last row wins
        if source and good:
            texts = [str(r.get(source["name"]) or "") for r in good]
            for r, v in zip(good, self.embedder.embed(source["embedding_model_endpoint_name"], texts), strict=True):
                r["_vec"] = v
        vectors = self._vectors_of(meta)
        present = vectors.hashes()
        vectors.write(good, delete=[str(r[pk]) for r in good if str(r[pk]) in present])
        with self._lock:
            meta["indexed_row_count"] = vectors.count()
            self._store.put("vs_index", name, meta)
        return _outcome(len(good), failed)

    def delete_data(self, who: Principal, name: str, primary_keys: list[str]) -> dict[str, Any]:
        with self._lock:
            meta = self._index(name)
            self._require(who, name, "MODIFY")
        if meta["index_type"] != "DIRECT_ACCESS":
            raise InvalidParameterValue(f"Index {name} is a Delta Sync index: delete-data is for Direct Access indexes")
        if not primary_keys:
            raise InvalidParameterValue("Missing required field: primary_keys")
        vectors = self._vectors_of(meta)
        present = set(vectors.hashes())
        vectors.write([], delete=[k for k in primary_keys if k in present])
        with self._lock:
            meta["indexed_row_count"] = vectors.count()
            self._store.put("vs_index", name, meta)
        return _outcome(len(primary_keys), [])

    # ------------------------------------------------------------------ query
    def query(self, who: Principal, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            meta = self._index(name)
            self._require(who, name, "SELECT")
            if not meta["state"].startswith("ONLINE"):
                raise InvalidState(f"Index {name} is not ready: {meta['state']} {meta.get('message') or ''}".strip())
        columns = body.get("columns")
        if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
            raise InvalidParameterValue("columns is required: the index columns to return")
        unknown = [c for c in columns if c not in meta["columns"]]
        if unknown:
            raise InvalidParameterValue(f"Requested columns {unknown} are not in the index: {sorted(meta['columns'])}")
        if body.get("query_type") not in (None, "ANN"):
            raise InvalidParameterValue(f"query_type {body['query_type']} is not emulated locally: use ANN")
        for unsupported in ("reranker", "facets", "sort_columns"):
            if body.get(unsupported):
                raise InvalidParameterValue(f"{unsupported} is not emulated by the local workspace")
        limit = body.get("num_results", 10)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_RESULTS:
            raise InvalidParameterValue(f"num_results must be an integer from 1 to {MAX_RESULTS}, got {limit!r}")
        vector = self._query_vector(meta, body)
        where, params = filters.parse(body.get("filters_json"), set(meta["columns"]))
        threshold = body.get("score_threshold")
        rows = self._vectors_of(meta).search(
            vector, columns, limit, where, params, float(threshold) if threshold is not None else None
        )
        manifest_columns = [{"name": c} for c in columns] + [{"name": "score"}]
        return {
            "manifest": {"column_count": len(manifest_columns), "columns": manifest_columns},
            "result": {"row_count": len(rows), "data_array": rows},
        }

    def _query_vector(self, meta: dict[str, Any], body: dict[str, Any]) -> list[float]:
        text, vector = body.get("query_text"), body.get("query_vector")
        if (text is None) == (vector is None):
            raise InvalidParameterValue("Give exactly one of query_text or query_vector")
        if vector is not None:
            if not isinstance(vector, list) or len(vector) != meta["dimension"]:
                raise InvalidParameterValue(f"query_vector must be a list of {meta['dimension']} numbers")
            return [float(x) for x in vector]
        source = (meta["spec"].get("embedding_source_columns") or [None])[0]
        if source is None:
            raise InvalidParameterValue(
                "query_text needs an index with embedding_source_columns; this index takes query_vector"
            )
        endpoint = source.get("model_endpoint_name_for_query") or source["embedding_model_endpoint_name"]
        return self.embedder.embed(str(endpoint), [str(text)])[0]


def _outcome(succeeded: int, failed: list[str]) -> dict[str, Any]:
    status = "SUCCESS" if not failed else ("PARTIAL_SUCCESS" if succeeded else "FAILURE")
    result: dict[str, Any] = {"success_row_count": succeeded}
    if failed:
        result["failed_primary_keys"] = failed
    return {"status": status, "result": result}
