"""Who is looking: the JWT from the console's HttpOnly cookie, verified like every API token, and which tenants
that person may see (a tenant role: its own; `admin`: every tenant), plus the form token that guards POSTs."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from starlette.requests import Request

from apev_contracts.naming import validate_tenant_id
from apev_runtime.auth import AuthError, JwtVerifier, Principal

COOKIE = "apev_console"
ADMIN = "admin"


@dataclass(frozen=True)
class Session:
    principal: Principal
    raw: str
    tenant: str
    """The tenant the page is about (`?tenant=`; a tenant role's is always its own)."""
    csrf: str

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.principal.roles

    @property
    def user(self) -> str:
        return self.principal.subject

    def can(self, *roles: str) -> bool:
        return bool(self.principal.roles & set(roles))


def csrf_for(key: bytes, raw: str) -> str:
    return hmac.new(key, b"csrf:" + raw.encode(), hashlib.sha256).hexdigest()[:32]


def signed(key: bytes, *parts: str) -> str:
    return hmac.new(key, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()[:32]


def resolve(request: Request, verifier: JwtVerifier | None, key: bytes) -> Session:
    """Raises AuthError 401 (no or bad cookie) or 403 (another tenant asked for by a tenant role)."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        raise AuthError(401, "not signed in")
    if verifier is None:
        raise AuthError(401, "this service has no JWT key configured (APEV_JWT_SECRET, ...)")
    principal = verifier.verify(f"Bearer {raw}")
    asked = request.query_params.get("tenant") or principal.tenant_id
    try:
        asked = validate_tenant_id(asked)
    except ValueError as exc:
        raise AuthError(403, f"tenant: {exc}") from None
    if asked != principal.tenant_id and ADMIN not in principal.roles:
        raise AuthError(403, f"this sign-in is for tenant {principal.tenant_id!r} only, not {asked!r}")
    return Session(principal=principal, raw=raw, tenant=asked, csrf=csrf_for(key, raw))
