"""Serving endpoints without HTTP: configs, the update state machine, traffic routing, scale to zero.

An endpoint's `config` is what serves; an update (create, or `PUT .../config`) is a `pending_config` whose
served entities start in their own worker processes while the old config keeps serving. The update completes
once every new worker has loaded its model and the transition time has passed (real, short, configurable):
then the pending config becomes the config at once, and old workers retire after their in-flight requests.
A failed update (a version that failed to register or load) leaves the old config serving, UPDATE_FAILED.

A supervisor thread ticks every 50 ms: it moves updates along, scales idle entities with
`scale_to_zero_enabled` to zero, retires drained workers, and cuts billing at hour boundaries.

Locking: one serving lock guards endpoint state (never held while waiting on a worker); serving reads the
registry (its own lock) and writes billing (its own lock), neither of which calls back into serving.
"""

from __future__ import annotations

import base64
import copy
import logging
import os
import re
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apev_workspace.core.exceptions import ApiError
from apev_workspace.core.store import Store
from apev_workspace.identity.models import Principal
from apev_workspace.serving.config import NAME, clean_tags, spec_key, validate_config
from apev_workspace.serving.exceptions import (
    BadRequest,
    EndpointNotFound,
    InvalidParameterValue,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceConflict,
)
from apev_workspace.serving.replica import Replica, now_ms

if TYPE_CHECKING:
    from apev_workspace.billing.models import Billing
    from apev_workspace.identity.models import Identity
    from apev_workspace.registry.models import Registry
    from apev_workspace.secrets.models import Secrets

_SECRET_REF = re.compile(r"^\{\{secrets/([^/}]+)/([^/}]+)\}\}$")
KIND = "serving_endpoint"
log = logging.getLogger("apev_workspace.serving")
LATENCY_KEEP = 100_000  # latency samples kept per endpoint


class Runtime:
    """What runs behind one endpoint (not persisted): live and pending replicas, the router's state."""

    def __init__(self) -> None:
        self.live: dict[str, Replica] = {}
        self.pending: dict[str, Replica] = {}
        self.pending_since = 0.0
        self.weights: dict[str, int] = {}
        self.current: dict[str, int] = {}
        self.latencies: deque[tuple[int, float, str]] = deque(maxlen=LATENCY_KEEP)

    def route(self, routes: list[dict[str, Any]]) -> None:
        self.weights = {r["served_entity_name"]: int(r["traffic_percentage"]) for r in routes}
        self.current = dict.fromkeys(self.weights, 0)

    def pick(self) -> str:
        """Smooth weighted round-robin: every 100 requests follow the split exactly, interleaved."""
        total = sum(self.weights.values())
        for name, weight in self.weights.items():
            self.current[name] += weight
        best = max(self.current, key=lambda n: self.current[n])
        self.current[best] -= total
        return best


class Serving:
    def __init__(
        self,
        store: Store,
        *,
        registry: Registry,
        billing: Billing,
        secrets: Secrets,
        identity: Identity,
        data_dir: Path,
        transition_seconds: float = 2.0,
        idle_seconds: float = 1800.0,
        cold_start_seconds: float = 0.5,
    ) -> None:
        self._store = store
        self._lock = threading.RLock()
        self.registry = registry
        self.billing = billing
        self.secrets = secrets
        self.identity = identity
        self.dir = data_dir
        # Timing knobs (tests shorten them): how long an update takes at least, how long an entity with
        # scale_to_zero_enabled stays up without requests, and the extra start time a cold start pays.
        self.transition_seconds = transition_seconds
        self.idle_seconds = idle_seconds
        self.cold_start_seconds = cold_start_seconds
        self.endpoints: dict[str, dict[str, Any]] = store.load(KIND)
        self.runtime: dict[str, Runtime] = {name: Runtime() for name in self.endpoints}
        self.retiring: list[Replica] = []
        self._replicas: dict[int, Replica] = {}  # every replica made, for billing flushes
        self._replicas_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hour = now_ms() // 3_600_000
        billing.flushers.append(self.flush_usage)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """After a restart, serving configs come back up (cold) and interrupted updates start again."""
        with self._lock:
            for name, endpoint in self.endpoints.items():
                rt = self.runtime[name]
                if endpoint.get("config"):
                    try:
                        rt.live = {e["name"]: self._replica(endpoint, e) for e in endpoint["config"]["served_entities"]}
                    except ApiError as err:  # its model version is gone: the endpoint cannot serve
                        log.warning("serving endpoint %s cannot start: %s", name, err.message)
                        continue
                    rt.route(endpoint["config"]["traffic_config"]["routes"])
                    for entity in endpoint["config"]["served_entities"]:
                        if not entity.get("scale_to_zero_enabled"):
                            rt.live[entity["name"]].start(self.cold_start_seconds)
                if endpoint.get("pending_config") and endpoint["state"]["config_update"] == "IN_PROGRESS":
                    rt.pending_since = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="apev-serving", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            replicas = [
                *self.retiring,
                *(r for rt in self.runtime.values() for r in [*rt.live.values(), *rt.pending.values()]),
            ]
        for replica in replicas:
            replica.stop()

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.tick()
            except Exception:  # keep serving; a failing tick is a bug to see in the log
                log.exception("serving tick failed")

    # ------------------------------------------------------------------ helpers
    def _endpoint(self, name: str) -> dict[str, Any]:
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise EndpointNotFound(f"Endpoint with name '{name}' does not exist.")
        return endpoint

    def _save(self, endpoint: dict[str, Any]) -> None:
        endpoint["last_updated_timestamp"] = now_ms()
        self._store.put(KIND, endpoint["name"], endpoint)

    @staticmethod
    def _require_manage(endpoint: dict[str, Any], who: Principal) -> None:
        if not (who.is_admin or endpoint["creator"] == who.name):
            raise PermissionDenied(f"{who.name} does not have CAN_MANAGE permission on endpoint '{endpoint['name']}'")

    def _env(self, endpoint: dict[str, Any], entity: dict[str, Any]) -> dict[str, str]:
        """The worker's environment: this venv, none of the server's DATABRICKS_*, the entity's variables with
        `{{secrets/scope/key}}` references resolved as the endpoint's creator."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")}
        env["PYTHONUNBUFFERED"] = "1"
        for key, value in (entity.get("environment_vars") or {}).items():
            match = _SECRET_REF.match(str(value))
            if match:
                creator = self._creator(endpoint)
                value = base64.b64decode(self.secrets.get(match.group(1), match.group(2), creator)).decode()
            env[str(key)] = str(value)
        return env

    def _creator(self, endpoint: dict[str, Any]) -> Principal:
        creator = endpoint["creator"]
        if self.identity.user_by_name(creator) is not None:
            return self.identity.find_principal(user_name=creator)
        return self.identity.find_principal(service_principal_name=creator)

    def _replica(self, endpoint: dict[str, Any], entity: dict[str, Any]) -> Replica:
        version = self.registry.get_version(entity["entity_name"], entity["entity_version"])
        replica = Replica(
            spec_key=spec_key(entity),
            entity_name=entity["name"],
            workload_size=entity["workload_size"],
            model_file=self.registry.model_file(version),
            env=self._env(endpoint, entity),
            log_path=self.dir / endpoint["id"] / f"{entity['name']}.log",
            on_scaled_down=lambda r, start, end: self._bill(endpoint["name"], r, start, end),
        )
        with self._replicas_lock:
            self._replicas[id(replica)] = replica
        return replica

    def _bill(self, name: str, replica: Replica, start_ms: int, end_ms: int) -> None:
        endpoint = self.endpoints.get(name)
        if endpoint is not None and end_ms > start_ms:
            self.billing.record_serving(endpoint, replica.entity_name, replica.workload_size, start_ms, end_ms)

    # ------------------------------------------------------------------ endpoint API
    def create(self, body: dict[str, Any], who: Principal) -> dict[str, Any]:
        name = body.get("name") or ""
        if not NAME.match(name):
            raise InvalidParameterValue(
                f"Invalid endpoint name {name!r}: up to 63 letters, digits, dashes and underscores"
            )
        if not body.get("config"):
            raise InvalidParameterValue("config is required: the local workspace serves registered models only")
        config = validate_config(body["config"], who, self.registry)
        tags = clean_tags(body.get("tags") or [])
        with self._lock:
            if name in self.endpoints:
                raise ResourceAlreadyExists(f"Endpoint with name '{name}' already exists.")
            now = now_ms()
            endpoint = {
                "name": name,
                "id": uuid.uuid4().hex,
                "creator": who.name,
                "creation_timestamp": now,
                "last_updated_timestamp": now,
                "description": body.get("description"),
                "tags": tags,
                "route_optimized": bool(body.get("route_optimized", False)),
                "config": None,
                "pending_config": {**config, "config_version": 1, "start_time": now},
                "state": {"ready": "NOT_READY", "config_update": "IN_PROGRESS"},
            }
            self.endpoints[name] = endpoint
            self.runtime[name] = Runtime()
            self.runtime[name].pending_since = time.monotonic()
            self._save(endpoint)
            return endpoint

    def update_config(self, name: str, body: dict[str, Any], who: Principal) -> dict[str, Any]:
        with self._lock:
            endpoint = self._endpoint(name)
            self._require_manage(endpoint, who)
            if endpoint["state"]["config_update"] == "IN_PROGRESS":
                raise ResourceConflict(f"Endpoint '{name}' is currently being updated; wait until the update finishes.")
        config = validate_config(body, who, self.registry)
        with self._lock:
            endpoint = self._endpoint(name)
            if endpoint["state"]["config_update"] == "IN_PROGRESS":
                raise ResourceConflict(f"Endpoint '{name}' is currently being updated.")
            previous = max(
                (endpoint.get("config") or {}).get("config_version", 0),
                (endpoint.get("pending_config") or {}).get("config_version", 0),
            )
            endpoint["pending_config"] = {**config, "config_version": previous + 1, "start_time": now_ms()}
            endpoint["state"]["config_update"] = "IN_PROGRESS"
            rt = self.runtime[name]
            for replica in rt.pending.values():
                if replica not in rt.live.values():
                    self._retire(replica)
            rt.pending = {}
            rt.pending_since = time.monotonic()
            self._save(endpoint)
            return endpoint

    def get(self, name: str) -> dict[str, Any]:
        """A copy taken under the lock: the ticker thread changes the live record (a failed update sets the
        entity's state, then the endpoint's), and a response serialised from the live one could show half of it."""
        with self._lock:
            return copy.deepcopy(self._endpoint(name))

    def list_endpoints(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(e) for e in sorted(self.endpoints.values(), key=lambda e: e["name"])]

    def delete(self, name: str, who: Principal) -> None:
        with self._lock:
            endpoint = self._endpoint(name)
            self._require_manage(endpoint, who)
            rt = self.runtime.pop(name)
            replicas = {id(r): r for r in [*rt.live.values(), *rt.pending.values()]}
        for replica in replicas.values():
            replica.stop()  # bills the time up while the endpoint still exists
            self._forget(replica)
        with self._lock:
            self.endpoints.pop(name, None)
            self._store.delete(KIND, name)

    def patch_tags(
        self, name: str, add: list[dict[str, Any]], remove: list[str], who: Principal
    ) -> list[dict[str, Any]]:
        with self._lock:
            endpoint = self._endpoint(name)
            self._require_manage(endpoint, who)
            tags = {t["key"]: t for t in endpoint.get("tags") or []}
            for key in remove:
                tags.pop(key, None)
            for tag in clean_tags(add):
                tags[tag["key"]] = tag
            endpoint["tags"] = list(tags.values())
            self._save(endpoint)
            return list(endpoint["tags"])

    def logs(self, name: str, entity_name: str) -> str:
        with self._lock:
            rt = self.runtime.get(name)
            self._endpoint(name)
            replica = (rt.live.get(entity_name) or rt.pending.get(entity_name)) if rt else None
        if replica is None:
            raise EndpointNotFound(f"Served entity '{entity_name}' does not exist on endpoint '{name}'.")
        return replica.logs()

    # ------------------------------------------------------------------ the update state machine
    def tick(self) -> None:
        with self._lock:
            for name, endpoint in list(self.endpoints.items()):
                rt = self.runtime.get(name)
                if rt is None:
                    continue
                if endpoint["state"]["config_update"] == "IN_PROGRESS":
                    self._advance(endpoint, rt)
                for replica in rt.live.values():
                    if self._idle(endpoint, replica):
                        replica.stop()  # under the lock: no request can pick it between the check and the stop
            retired = [r for r in self.retiring if r.inflight == 0]
            self.retiring = [r for r in self.retiring if r.inflight > 0]
            hour = now_ms() // 3_600_000
            crossed, self._hour = hour != self._hour, hour
        for replica in retired:
            replica.stop()
            self._forget(replica)
        if crossed:
            self.flush_usage()

    def _advance(self, endpoint: dict[str, Any], rt: Runtime) -> None:
        pending = endpoint["pending_config"]
        failure = None
        for entity in pending["served_entities"]:
            replica = rt.pending.get(entity["name"])
            if replica is None:
                try:
                    version = self.registry.get_version(entity["entity_name"], entity["entity_version"])
                except ApiError as err:
                    failure = (entity, err.message)
                    break
                if version["status"] == "PENDING_REGISTRATION":
                    continue  # wait for the version to load
                if version["status"] != "READY":
                    failure = (
                        entity,
                        f"Model version {entity['entity_version']} of {entity['entity_name']} "
                        f"is {version['status']}: {version.get('status_message') or ''}".rstrip(": "),
                    )
                    break
                reuse = rt.live.get(entity["name"])
                if reuse is not None and reuse.spec_key == spec_key(entity):
                    replica = reuse
                else:
                    try:
                        replica = self._replica(endpoint, entity)
                    except ApiError as err:
                        failure = (entity, err.message)
                        break
                rt.pending[entity["name"]] = replica
                replica.start(self.cold_start_seconds)
            if replica.state == "failed":
                failure = (entity, f"The served entity failed to load: {replica.error}")
                break
            if replica.state == "stopped" and replica is rt.live.get(entity["name"]):
                continue  # a reused entity scaled to zero stays valid
            if replica.state != "ready":
                continue
        if failure is not None:
            self._fail_update(endpoint, rt, *failure)
            return
        ready = all(
            (r := rt.pending.get(e["name"])) is not None
            and (r.state == "ready" or (r.state == "stopped" and r is rt.live.get(e["name"])))
            for e in pending["served_entities"]
        )
        if ready and time.monotonic() - rt.pending_since >= self.transition_seconds:
            self._complete_update(endpoint, rt)

    def _complete_update(self, endpoint: dict[str, Any], rt: Runtime) -> None:
        config = {k: v for k, v in endpoint.pop("pending_config").items() if k != "start_time"}
        for entity in config["served_entities"]:
            entity["state"] = {"deployment": "DEPLOYMENT_READY", "deployment_state_message": ""}
        keep = {id(r) for r in rt.pending.values()}
        for replica in rt.live.values():
            if id(replica) not in keep:
                self._retire(replica)
        rt.live, rt.pending = rt.pending, {}
        rt.route(config["traffic_config"]["routes"])
        endpoint["config"] = config
        endpoint["pending_config"] = None
        endpoint["state"] = {"ready": "READY", "config_update": "NOT_UPDATING"}
        self._save(endpoint)

    def _fail_update(self, endpoint: dict[str, Any], rt: Runtime, entity: dict[str, Any], message: str) -> None:
        entity["state"] = {"deployment": "DEPLOYMENT_FAILED", "deployment_state_message": message}
        live = {id(r) for r in rt.live.values()}
        for replica in rt.pending.values():
            if id(replica) not in live:
                self._retire(replica)
        rt.pending = {}
        endpoint["state"]["config_update"] = "UPDATE_FAILED"
        # The old config keeps serving; the failed one stays visible as `pending_config`, its entity's
        # deployment state carrying the reason (what a client reports), until the next update replaces it.
        self._save(endpoint)

    def _retire(self, replica: Replica) -> None:
        replica.retiring = True
        self.retiring.append(replica)

    def _idle(self, endpoint: dict[str, Any], replica: Replica) -> bool:
        """An entity with scale_to_zero_enabled, up, and without requests for the idle period."""
        entity = next((e for e in endpoint["config"]["served_entities"] if e["name"] == replica.entity_name), None)
        return (
            entity is not None
            and bool(entity.get("scale_to_zero_enabled"))
            and replica.state == "ready"
            and replica.inflight == 0
            and time.monotonic() - replica.last_used >= self.idle_seconds
        )

    def flush_usage(self) -> None:
        """Bill the time every running worker has been up so far. Takes only the replica-set lock, so the
        SQL engine may read billing while holding the workspace lock."""
        with self._replicas_lock:
            replicas = list(self._replicas.values())
        for replica in replicas:
            replica.flush_usage()

    def _forget(self, replica: Replica) -> None:
        with self._replicas_lock:
            self._replicas.pop(id(replica), None)

    # ------------------------------------------------------------------ invocations
    def invoke(self, name: str, kind: str, payload: Any) -> tuple[str, Any]:
        """Route one request by the traffic split and answer it with the chosen entity's model."""
        started = time.monotonic()
        with self._lock:
            endpoint = self._endpoint(name)
            rt = self.runtime[name]
            if not endpoint.get("config") or not rt.live:
                raise BadRequest(f"Endpoint '{name}' is not ready: its first config is still being deployed.")
            entity_name = rt.pick()
            replica = rt.live[entity_name]
            replica.inflight += 1
            replica.last_used = time.monotonic()
        try:
            if replica.state != "ready":
                replica.start(self.cold_start_seconds)  # scaled to zero (or crashed): the cold start
                replica.wait_ready(timeout=120)
            result = replica.call(kind, payload)
        finally:
            with self._lock:
                replica.inflight -= 1
                replica.last_used = time.monotonic()
                rt.latencies.append((now_ms(), (time.monotonic() - started) * 1000, entity_name))
        return entity_name, result

    def latencies(self, name: str, since_ms: int = 0) -> list[tuple[int, float, str]]:
        """(epoch ms, end-to-end latency ms, served entity) of each invocation, for latency sampling."""
        with self._lock:
            self._endpoint(name)
            return [s for s in self.runtime[name].latencies if s[0] >= since_ms]

    def replica(self, name: str, entity_name: str) -> Replica:
        """The live replica of a served entity (white-box tests and the admin view)."""
        with self._lock:
            return self.runtime[name].live[entity_name]
