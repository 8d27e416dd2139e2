"""Secret scopes without HTTP. Values are kept as base64 in the store (the data dir is the emulator's vault).

Permissions: READ < WRITE < MANAGE, granted to user names, service principal application ids or group
names. Workspace admins have MANAGE on every scope; a scope's creator gets MANAGE.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from typing import Any

from apev_workspace.core.store import Store
from apev_workspace.identity.models import Principal
from apev_workspace.secrets.exceptions import (
    InvalidParameterValue,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)

LEVELS = {"READ": 1, "WRITE": 2, "MANAGE": 3}
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class Secrets:
    def __init__(self, store: Store, lock: threading.RLock) -> None:
        self._store = store
        self._lock = lock
        # scope name -> {"name", "backend_type", "acls": {principal: level}, "secrets": {key: {value, ts}}}
        self.scopes: dict[str, dict[str, Any]] = store.load("secret_scope")

    def _save(self, scope: dict[str, Any]) -> None:
        self._store.put("secret_scope", scope["name"], scope)

    def _scope(self, name: str) -> dict[str, Any]:
        scope = self.scopes.get(name)
        if scope is None:
            raise ResourceDoesNotExist(f"Scope {name} does not exist!")
        return scope

    def level(self, scope: dict[str, Any], who: Principal) -> int:
        if who.is_admin:
            return LEVELS["MANAGE"]
        return max((LEVELS[p] for name, p in scope["acls"].items() if name in who.acl_names), default=0)

    def _check(self, scope: dict[str, Any], who: Principal, needed: str) -> None:
        if self.level(scope, who) < LEVELS[needed]:
            raise PermissionDenied(f"User {who.name} does not have {needed} permission on scope {scope['name']}")

    def create_scope(self, name: str, who: Principal, initial_manage_principal: str | None) -> None:
        if not _NAME.match(name or ""):
            raise InvalidParameterValue(
                f"Scope name {name!r} is invalid: use up to 128 letters, digits, dashes, underscores and periods"
            )
        if initial_manage_principal not in (None, "", "users"):
            raise InvalidParameterValue("initial_manage_principal must be 'users' or omitted")
        with self._lock:
            if name in self.scopes:
                raise ResourceAlreadyExists(f"Scope {name} already exists!")
            acls = {who.name: "MANAGE"}
            if initial_manage_principal == "users":
                acls["users"] = "MANAGE"
            scope = {"name": name, "backend_type": "DATABRICKS", "acls": acls, "secrets": {}}
            self.scopes[name] = scope
            self._save(scope)

    def list_scopes(self, who: Principal) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"name": s["name"], "backend_type": s["backend_type"]}
                for s in sorted(self.scopes.values(), key=lambda s: s["name"])
                if self.level(s, who) > 0
            ]

    def delete_scope(self, name: str, who: Principal) -> None:
        with self._lock:
            self._check(self._scope(name), who, "MANAGE")
            del self.scopes[name]
            self._store.delete("secret_scope", name)

    def put(self, scope_name: str, key: str, value: bytes, who: Principal) -> None:
        if not _NAME.match(key or ""):
            raise InvalidParameterValue(f"Secret key {key!r} is invalid")
        if len(value) > 128 * 1024:
            raise InvalidParameterValue("Secret values are limited to 128 KB")
        with self._lock:
            scope = self._scope(scope_name)
            self._check(scope, who, "WRITE")
            scope["secrets"][key] = {"value": base64.b64encode(value).decode(), "ts": int(time.time() * 1000)}
            self._save(scope)

    def delete(self, scope_name: str, key: str, who: Principal) -> None:
        with self._lock:
            scope = self._scope(scope_name)
            self._check(scope, who, "WRITE")
            if key not in scope["secrets"]:
                raise ResourceDoesNotExist(f"Secret {key} does not exist in scope {scope_name}")
            del scope["secrets"][key]
            self._save(scope)

    def list_secrets(self, scope_name: str, who: Principal) -> list[dict[str, Any]]:
        with self._lock:
            scope = self._scope(scope_name)
            self._check(scope, who, "READ")
            return [{"key": k, "last_updated_timestamp": v["ts"]} for k, v in sorted(scope["secrets"].items())]

    def get(self, scope_name: str, key: str, who: Principal) -> str:
        """The base64 value, as the `secrets/get` endpoint returns it."""
        with self._lock:
            scope = self._scope(scope_name)
            self._check(scope, who, "READ")
            if key not in scope["secrets"]:
                raise ResourceDoesNotExist(f"Secret {key} does not exist in scope {scope_name}")
            return str(scope["secrets"][key]["value"])

    def put_acl(self, scope_name: str, principal: str, permission: str, who: Principal) -> None:
        if permission not in LEVELS:
            raise InvalidParameterValue(f"Invalid permission {permission!r}: expected READ, WRITE or MANAGE")
        if not principal:
            raise InvalidParameterValue("Missing required field: principal")
        with self._lock:
            scope = self._scope(scope_name)
            self._check(scope, who, "MANAGE")
            scope["acls"][principal] = permission
            self._save(scope)

    def delete_acl(self, scope_name: str, principal: str, who: Principal) -> None:
        with self._lock:
            scope = self._scope(scope_name)
            self._check(scope, who, "MANAGE")
            if principal not in scope["acls"]:
                raise ResourceDoesNotExist(f"No ACL for {principal} on scope {scope_name}")
            del scope["acls"][principal]
            self._save(scope)

    def acls(self, scope_name: str, who: Principal) -> list[dict[str, str]]:
        with self._lock:
            scope = self._scope(scope_name)
            self._check(scope, who, "MANAGE")
            return [{"principal": p, "permission": level} for p, level in sorted(scope["acls"].items())]
