"""Principals, groups and tokens, without HTTP.

Tokens are stored as SHA-256 hashes; the admin token comes from the server's settings and is never stored.
Every authenticated request resolves to a `Principal` with its (transitive) group names; `admins` membership
makes a workspace admin, and every principal is in `users`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apev_workspace.core.exceptions import InvalidParameterValue, PermissionDenied, Unauthenticated
from apev_workspace.core.store import Store
from apev_workspace.identity.exceptions import InvalidClient, ScimConflict, ScimNotFound

ADMINS = "admins"
USERS = "users"
DEFAULT_ADMIN_USER = "admin@apev.local"
DEFAULT_SECRET_LIFETIME_SECONDS = 63_072_000  # 730 days, Databricks' default for service principal OAuth secrets
DEFAULT_OAUTH_TOKEN_TTL_SECONDS = 3600


@dataclass(frozen=True)
class Principal:
    kind: str  # "user" or "service_principal"
    id: str
    name: str  # a user's userName, a service principal's applicationId
    display_name: str
    groups: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMINS in self.groups

    @property
    def acl_names(self) -> frozenset[str]:
        """Every name an ACL entry may use to grant this principal something."""
        return self.groups | {self.name}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_FILTER = re.compile(r'\s*(\w+)\s+(eq|ne|co|sw)\s+"([^"]*)"\s*', re.IGNORECASE)


def parse_filter(text: str | None) -> list[tuple[str, str, str]]:
    """SCIM filters as the SDK sends them: `attr op "value"` joined by `and`."""
    if not text:
        return []
    terms = []
    for part in re.split(r"\s+and\s+", text, flags=re.IGNORECASE):
        match = _FILTER.fullmatch(part)
        if not match:
            raise InvalidParameterValue(f"Unsupported SCIM filter: {text!r}")
        terms.append((match.group(1).lower(), match.group(2).lower(), match.group(3)))
    return terms


def matches(obj: dict[str, Any], terms: list[tuple[str, str, str]]) -> bool:
    lowered = {k.lower(): v for k, v in obj.items()}
    for attr, op, value in terms:
        actual = str(lowered.get(attr, ""))
        a, v = actual.lower(), value.lower()
        ok = {"eq": a == v, "ne": a != v, "co": v in a, "sw": a.startswith(v)}[op]
        if not ok:
            return False
    return True


class Identity:
    def __init__(self, store: Store, lock: threading.RLock, admin_token: str, admin_user: str = DEFAULT_ADMIN_USER):
        self._store = store
        self._lock = lock
        self._admin_token = admin_token
        self.users: dict[str, dict[str, Any]] = store.load("scim_user")
        self.sps: dict[str, dict[str, Any]] = store.load("scim_sp")
        self.groups: dict[str, dict[str, Any]] = store.load("scim_group")
        self.tokens: dict[str, dict[str, Any]] = store.load("token")
        self.sp_secrets: dict[str, dict[str, Any]] = store.load("sp_secret")
        self._by_hash = {t["hash"]: tid for tid, t in self.tokens.items()}
        self._bootstrap(admin_user)

    def _bootstrap(self, admin_user: str) -> None:
        with self._lock:
            for name in (ADMINS, USERS):
                if self.group_by_name(name) is None:
                    self._save_group({"id": self._new_id(), "displayName": name, "members": []})
            admin = self.user_by_name(admin_user)
            if admin is None:
                admin = self.create_user({"userName": admin_user, "displayName": "Workspace admin"}, None)
            self.add_members(self.group_by_name(ADMINS)["id"], [admin["id"]])  # type: ignore[index]
            self.admin_user_id = admin["id"]

    def _new_id(self) -> str:
        return str(self._store.next_id("scim_id", start=1_000_000_000_000_001))

    # ------------------------------------------------------------------ principals
    def user_by_name(self, user_name: str) -> dict[str, Any] | None:
        return next((u for u in self.users.values() if u["userName"].lower() == user_name.lower()), None)

    def sp_by_application_id(self, app_id: str) -> dict[str, Any] | None:
        return next((s for s in self.sps.values() if s["applicationId"] == app_id), None)

    def group_by_name(self, name: str) -> dict[str, Any] | None:
        return next((g for g in self.groups.values() if g["displayName"] == name), None)

    def group_names_of(self, member_id: str) -> frozenset[str]:
        names: set[str] = {USERS}
        frontier = {member_id}
        seen: set[str] = set()
        while frontier:
            current = frontier.pop()
            seen.add(current)
            for group in self.groups.values():
                if current in group["members"] and group["id"] not in seen:
                    names.add(group["displayName"])
                    frontier.add(group["id"])
        return frozenset(names)

    def direct_groups_of(self, member_id: str) -> list[dict[str, Any]]:
        return [g for g in self.groups.values() if member_id in g["members"]]

    def principal_for(self, kind: str, obj_id: str) -> Principal:
        if kind == "user":
            user = self.users[obj_id]
            return Principal(
                "user",
                obj_id,
                user["userName"],
                user.get("displayName") or user["userName"],
                self.group_names_of(obj_id),
            )
        sp = self.sps[obj_id]
        return Principal(
            "service_principal", obj_id, sp["applicationId"], sp.get("displayName") or "", self.group_names_of(obj_id)
        )

    def admin_principal(self) -> Principal:
        with self._lock:
            return self.principal_for("user", self.admin_user_id)

    def find_principal(self, *, user_name: str | None = None, service_principal_name: str | None = None) -> Principal:
        """The principal a `run_as` (or an ACL) names; 400 when it names nobody."""
        with self._lock:
            if user_name:
                user = self.user_by_name(user_name)
                if user is None:
                    raise InvalidParameterValue(f"User {user_name} does not exist in the workspace")
                return self.principal_for("user", user["id"])
            if service_principal_name:
                sp = self.sp_by_application_id(service_principal_name)
                if sp is None:
                    raise InvalidParameterValue(f"Service principal {service_principal_name} does not exist")
                return self.principal_for("service_principal", sp["id"])
        raise InvalidParameterValue("Either user_name or service_principal_name must be set")

    def principal_by_name(self, name: str) -> Principal | None:
        with self._lock:
            user = self.user_by_name(name)
            if user is not None:
                return self.principal_for("user", user["id"])
            sp = self.sp_by_application_id(name)
            if sp is not None:
                return self.principal_for("service_principal", sp["id"])
        return None

    # ------------------------------------------------------------------ authentication
    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthenticated("Credential was not sent or was of an unsupported type for this API.")
        token = authorization[7:].strip()
        if hmac.compare_digest(token.encode(), self._admin_token.encode()):
            return self.admin_principal()
        with self._lock:
            token_id = self._by_hash.get(_hash(token))
            info = self.tokens.get(token_id) if token_id else None
            if info is None:
                raise Unauthenticated("Invalid access token.")
            if info["expiry_time"] != -1 and info["expiry_time"] <= _now_ms():
                raise Unauthenticated("Invalid access token. The token has expired.")
            table = self.users if info["owner_kind"] == "user" else self.sps
            owner = table.get(info["owner_id"])
            if owner is None or not owner.get("active", True):
                raise Unauthenticated("Invalid access token. Its owner is no longer active.")
            return self.principal_for(info["owner_kind"], info["owner_id"])

    # ------------------------------------------------------------------ users, service principals, groups
    def create_user(self, body: dict[str, Any], actor: Principal | None) -> dict[str, Any]:
        require_admin(actor)
        user_name = body.get("userName")
        if not user_name:
            raise InvalidParameterValue("userName is required")
        with self._lock:
            if self.user_by_name(user_name):
                raise ScimConflict(f"User with username {user_name} already exists.")
            user = {
                "id": self._new_id(),
                "userName": user_name,
                "displayName": body.get("displayName") or user_name,
                "active": body.get("active", True),
                "entitlements": body.get("entitlements") or [],
                "externalId": body.get("externalId"),
            }
            self.users[user["id"]] = user
            self._store.put("scim_user", user["id"], user)
            for ref in body.get("groups") or []:
                self.add_members(ref["value"], [user["id"]])
            return user

    def create_sp(self, body: dict[str, Any], actor: Principal | None) -> dict[str, Any]:
        require_admin(actor)
        with self._lock:
            app_id = body.get("applicationId") or str(uuid.uuid4())
            if self.sp_by_application_id(app_id):
                raise ScimConflict(f"Service principal with application id {app_id} already exists.")
            sp = {
                "id": self._new_id(),
                "applicationId": app_id,
                "displayName": body.get("displayName") or app_id,
                "active": body.get("active", True),
                "entitlements": body.get("entitlements") or [],
                "externalId": body.get("externalId"),
            }
            self.sps[sp["id"]] = sp
            self._store.put("scim_sp", sp["id"], sp)
            for ref in body.get("groups") or []:
                self.add_members(ref["value"], [sp["id"]])
            return sp

    def create_group(self, body: dict[str, Any], actor: Principal | None) -> dict[str, Any]:
        require_admin(actor)
        name = body.get("displayName")
        if not name:
            raise InvalidParameterValue("displayName is required")
        with self._lock:
            if self.group_by_name(name):
                raise ScimConflict(f"Group with name {name} already exists.")
            group = {
                "id": self._new_id(),
                "displayName": name,
                "members": [],
                "entitlements": body.get("entitlements") or [],
                "externalId": body.get("externalId"),
            }
            self._save_group(group)
            self.add_members(group["id"], [m["value"] for m in body.get("members") or []])
            return group

    def _save_group(self, group: dict[str, Any]) -> None:
        self.groups[group["id"]] = group
        self._store.put("scim_group", group["id"], group)

    def _exists(self, obj_id: str) -> bool:
        return obj_id in self.users or obj_id in self.sps or obj_id in self.groups

    def add_members(self, group_id: str, member_ids: list[str]) -> None:
        with self._lock:
            group = self.groups.get(group_id)
            if group is None:
                raise ScimNotFound(f"Group with id {group_id} not found.")
            for member in member_ids:
                if not self._exists(member):
                    raise ScimNotFound(f"Member with id {member} not found.")
                if member == group_id:
                    raise InvalidParameterValue("A group cannot be a member of itself")
                if member not in group["members"]:
                    group["members"].append(member)
            self._save_group(group)

    def remove_members(self, group_id: str, member_ids: list[str]) -> None:
        with self._lock:
            group = self.groups.get(group_id)
            if group is None:
                raise ScimNotFound(f"Group with id {group_id} not found.")
            group["members"] = [m for m in group["members"] if m not in member_ids]
            self._save_group(group)

    def patch_group(self, group_id: str, operations: list[dict[str, Any]], actor: Principal) -> None:
        require_admin(actor)
        for op in operations:
            kind = str(op.get("op", "")).lower()
            path = str(op.get("path", ""))
            values = op.get("value")
            if kind == "add" and path in ("members", ""):
                refs = values if isinstance(values, list) else (values or {}).get("members", [])
                self.add_members(group_id, [r["value"] for r in refs])
            elif kind == "remove":
                match = re.fullmatch(r'members\[value eq "?([^"\]]+)"?\]', path)
                if match:
                    self.remove_members(group_id, [match.group(1)])
                elif path == "members" and isinstance(values, list):
                    self.remove_members(group_id, [r["value"] for r in values])
                else:
                    raise InvalidParameterValue(f"Unsupported remove path: {path!r}")
            elif kind == "replace" and path == "members":
                with self._lock:
                    self.groups[group_id]["members"] = []
                self.add_members(group_id, [r["value"] for r in values or []])
            elif kind == "replace" and path == "displayName":
                with self._lock:
                    self.groups[group_id]["displayName"] = str(values)
                    self._save_group(self.groups[group_id])
            else:
                raise InvalidParameterValue(f"Unsupported PATCH operation {kind!r} on {path!r}")

    def delete(self, table_kind: str, obj_id: str, actor: Principal) -> None:
        require_admin(actor)
        table = {"scim_user": self.users, "scim_sp": self.sps, "scim_group": self.groups}[table_kind]
        with self._lock:
            if obj_id not in table:
                raise ScimNotFound(f"Resource with id {obj_id} not found.")
            if obj_id == self.admin_user_id or (
                table_kind == "scim_group" and table[obj_id]["displayName"] in (ADMINS, USERS)
            ):
                raise PermissionDenied("The built-in admin user and groups cannot be deleted")
            del table[obj_id]
            self._store.delete(table_kind, obj_id)
            for secret_id in [k for k, v in self.sp_secrets.items() if v["sp_id"] == obj_id]:
                del self.sp_secrets[secret_id]  # a service principal's OAuth secrets go with it
                self._store.delete("sp_secret", secret_id)
            for group in list(self.groups.values()):
                if obj_id in group["members"]:
                    group["members"].remove(obj_id)
                    self._save_group(group)

    # ------------------------------------------------------------------ tokens
    def create_token(
        self,
        owner: Principal,
        *,
        lifetime_seconds: int | None,
        comment: str | None,
        created_by: Principal | None = None,
        internal: bool = False,
        prefix: str = "dapi",
    ) -> tuple[str, dict[str, Any]]:
        value = prefix + secrets.token_hex(16)
        now = _now_ms()
        info: dict[str, Any] = {
            "token_id": secrets.token_hex(32),
            "hash": _hash(value),
            "owner_kind": owner.kind,
            "owner_id": owner.id,
            "creation_time": now,
            "expiry_time": now + int(lifetime_seconds) * 1000 if lifetime_seconds and lifetime_seconds > 0 else -1,
            "comment": comment or "",
            "created_by_id": (created_by or owner).id,
            "created_by_username": (created_by or owner).name,
            "internal": internal,
            "oauth": prefix != "dapi",
        }
        with self._lock:
            self.tokens[info["token_id"]] = info
            self._by_hash[info["hash"]] = info["token_id"]
            self._store.put("token", info["token_id"], info)
        return value, info

    def revoke_token(self, token_id: str) -> None:
        with self._lock:
            info = self.tokens.pop(token_id, None)
            if info is not None:
                self._by_hash.pop(info["hash"], None)
                self._store.delete("token", token_id)

    def tokens_of(self, principal: Principal) -> list[dict[str, Any]]:
        with self._lock:
            return [t for t in self.tokens.values() if t["owner_id"] == principal.id and not t.get("internal")]


def require_admin(actor: Principal | None) -> None:
    if actor is not None and not actor.is_admin:
        raise PermissionDenied(f"Only workspace admins can do this; {actor.name} is not an admin")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_lifetime(value: Any) -> int:
    """A secret's lifetime as Databricks takes it: a duration string (`"3600s"`) or a number of seconds."""
    if value is None or value == "":
        return DEFAULT_SECRET_LIFETIME_SECONDS
    text = str(value).strip()
    text = text[:-1] if text.endswith("s") else text
    try:
        seconds = int(float(text))
    except ValueError:
        raise InvalidParameterValue(f"Invalid lifetime {value!r}: expected seconds such as '3600s'") from None
    if seconds <= 0:
        raise InvalidParameterValue(f"Invalid lifetime {value!r}: must be positive")
    return seconds


class OAuthSecrets:
    """Service principals' OAuth secrets and the client-credentials grant (M2M).

    A secret is shown once, at creation; only its SHA-256 hash is stored. `client_credentials` checks the
    application id + secret and mints a short-lived access token owned by the service principal (an internal
    token, so it never shows in token listings), which authenticates exactly like a PAT of that principal.
    """

    def __init__(self, identity: Identity, token_ttl_seconds: int = DEFAULT_OAUTH_TOKEN_TTL_SECONDS) -> None:
        self._identity = identity
        self.token_ttl_seconds = token_ttl_seconds

    def _sp(self, sp_id: str) -> dict[str, Any]:
        sp = self._identity.sps.get(sp_id)
        if sp is None:
            raise ScimNotFound(f"Service principal with id {sp_id} not found.")
        return sp

    def create(self, sp_id: str, lifetime: Any, scopes: list[str] | None, actor: Principal) -> dict[str, Any]:
        require_admin(actor)
        seconds = parse_lifetime(lifetime)
        value = "dose" + secrets.token_hex(32)
        now = _now_ms()
        with self._identity._lock:
            self._sp(sp_id)
            info: dict[str, Any] = {
                "id": secrets.token_hex(16),
                "sp_id": sp_id,
                "hash": _hash(value),
                "secret_hash": value[-4:],
                "create_ms": now,
                "expire_ms": now + seconds * 1000,
                "scopes": list(scopes or []),
            }
            self.sp_secrets[info["id"]] = info
            self._identity._store.put("sp_secret", info["id"], info)
        return {**render_secret(info), "secret": value}

    @property
    def sp_secrets(self) -> dict[str, dict[str, Any]]:
        return self._identity.sp_secrets

    def list(self, sp_id: str, actor: Principal) -> list[dict[str, Any]]:
        require_admin(actor)
        with self._identity._lock:
            self._sp(sp_id)
            found = [s for s in self.sp_secrets.values() if s["sp_id"] == sp_id]
        return [render_secret(s) for s in sorted(found, key=lambda s: s["create_ms"])]

    def delete(self, sp_id: str, secret_id: str, actor: Principal) -> None:
        require_admin(actor)
        with self._identity._lock:
            self._sp(sp_id)
            info = self.sp_secrets.get(secret_id)
            if info is None or info["sp_id"] != sp_id:
                raise ScimNotFound(f"Secret with id {secret_id} not found.")
            del self.sp_secrets[secret_id]
            self._identity._store.delete("sp_secret", secret_id)

    def client_credentials(self, client_id: str, client_secret: str, scope: str | None) -> dict[str, Any]:
        """The token endpoint's answer for a valid client; `InvalidClient` (401) for anything else."""
        identity = self._identity
        now = _now_ms()
        with identity._lock:
            sp = identity.sp_by_application_id(client_id) if client_id else None
            digest = _hash(client_secret or "")
            valid = (
                sp is not None
                and sp.get("active", True)
                and any(
                    s["sp_id"] == sp["id"] and hmac.compare_digest(s["hash"], digest) and s["expire_ms"] > now
                    for s in self.sp_secrets.values()
                )
            )
            if not valid or sp is None:
                raise InvalidClient("Client authentication failed")
            owner = identity.principal_for("service_principal", sp["id"])
            self._prune_expired(now)
        value, _ = identity.create_token(
            owner,
            lifetime_seconds=self.token_ttl_seconds,
            comment="OAuth M2M access token",
            internal=True,
            prefix="eyJapev",
        )
        return {
            "access_token": value,
            "token_type": "Bearer",
            "expires_in": self.token_ttl_seconds,
            "scope": scope or "all-apis",
        }

    def _prune_expired(self, now: int) -> None:
        for token_id, info in list(self._identity.tokens.items()):
            if info.get("oauth") and info["expiry_time"] != -1 and info["expiry_time"] <= now:
                self._identity.revoke_token(token_id)


def render_secret(info: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": info["id"],
        "secret_hash": info["secret_hash"],
        "create_time": _iso(info["create_ms"]),
        "update_time": _iso(info["create_ms"]),
        "expire_time": _iso(info["expire_ms"]),
        "status": "ACTIVE" if info["expire_ms"] > _now_ms() else "EXPIRED",
        "scopes": info["scopes"],
    }
