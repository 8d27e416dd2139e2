"""JWT abuse is refused with 401/403 and a body that says why."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from apev_runtime.auth import AuthError, JwtVerifier, mint_token, requires

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


def test_verifier_comes_from_shared_settings_whatever_the_service_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic_settings import SettingsConfigDict

    from apev_runtime.settings import ServiceSettings

    class JobsLike(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="JOBS_", extra="ignore")

    assert JobsLike().jwt_verifier() is None  # no key configured: nothing is let through
    monkeypatch.setenv("APEV_JWT_SECRET", KEY)
    monkeypatch.setenv("APEV_JWT_AUDIENCE", "apev-jobs")
    built = JobsLike().jwt_verifier()
    assert built is not None
    token = mint_token(KEY, tenant_id="acme", roles=["admin"], audience="apev-jobs")
    assert built.verify(f"Bearer {token}").tenant_id == "acme"
    with pytest.raises(AuthError, match="audience"):
        built.verify(f"Bearer {mint_token(KEY, tenant_id='acme', roles=['admin'])}")


def _rsa() -> tuple[Any, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public_pem


def test_rs256_with_a_public_key_and_hs256_confusion_refused() -> None:
    private, public_pem = _rsa()
    rs = JwtVerifier(issuer="agentprovision", audience="apev", public_key=public_pem)
    good = jwt.encode(_claims(), private, algorithm="RS256")
    assert rs.verify(f"Bearer {good}").tenant_id == "acme"
    # The classic confusion attack: HS256 signed with the public key as the secret.
    forged = jwt.encode(_claims(), "not-the-private-key-but-long-enough-0123456789", algorithm="HS256")
    with pytest.raises(AuthError, match="algorithm not accepted"):
        rs.verify(f"Bearer {forged}")


def test_rs256_with_a_jwks_url() -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    private, _ = _rsa()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwk |= {"kid": "k1", "use": "sig", "alg": "RS256"}

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"keys": [jwk]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
        verifier = JwtVerifier(issuer="agentprovision", audience="apev", jwks_url=url)
        token = jwt.encode(_claims(), private, algorithm="RS256", headers={"kid": "k1"})
        assert verifier.verify(f"Bearer {token}").roles == frozenset({"engineer"})
        other, _ = _rsa()
        stranger = jwt.encode(_claims(), other, algorithm="RS256", headers={"kid": "k1"})
        with pytest.raises(AuthError, match="signature"):
            verifier.verify(f"Bearer {stranger}")
    finally:
        server.shutdown()
