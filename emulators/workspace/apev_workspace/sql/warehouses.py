"""SQL warehouses without HTTP. Starting and stopping are immediate (the engine is always there); a statement
sent to a stopped warehouse starts it, as on Databricks. One warehouse is created at the first start (§8)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from apev_workspace.core.store import Store
from apev_workspace.identity.models import USERS, Principal, require_admin
from apev_workspace.permissions.models import WAREHOUSE_LEVELS, ObjectType, Permissions
from apev_workspace.sql.exceptions import InvalidParameterValue, InvalidState, ResourceDoesNotExist

DEFAULT_NAME = "Local Starter Warehouse"
SIZES = ("2X-Small", "X-Small", "Small", "Medium", "Large", "X-Large", "2X-Large", "3X-Large", "4X-Large")
EDITABLE = (
    "name",
    "cluster_size",
    "min_num_clusters",
    "max_num_clusters",
    "auto_stop_mins",
    "tags",
    "channel",
    "enable_photon",
    "enable_serverless_compute",
    "warehouse_type",
    "spot_instance_policy",
)


class Warehouses:
    def __init__(self, store: Store, lock: threading.RLock, public_url: Callable[[], str]) -> None:
        self._store = store
        self._lock = lock
        self._public_url = public_url
        self.items: dict[str, dict[str, Any]] = store.load("sql_warehouse")
        self.permissions: Permissions | None = None

    def bind(self, permissions: Permissions) -> None:
        """Warehouse ACLs (`/api/2.0/permissions/warehouses/{id}`): running a statement needs CAN_USE."""
        self.permissions = permissions
        permissions.register("warehouses", ObjectType(WAREHOUSE_LEVELS, "/sql/warehouses/", self._owner))

    def _owner(self, wid: str) -> str | None:
        item = self.items.get(wid)
        return None if item is None or item["state"] == "DELETED" else str(item["creator_name"])

    def require_use(self, who: Principal, wid: str) -> None:
        """CAN_USE (or more) on the warehouse, as Databricks checks before it runs a statement."""
        self.get(wid)
        if self.permissions is not None:
            self.permissions.require(who, "warehouses", wid, "CAN_USE", "running a statement")

    def ensure_default(self, creator: Principal) -> None:
        """The warehouse made at the workspace's first start (never again, even if it is deleted)."""
        with self._lock:
            if self._store.load("sql_meta").get("default_warehouse"):
                return
            wid = self.create(creator, {"name": DEFAULT_NAME, "cluster_size": "2X-Small", "auto_stop_mins": 0})
            if self.permissions is not None:
                # as Databricks' starter warehouse: every workspace user may use it (a locked-down
                # workspace removes this entry with a PUT of the warehouse's permissions)
                self.permissions.grant("warehouses", wid, "group_name", USERS, "CAN_USE")
            self._store.put("sql_meta", "default_warehouse", wid)

    def _save(self, item: dict[str, Any]) -> None:
        self.items[item["id"]] = item
        self._store.put("sql_warehouse", item["id"], item)

    def create(self, who: Principal, body: dict[str, Any]) -> str:
        require_admin(who)
        if not body.get("name"):
            raise InvalidParameterValue("Missing required field: name")
        size = body.get("cluster_size") or "2X-Small"
        if size not in SIZES:
            raise InvalidParameterValue(f"Invalid cluster_size {size!r}: expected one of {', '.join(SIZES)}")
        with self._lock:
            if any(w["name"] == body["name"] and w["state"] != "DELETED" for w in self.items.values()):
                raise InvalidParameterValue(f"A warehouse named {body['name']} already exists")
            item = {
                "id": secrets.token_hex(8),
                "name": body["name"],
                "cluster_size": size,
                "min_num_clusters": body.get("min_num_clusters") or 1,
                "max_num_clusters": body.get("max_num_clusters") or 1,
                "auto_stop_mins": body.get("auto_stop_mins", 10),
                "creator_name": who.name,
                "enable_photon": body.get("enable_photon", True),
                "enable_serverless_compute": body.get("enable_serverless_compute", True),
                "warehouse_type": body.get("warehouse_type") or "PRO",
                "spot_instance_policy": body.get("spot_instance_policy") or "COST_OPTIMIZED",
                "channel": body.get("channel") or {"name": "CHANNEL_NAME_CURRENT"},
                "tags": body.get("tags") or {},
                "state": "RUNNING",
                "created_at": int(time.time() * 1000),
            }
            self._save(item)
            return str(item["id"])

    def get(self, wid: str) -> dict[str, Any]:
        with self._lock:
            item = self.items.get(wid)
            if item is None or item["state"] == "DELETED":
                raise ResourceDoesNotExist(f"Warehouse {wid} does not exist.")
            return item

    def info(self, item: dict[str, Any]) -> dict[str, Any]:
        url = urlparse(self._public_url())
        port = url.port or (443 if url.scheme == "https" else 80)
        path = f"/sql/1.0/warehouses/{item['id']}"
        out = {k: v for k, v in item.items() if k != "created_at"}
        running = item["state"] == "RUNNING"
        out |= {
            "num_clusters": 1 if running else 0,
            "num_active_sessions": 0,
            "jdbc_url": f"jdbc:databricks://{url.hostname}:{port}/default;transportMode=http;httpPath={path}",
            "odbc_params": {"hostname": url.hostname, "path": path, "protocol": url.scheme, "port": port},
            "health": {"status": "HEALTHY"} if running else {},
        }
        return out

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                self.info(w)
                for w in sorted(self.items.values(), key=lambda w: w["created_at"])
                if w["state"] != "DELETED"
            ]

    def edit(self, who: Principal, wid: str, body: dict[str, Any]) -> None:
        require_admin(who)
        with self._lock:
            item = self.get(wid)
            if body.get("cluster_size") and body["cluster_size"] not in SIZES:
                raise InvalidParameterValue(f"Invalid cluster_size {body['cluster_size']!r}")
            item |= {k: body[k] for k in EDITABLE if body.get(k) is not None}
            self._save(item)

    def set_state(self, who: Principal | None, wid: str, state: str) -> None:
        with self._lock:
            item = self.get(wid)
            item["state"] = state
            self._save(item)

    def delete(self, who: Principal, wid: str) -> None:
        require_admin(who)
        self.set_state(who, wid, "DELETED")

    def ensure_running(self, wid: str) -> dict[str, Any]:
        """The warehouse a statement runs on; a stopped one starts (immediately, locally)."""
        with self._lock:
            item = self.get(wid)
            if item["state"] not in ("RUNNING", "STARTING", "STOPPED", "STOPPING"):
                raise InvalidState(f"Warehouse {wid} is {item['state']}")
            if item["state"] != "RUNNING":
                item["state"] = "RUNNING"
                self._save(item)
            return item
