"""Who holds what in Unity Catalog: grants, inheritance down the hierarchy, ownership, and the checks.

A grant on a catalog or schema applies to everything inside it; the owner of an object or of any parent holds
every privilege, and so do workspace admins. Reading an object needs `USE_CATALOG` on its catalog and
`USE_SCHEMA` on its schema as well, as on Databricks. Grants are kept in the store as
`"<TYPE>:<full name>" -> {principal: [privileges]}`.
"""

from __future__ import annotations

import threading
from typing import Any

from apev_workspace.core.store import Store
from apev_workspace.identity.models import Identity, Principal
from apev_workspace.unity_catalog.exceptions import InvalidParameterValue, PermissionDenied, ResourceDoesNotExist

_CONTAINER = [
    "ALL_PRIVILEGES",
    "USE_SCHEMA",
    "SELECT",
    "MODIFY",
    "CREATE_TABLE",
    "CREATE_VIEW",
    "CREATE_VOLUME",
    "CREATE_FUNCTION",
    "CREATE_MODEL",
    "CREATE_MATERIALIZED_VIEW",
    "READ_VOLUME",
    "WRITE_VOLUME",
    "EXECUTE",
    "REFRESH",
    "APPLY_TAG",
    "BROWSE",
    "MANAGE",
]
APPLICABLE: dict[str, list[str]] = {
    "CATALOG": ["USE_CATALOG", "CREATE_SCHEMA", *_CONTAINER],
    "SCHEMA": _CONTAINER,
    "TABLE": ["ALL_PRIVILEGES", "SELECT", "MODIFY", "REFRESH", "APPLY_TAG", "BROWSE", "MANAGE"],
    "VOLUME": ["ALL_PRIVILEGES", "READ_VOLUME", "WRITE_VOLUME", "APPLY_TAG", "MANAGE"],
}
_SPACED = {p: p.replace("_", " ") for p in APPLICABLE["CATALOG"]}


class Grants:
    """The privilege half of `UnityCatalog` (which inherits it): the object tables are its own."""

    _store: Store
    _lock: threading.RLock
    identity: Identity
    catalogs: dict[str, dict[str, Any]]
    schemas: dict[str, dict[str, Any]]
    volumes: dict[str, dict[str, Any]]
    tables: dict[str, dict[str, Any]]
    grants: dict[str, dict[str, list[str]]]

    def _sync_tables(self, catalog: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _owner_of(self, kind: str, full_name: str) -> str | None:
        table = {"CATALOG": self.catalogs, "SCHEMA": self.schemas, "TABLE": self.tables, "VOLUME": self.volumes}
        obj = table[kind].get(full_name)
        return None if obj is None else obj.get("owner")

    @staticmethod
    def chain(kind: str, full_name: str) -> list[tuple[str, str]]:
        """The securable and its parents, outermost first: CATALOG c, SCHEMA c.s, TABLE c.s.t."""
        parts = full_name.split(".")
        out = [("CATALOG", parts[0])]
        if len(parts) >= 2:
            out.append(("SCHEMA", ".".join(parts[:2])))
        if len(parts) == 3:
            out.append((kind, full_name))
        return out

    def holds(self, who: Principal, kind: str, full_name: str, privilege: str) -> bool:
        if who.is_admin:
            return True
        if (kind, full_name, privilege) == ("CATALOG", "system", "USE_CATALOG"):
            return True  # as in Databricks, every user may use the system catalog; its schemas need grants
        with self._lock:
            for level_kind, level_name in self.chain(kind, full_name):
                if self._owner_of(level_kind, level_name) in who.acl_names:
                    return True
                granted = self.grants.get(f"{level_kind}:{level_name}", {})
                for principal, privileges in granted.items():
                    if principal in who.acl_names and (privilege in privileges or "ALL_PRIVILEGES" in privileges):
                        return True
        return False

    def authorize(self, who: Principal, kind: str, full_name: str, privilege: str | None = None) -> None:
        """USE_CATALOG and USE_SCHEMA on the parents, then `privilege` on the object (inherited)."""
        parts = full_name.split(".")
        needed = [("CATALOG", parts[0], "USE_CATALOG")]
        if len(parts) >= 2:
            needed.append(("SCHEMA", ".".join(parts[:2]), "USE_SCHEMA"))
        if privilege is not None and privilege not in ("USE_CATALOG", "USE_SCHEMA"):
            needed.append((kind, full_name, privilege))
        for level_kind, level_name, priv in needed:
            if not self.holds(who, level_kind, level_name, priv):
                raise PermissionDenied(
                    f"User {who.name} does not have {_SPACED.get(priv, priv)} on "
                    f"{level_kind.capitalize()} '{level_name}'."
                )

    def can_see(self, who: Principal, kind: str, full_name: str) -> bool:
        """Any privilege on the object, a parent or (for containers) a child, or ownership: it shows in lists."""
        if who.is_admin:
            return True
        with self._lock:
            prefix = full_name + "."
            for key, granted in self.grants.items():
                name = key.split(":", 1)[1]
                related = name == full_name or name.startswith(prefix) or full_name.startswith(name + ".")
                if related and any(p in who.acl_names and privs for p, privs in granted.items()):
                    return True
            for level_kind, level_name in self.chain(kind, full_name):
                if self._owner_of(level_kind, level_name) in who.acl_names:
                    return True
            owners = [*self.schemas.values(), *self.volumes.values(), *self.tables.values()]
            return any(o.get("owner") in who.acl_names and o["full_name"].startswith(prefix) for o in owners)

    def _require_manage(self, who: Principal, kind: str, full_name: str) -> None:
        if not (who.is_admin or self.holds(who, kind, full_name, "MANAGE")):
            raise PermissionDenied(f"User {who.name} does not have MANAGE on {kind.capitalize()} '{full_name}'.")

    # ------------------------------------------------------------------ grants
    def _securable(self, securable_type: str, full_name: str) -> tuple[str, str]:
        kind = securable_type.upper()
        if kind in ("VIEW", "MATERIALIZED_VIEW"):
            kind = "TABLE"
        if kind not in APPLICABLE:
            raise InvalidParameterValue(
                f"Unsupported securable type {securable_type}: the local workspace grants on catalog, schema, "
                "table and volume"
            )
        if full_name.split(".")[0] == "system":
            if kind == "VOLUME" or not self.system_exists(kind, full_name):  # type: ignore[attr-defined]
                raise ResourceDoesNotExist(f"{kind.capitalize()} '{full_name}' does not exist.")
            return kind, full_name
        store = {"CATALOG": self.catalogs, "SCHEMA": self.schemas, "TABLE": self.tables, "VOLUME": self.volumes}
        if kind == "TABLE" and full_name not in self.tables:
            self._sync_tables(full_name.split(".")[0])
        if full_name not in store[kind]:
            raise ResourceDoesNotExist(f"{kind.capitalize()} '{full_name}' does not exist.")
        return kind, full_name

    def get_grants(self, who: Principal, securable_type: str, full_name: str, principal: str | None) -> list[Any]:
        with self._lock:
            kind, name = self._securable(securable_type, full_name)
            if not self.can_see(who, kind, name):
                raise PermissionDenied(f"User {who.name} does not have privileges on {kind.capitalize()} '{name}'.")
            granted = self.grants.get(f"{kind}:{name}", {})
            return [
                {"principal": p, "privileges": sorted(privs)}
                for p, privs in sorted(granted.items())
                if privs and (principal is None or p == principal)
            ]

    def update_grants(self, who: Principal, securable_type: str, full_name: str, changes: list[Any]) -> list[Any]:
        with self._lock:
            kind, name = self._securable(securable_type, full_name)
            self._require_manage(who, kind, name)
            granted = {p: list(v) for p, v in self.grants.get(f"{kind}:{name}", {}).items()}
            for change in changes or []:
                principal = change.get("principal")
                if not principal:
                    raise InvalidParameterValue("Missing required field: changes.principal")
                self._check_principal(principal)
                current = set(granted.get(principal, []))
                for priv in change.get("add") or []:
                    priv = str(priv).upper().replace(" ", "_")
                    if priv not in APPLICABLE[kind]:
                        raise InvalidParameterValue(f"Privilege {priv} is not applicable to this entity ({kind}).")
                    current.add(priv)
                for priv in change.get("remove") or []:
                    current.discard(str(priv).upper().replace(" ", "_"))
                granted[principal] = sorted(current)
            granted = {p: v for p, v in granted.items() if v}
            self.grants[f"{kind}:{name}"] = granted
            self._store.put("uc_grant", f"{kind}:{name}", granted)
            return [{"principal": p, "privileges": v} for p, v in sorted(granted.items())]

    def _check_principal(self, name: str) -> None:
        if self.identity.group_by_name(name) is None and self.identity.principal_by_name(name) is None:
            raise InvalidParameterValue(f"Could not find principal with name {name}.")

    def effective(self, who: Principal, securable_type: str, full_name: str, principal: str | None) -> list[Any]:
        with self._lock:
            kind, name = self._securable(securable_type, full_name)
            if not self.can_see(who, kind, name):
                raise PermissionDenied(f"User {who.name} does not have privileges on {kind.capitalize()} '{name}'.")
            out: dict[str, list[dict[str, Any]]] = {}
            for level_kind, level_name in self.chain(kind, name):
                for p, privs in self.grants.get(f"{level_kind}:{level_name}", {}).items():
                    if principal is not None and p != principal and not self._member(principal, p):
                        continue
                    for priv in privs:
                        if priv not in APPLICABLE[kind]:
                            continue
                        item: dict[str, Any] = {"privilege": priv}
                        if (level_kind, level_name) != (kind, name):
                            item["inherited_from_type"] = level_kind
                            item["inherited_from_name"] = level_name
                        out.setdefault(p, []).append(item)
            return [{"principal": p, "privileges": v} for p, v in sorted(out.items())]

    def _member(self, principal: str, group: str) -> bool:
        found = self.identity.principal_by_name(principal)
        return found is not None and group in found.groups

    def _drop_grants(self, prefix_kind: str, full_name: str) -> None:
        for key in list(self.grants):
            name = key.split(":", 1)[1]
            if name == full_name or name.startswith(full_name + "."):
                if prefix_kind == "TABLE" and key != f"TABLE:{full_name}":
                    continue
                del self.grants[key]
                self._store.delete("uc_grant", key)
