"""Every service's API refuses bad tokens, and its HTTP side refuses bodies over the limit.

Each service's own routes (`api.routes(...)`) are served in-process with the verifier the runtime builds from
settings; the service object behind them is a stub that fails the test if a refused request ever reaches it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from faults_report import Report
from starlette.applications import Starlette
from starlette.routing import Route

from apev_ingest import api as ingest_api
from apev_jobs import api as jobs_api
from apev_jobs.settings import Settings as JobsSettings
from apev_monitor import api as monitor_api
from apev_runtime.app import MAX_BODY_BYTES, BodyLimit
from apev_runtime.auth import JwtVerifier, mint_token
from apev_serving import api as serving_api
from apev_writeback import api as writeback_api
from apev_writeback.settings import Settings as WritebackSettings

pytestmark = pytest.mark.faults

SECRET = "faults-suite-hs256-secret-0123456789abcdef"
ISS, AUD = "agentprovision", "apev"


class Unreachable:
    """A service object no refused request may touch."""

    def __getattr__(self, name: str) -> Any:
        return Unreachable()  # routes may read attributes while they are built

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a refused request reached the service")


def _routes(verifier: JwtVerifier) -> dict[str, list[Any]]:
    svc: Any = Unreachable()
    return {
        "ingest": ingest_api.routes(svc, verifier, None),
        "jobs": jobs_api.routes(svc, JobsSettings(), verifier),
        "monitor": monitor_api.routes(svc, verifier),
        "serving": serving_api.routes(svc, svc, verifier),
        "writeback": writeback_api.routes(svc, WritebackSettings(), verifier),
    }


def _api_calls(routes: list[Any]) -> list[tuple[str, str]]:
    calls = []
    for route in routes:
        if isinstance(route, Route) and route.path.startswith("/api/"):
            path = re.sub(r"\{tenant_id(:\w+)?\}", "acme", route.path)
            path = re.sub(r"\{\w+(:\w+)?\}", "x1", path)
            calls += [(m, path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return calls


def _b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def _claims(tenant: str = "acme", **over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISS,
        "aud": AUD,
        "sub": "u",
        "iat": now,
        "exp": now + 600,
        "tenant_id": tenant,
        "roles": ["admin", "analyst", "operator", "approver"],
        **over,
    }


def _bad_tokens(public_pem: bytes) -> dict[str, str]:
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(_claims())}"
    confused = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return {
        "missing": "",
        "garbage": "Bearer not-a-jwt",
        "expired": "Bearer " + mint_token(SECRET, tenant_id="acme", roles=["admin"], ttl_seconds=-3600),
        "alg none": "Bearer " + unsigned,
        "wrong key": "Bearer "
        + mint_token("another-key-that-is-long-enough-0123456789", tenant_id="acme", roles=["admin"]),
        "wrong audience": "Bearer " + jwt.encode(_claims(aud="someone-else"), SECRET, algorithm="HS256"),
        "hs/rs confusion": "Bearer " + signing_input + "." + base64.urlsafe_b64encode(confused).rstrip(b"=").decode(),
    }


async def _status(app: Any, method: str, path: str, headers: dict[str, str], **kw: Any) -> int:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        return (await client.request(method, path, headers=headers, **kw)).status_code


@pytest.fixture(scope="module")
def rsa_key() -> tuple[Any, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, public


async def test_every_api_refuses_bad_tokens(rsa_key: tuple[Any, bytes], report: Report) -> None:
    started = time.monotonic()
    _, public = rsa_key
    hs = _routes(JwtVerifier(issuer=ISS, audience=AUD, secret=SECRET))
    rs = _routes(JwtVerifier(issuer=ISS, audience=AUD, public_key=public.decode()))
    tokens = _bad_tokens(public)
    accepted: list[str] = []
    tried = 0
    for service, routes in hs.items():
        calls = _api_calls(routes)
        assert calls, f"{service} has no /api routes"
        for verifier_name, table in (("hs256", hs), ("rs256", rs)):
            app = Starlette(routes=table[service])
            for case, header in tokens.items():
                if (case == "hs/rs confusion") != (verifier_name == "rs256") and case != "missing":
                    continue
                for method, path in calls:
                    tried += 1
                    status = await _status(app, method, path, {"authorization": header} if header else {}, json={})
                    if status != 401:
                        accepted.append(f"{service} {method} {path} {case} ({verifier_name}): {status}")
    # Another tenant's path: a valid token for acme on globex's data is forbidden before the service runs.
    monitor = Starlette(routes=hs["monitor"])
    good = {"authorization": "Bearer " + jwt.encode(_claims("acme"), SECRET, algorithm="HS256")}
    for method, path in _api_calls(hs["monitor"]):
        if "/tenants/acme" in path:
            tried += 1
            status = await _status(monitor, method, path.replace("/tenants/acme", "/tenants/globex"), good)
            if status != 403:
                accepted.append(f"monitor {method} {path} other tenant: {status}")
    report.record(
        "jwt_refusals", tried=tried, lost=len(accepted), seconds=time.monotonic() - started, accepted=accepted[:20]
    )
    assert not accepted, accepted


async def test_bodies_over_the_limit_get_413_on_every_service(report: Report) -> None:
    started = time.monotonic()
    tried = 0
    for service, routes in _routes(JwtVerifier(issuer=ISS, audience=AUD, secret=SECRET)).items():
        app = BodyLimit(Starlette(routes=routes))
        posts = [(m, p) for m, p in _api_calls(routes) if m in ("POST", "PUT", "PATCH")]
        for method, path in posts[:2]:
            tried += 1
            big = b"{" + b" " * (MAX_BODY_BYTES + 1) + b"}"
            assert await _status(app, method, path, {"content-type": "application/json"}, content=big) == 413, (
                service,
                path,
            )

    # A body without Content-Length is counted as it streams, and the endpoint's read is stopped.
    async def read(request: Any) -> Any:
        from starlette.responses import Response

        return Response(str(len(await request.body())))

    echo = BodyLimit(Starlette(routes=[Route("/echo", read, methods=["POST"])]))

    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * (MAX_BODY_BYTES // 10)

    assert await _status(echo, "POST", "/echo", {}, content=chunks()) == 413
    assert await _status(echo, "POST", "/echo", {}, content=b"x" * 1000) == 200
    tried += 2
    # Under the limit it passes through to the endpoint (here: refused for the missing token).
    jobs = _routes(JwtVerifier(issuer=ISS, audience=AUD, secret=SECRET))["jobs"]
    method, path = next((m, p) for m, p in _api_calls(jobs) if m == "POST")
    assert await _status(BodyLimit(Starlette(routes=jobs)), method, path, {}, content=b"{}") == 401
    report.record("body_limit", tried=tried, seconds=time.monotonic() - started)


def test_build_app_installs_the_body_limit() -> None:
    from apev_runtime import app as runtime_app

    assert runtime_app.build_app.__kwdefaults__ == {"routes": (), "max_body_bytes": MAX_BODY_BYTES}
