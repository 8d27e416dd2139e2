"""JWT abuse is refused with 401/403 and a body that says why."""

from __future__ import annotations

import time

import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from apev_runtime.auth import JwtVerifier, mint_token, requires

KEY = "test-signing-key-0123456789abcdef0123"
verifier = JwtVerifier(issuer="agentprovision", audience="apev", secret=KEY)


@requires(verifier, roles={"admin", "engineer"})
async def tenant_jobs(request: Request) -> Response:
    p = request.state.principal
    return JSONResponse({"tenant": p.tenant_id, "roles": sorted(p.roles)})


client = TestClient(Starlette(routes=[Route("/tenants/{tenant_id}/jobs", tenant_jobs)]))


def _claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "agentprovision",
        "aud": "apev",
        "sub": "u1",
        "iat": now,
        "exp": now + 600,
        "tenant_id": "acme",
        "roles": ["engineer"],
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _get(token: str | None, tenant: str = "acme") -> tuple[int, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    r = client.get(f"/tenants/{tenant}/jobs", headers=headers)
    return r.status_code, r.json()


def test_valid_token_passes() -> None:
    token = mint_token(KEY, tenant_id="acme", roles=["engineer"])
    assert _get(token) == (200, {"tenant": "acme", "roles": ["engineer"]})


@pytest.mark.parametrize(
    ("token", "status", "detail"),
    [
        (None, 401, "missing Authorization header"),
        (jwt.encode(_claims(exp=int(time.time()) - 3600), KEY, algorithm="HS256"), 401, "token expired"),
        (jwt.encode(_claims(), None, algorithm="none"), 401, "algorithm not accepted"),
        (jwt.encode(_claims(), "another-key-0123456789abcdef0123456", algorithm="HS256"), 401, "signature"),
        (jwt.encode(_claims(aud="other"), KEY, algorithm="HS256"), 401, "audience"),
        (jwt.encode(_claims(iss="evil"), KEY, algorithm="HS256"), 401, "issuer"),
        (jwt.encode(_claims(exp=None), KEY, algorithm="HS256"), 401, "'exp'"),
        (jwt.encode(_claims(tenant_id=None), KEY, algorithm="HS256"), 403, "no tenant_id"),
        (jwt.encode(_claims(tenant_id="Bad Tenant!"), KEY, algorithm="HS256"), 403, "malformed"),
        (jwt.encode(_claims(roles=["root"]), KEY, algorithm="HS256"), 403, "roles"),
        (jwt.encode(_claims(roles=["analyst"]), KEY, algorithm="HS256"), 403, "one of the roles"),
        ("not-a-jwt", 401, "invalid token"),
    ],
)
def test_abuse_is_refused_with_a_clear_body(token: str | None, status: int, detail: str) -> None:
    code, body = _get(token)
    assert code == status
    assert body["error"] == ("unauthenticated" if status == 401 else "forbidden")
    assert detail in body["detail"]


def test_token_of_one_tenant_cannot_reach_another() -> None:
    token = mint_token(KEY, tenant_id="acme", roles=["admin"])
    code, body = _get(token, tenant="globex")
    assert code == 403 and "not 'globex'" in body["detail"]
