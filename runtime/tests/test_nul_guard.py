"""A NUL character in a path or query string is the caller's mistake: 400, never the 500 that PostgreSQL's refusal
of U+0000 in text would become (schemathesis sent `state=...%00...` to monitor's alerts list)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from apev_runtime.app import NulGuard


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"state": request.query_params.get("state"), "name": request.path_params.get("name")})


def _client() -> TestClient:
    app = Starlette(
        routes=[Route("/alerts", echo), Route("/alerts/{name}", echo)],
        middleware=[Middleware(NulGuard)],
    )
    return TestClient(app)


def test_nul_in_the_query_string_or_path_is_a_400_naming_it() -> None:
    client = _client()
    for url in ("/alerts?state=fir%00ing", "/alerts?a=1&state=%00", "/alerts/x%00y"):
        response = client.get(url)
        assert response.status_code == 400, url
        assert "NUL" in response.json()["detail"]


def test_other_values_pass_through_unchanged() -> None:
    client = _client()
    assert client.get("/alerts?state=firing%C3%A9").json() == {"state": "firingé", "name": None}
    assert client.get("/alerts/x-y?state=0").json() == {"state": "0", "name": "x-y"}
