"""The permissions API (`/api/2.0/permissions/{object type}/{id}`) without HTTP: access control lists of
workspace objects, as Databricks keeps them. Only SQL warehouses are emulated.

Warehouse levels, weakest first: CAN_VIEW < CAN_MONITOR < CAN_USE < CAN_MANAGE < IS_OWNER. The creator is the
owner; workspace admins hold CAN_MANAGE on every warehouse (shown as inherited from `/sql/warehouses/`).
Running a statement needs CAN_USE (checked by the SQL area through `require`). A grant to a group reaches its
members, transitively. PATCH adds or raises entries, PUT replaces the direct ones (the owner stays).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apev_workspace.core.store import Store
from apev_workspace.identity.models import ADMINS, Identity, Principal
from apev_workspace.permissions.exceptions import InvalidParameterValue, PermissionDenied, ResourceDoesNotExist

WAREHOUSE_LEVELS = ("CAN_VIEW", "CAN_MONITOR", "CAN_USE", "CAN_MANAGE", "IS_OWNER")
KEYS = ("user_name", "group_name", "service_principal_name")


@dataclass(frozen=True)
class ObjectType:
    """One kind of object the API answers for: its levels and how to find an object's owner (None: no such
    object)."""

    levels: tuple[str, ...]
    root: str  # the object path prefix, e.g. /sql/warehouses/
    owner_of: Callable[[str], str | None]


class Permissions:
    def __init__(self, store: Store, lock: threading.RLock, identity: Identity) -> None:
        self._store = store
        self._lock = lock
        self._identity = identity
        self._types: dict[str, ObjectType] = {}
        # key "<type>/<id>" -> {"<key kind>:<name>": level}
        self._acls: dict[str, dict[str, str]] = store.load("permissions")

    def register(self, object_type: str, kind: ObjectType) -> None:
        self._types[object_type] = kind

    def _type(self, object_type: str) -> ObjectType:
        kind = self._types.get(object_type)
        if kind is None:
            raise InvalidParameterValue(
                f"Object type {object_type!r} is not supported here; supported: {', '.join(sorted(self._types))}"
            )
        return kind

    def _owner(self, object_type: str, object_id: str) -> str:
        owner = self._type(object_type).owner_of(object_id)
        if owner is None:
            raise ResourceDoesNotExist(f"{object_type} {object_id} does not exist.")
        return owner

    def _save(self, key: str, acl: dict[str, str]) -> None:
        self._acls[key] = acl
        self._store.put("permissions", key, acl)

    # ------------------------------------------------------------------ checks

    def level_of(self, who: Principal, object_type: str, object_id: str) -> str | None:
        """The highest level `who` holds, directly, through a group, as owner or as admin."""
        kind = self._type(object_type)
        with self._lock:
            owner = self._owner(object_type, object_id)
            if owner == who.name:
                return "IS_OWNER"
            if who.is_admin:
                return "CAN_MANAGE"
            acl = self._acls.get(f"{object_type}/{object_id}", {})
            names = who.acl_names
            held = [level for entry, level in acl.items() if entry.split(":", 1)[1] in names]
            return max(held, key=kind.levels.index) if held else None

    def has(self, who: Principal, object_type: str, object_id: str, level: str) -> bool:
        kind = self._type(object_type)
        held = self.level_of(who, object_type, object_id)
        return held is not None and kind.levels.index(held) >= kind.levels.index(level)

    def require(self, who: Principal, object_type: str, object_id: str, level: str, doing: str) -> None:
        if not self.has(who, object_type, object_id, level):
            raise PermissionDenied(
                f"{who.name} does not have {level} permission on {object_type} {object_id} ({doing})"
            )

    def grant(self, object_type: str, object_id: str, key: str, name: str, level: str) -> None:
        """Set one entry without the API's checks (the workspace's own setup, e.g. its starter warehouse)."""
        with self._lock:
            acl = dict(self._acls.get(f"{object_type}/{object_id}", {}))
            acl[f"{key}:{name}"] = level
            self._save(f"{object_type}/{object_id}", acl)

    # ------------------------------------------------------------------ the API

    def get(self, who: Principal, object_type: str, object_id: str) -> dict[str, Any]:
        kind = self._type(object_type)
        with self._lock:
            owner = self._owner(object_type, object_id)
            if not self.has(who, object_type, object_id, "CAN_MANAGE"):
                raise PermissionDenied(f"{who.name} cannot read the permissions of {object_type} {object_id}")
            out: list[dict[str, Any]] = []
            owner_key = "service_principal_name" if self._identity.sp_by_application_id(owner) else "user_name"
            out.append({owner_key: owner, "all_permissions": [{"permission_level": "IS_OWNER", "inherited": False}]})
            for entry, level in sorted(self._acls.get(f"{object_type}/{object_id}", {}).items()):
                key, name = entry.split(":", 1)
                if name == owner:
                    continue
                out.append({key: name, "all_permissions": [{"permission_level": level, "inherited": False}]})
            out.append({
                "group_name": ADMINS,
                "all_permissions": [
                    {"permission_level": "CAN_MANAGE", "inherited": True, "inherited_from_object": [kind.root]}
                ],
            })  # fmt: skip
            return {
                "object_id": f"{kind.root.rstrip('/')}/{object_id}",
                "object_type": object_type.rstrip("s"),
                "access_control_list": out,
            }

    def levels(self, who: Principal, object_type: str, object_id: str) -> dict[str, Any]:
        kind = self._type(object_type)
        self._owner(object_type, object_id)
        return {"permission_levels": [{"permission_level": level, "description": ""} for level in kind.levels]}

    def update(
        self, who: Principal, object_type: str, object_id: str, body: dict[str, Any], *, replace: bool
    ) -> dict[str, Any]:
        kind = self._type(object_type)
        entries = body.get("access_control_list")
        if not isinstance(entries, list):
            raise InvalidParameterValue("Missing required field: access_control_list")
        with self._lock:
            self._owner(object_type, object_id)
            if not self.has(who, object_type, object_id, "CAN_MANAGE"):
                raise PermissionDenied(f"{who.name} cannot change the permissions of {object_type} {object_id}")
            acl = {} if replace else dict(self._acls.get(f"{object_type}/{object_id}", {}))
            for item in entries:
                key, name = self._principal(item)
                level = item.get("permission_level")
                if level not in kind.levels or level == "IS_OWNER":
                    allowed = ", ".join(lv for lv in kind.levels if lv != "IS_OWNER")
                    raise InvalidParameterValue(f"Invalid permission_level {level!r} for {name}: expected {allowed}")
                acl[f"{key}:{name}"] = level
            self._save(f"{object_type}/{object_id}", acl)
        return self.get(who, object_type, object_id)

    def _principal(self, item: Any) -> tuple[str, str]:
        given = [k for k in KEYS if isinstance(item, dict) and item.get(k)]
        if len(given) != 1:
            raise InvalidParameterValue(f"each access control entry needs exactly one of {', '.join(KEYS)}")
        key = given[0]
        name = str(item[key])
        found = {
            "user_name": self._identity.user_by_name,
            "group_name": self._identity.group_by_name,
            "service_principal_name": self._identity.sp_by_application_id,
        }[key](name)
        if found is None:
            # as Databricks: a grant to a principal that does not exist fails
            raise InvalidParameterValue(f"Principal {key}={name} does not exist")
        return key, name
