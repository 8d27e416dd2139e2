"""The console's server side without a browser: sign-in by cookie, tenant scoping and admin-only pages, calls to
another service carrying a service token and the trace context, a service that is down shown as down while the
rest renders, and the Alerts page's silence action on the monitor's own API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from apev_runtime.testing import serve_app
from apev_sinks.testing import RunningSinks
from apev_stack.kafka import free_port

from .conftest import JWT_SECRET, Stack, monitor_stack, run_finished, unique

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


class Recorder:
    """A stand-in for the jobs service's HTTP API: answers the runs list, records every request's headers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def runs(self, request: Request) -> JSONResponse:
        self.seen.append({"path": request.url.path, "headers": dict(request.headers)})
        run = {"run_id": "4242", "job_id": "7", "job_name": "ap:t:adhoc:k", "kind": "adhoc", "key": "k",
               "active": False, "repairs": 0, "result_state": "FAILED", "created_at": "2026-01-01T00:00:00+00:00",
               "attempts": [
                   {"repair_attempt": 0, "outcome": "failure", "end_time": "2026-01-01T00:01:00+00:00",
                    "start_time": "2026-01-01T00:00:30+00:00", "state_message": "Task load failed: quota <exceeded>",
                    "tasks": [{"task_key": "load", "state": {"result_state": "FAILED"}}], "event_id": "e1",
                    "seen_by": "webhook", "run_page_url": None, "run_finished": {"run_id": "4242"}}]}  # fmt: skip
        return JSONResponse({"runs": [run]})


@pytest.fixture(scope="module")
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    rec = Recorder()
    port = free_port()
    app = Starlette(routes=[Route("/api/v1/databricks/runs", rec.runs)])
    async with serve_app(app, port):
        yield rec, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
async def stack(
    kafka_bootstrap: str, pg_url: str, sinks: RunningSinks, recorder: tuple[Recorder, str]
) -> AsyncIterator[Stack]:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: ingest is down
    async with monitor_stack(kafka_bootstrap, pg_url, sinks, jobs_url=recorder[1], ingest_url=dead) as s:
        yield s


def _signed_in(s: Stack, tenant: str, roles: tuple[str, ...], subject: str = "ops-1") -> httpx.AsyncClient:
    http = httpx.AsyncClient(base_url=s.base_url, timeout=30)
    token = jwt.encode(
        {"iss": "agentprovision", "aud": "apev", "sub": subject, "iat": 1, "exp": 4102444800, "tenant_id": tenant,
         "roles": list(roles)}, JWT_SECRET, algorithm="HS256",
    )  # fmt: skip
    http.cookies.set("apev_console", token, path="/console")
    return http


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no form token on the page"
    return found.group(1)


async def test_sign_in_sets_an_httponly_cookie_and_bad_tokens_are_refused(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        first = await http.get("/console/runs")
        assert first.status_code == 303 and first.headers["location"].startswith("/console/login")
        bad = await http.post("/console/login", data={"token": "not-a-jwt"})
        assert bad.status_code == 401 and "invalid token" in bad.text
        good = await http.post(
            "/console/login", data={"token": stack.token("acme", ("analyst",)), "next": "/console/runs"}
        )
        assert good.status_code == 303 and good.headers["location"] == "/console/runs"
        cookie = good.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
        page = await http.get("/console/runs", cookies={"apev_console": stack.token("acme", ("analyst",))})
        assert page.status_code == 200 and 'data-run="4242"' in page.text


async def test_calls_carry_a_service_token_and_the_trace_and_a_down_service_shows_as_down(
    stack: Stack, recorder: tuple[Recorder, str]
) -> None:
    rec, _ = recorder
    async with _signed_in(stack, "acme", ("engineer",)) as http:
        page = await http.get("/console/runs", params={"result": "failure"})
    assert page.status_code == 200
    assert "Task load failed: quota &lt;exceeded&gt;" in page.text  # the run's error, escaped
    call = rec.seen[-1]
    scheme, _, token = call["headers"]["authorization"].partition(" ")
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="apev")
    assert scheme == "Bearer" and claims["sub"] == "console:ops-1" and claims["tenant_id"] == "acme"
    assert claims["roles"] == ["engineer"] and claims["exp"] - claims["iat"] <= 300  # the user's roles, short-lived
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", call["headers"]["traceparent"])

    async with _signed_in(stack, "acme", ("engineer",)) as http:
        tenants = await http.get("/console/tenants")
        alerts = await http.get("/console/alerts")
    assert tenants.status_code == 200
    assert re.search(r'data-part="ingest" data-down="true"|data-down="true">acme: ingest is down', tenants.text)
    assert "ingest is down: ConnectError" in tenants.text
    assert alerts.status_code == 200 and 'id="active-alerts"' in alerts.text  # the rest of the console works


async def test_tenant_roles_see_their_tenant_only_and_no_admin_pages(stack: Stack) -> None:
    async with _signed_in(stack, "acme", ("engineer",)) as http:
        assert (await http.get("/console/dlq")).status_code == 403
        other = await http.get("/console/runs", params={"tenant": "globex"})
        assert other.status_code == 403 and "for tenant &#39;acme&#39; only" in other.text
        page = (await http.get("/console/runs")).text
        assert 'data-nav="dlq"' not in page and "tenant-select" not in page
    async with _signed_in(stack, "acme", ("admin",)) as http:
        page = await http.get("/console/dlq")
        assert page.status_code == 200 and "Dead letters" in page.text
        assert (await http.get("/console/runs", params={"tenant": "globex"})).status_code == 200


async def test_the_alerts_page_silences_a_firing_alert_through_the_monitors_api(stack: Stack) -> None:
    s, tenant, job = stack, unique("silence"), "9911"
    failures = [run_finished(tenant, job, str(n), "failure", s.clock.now()) for n in (1, 2)]
    await s.send(*failures)
    await s.consumed(*failures)
    await s.step(1)
    async with _signed_in(s, tenant, ("engineer",)) as http:
        page = await http.get("/console/alerts")
        assert 'data-rule="job_failures" data-state="firing" data-silenced="false"' in page.text
        fingerprint = re.search(r'data-silence="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        refused = await http.post("/console/silences", data={"fingerprint": fingerprint, "csrf": "forged"})
        assert refused.status_code == 403  # no form token, no action
        done = await http.post("/console/silences", data={"fingerprint": fingerprint, "csrf": _csrf(page.text)})
        assert done.status_code == 303 and "notice=silence" in done.headers["location"]
        again = (await http.get("/console/alerts", params={"fragment": "1"})).text
        assert 'data-silenced="true"' in again and "<html" not in again  # a fragment, not a page
    async with s.http(tenant) as api:
        (silence,) = (await api.get("/api/v1/monitor/silences")).json()["silences"]
    assert silence["matchers"] == {"rule": "job_failures", "job_id": job, "tenant_id": tenant}
    assert silence["created_by"] == "console:ops-1" and silence["state"] == "active"
