"""The tenant lifecycle from the operator CLI: offboarding, GDPR erasure, credential rotation.

    tenant {offboard,status} · erasure {request,status} · credentials {list,rotate,status}

Each command calls the ingest service's HTTP API (JWT, admin role of the tenant concerned, minted from
`APEV_JWT_SECRET` or the running stack's key) and prints the answer as JSON; every request answers with a
request id whose progress the `status` commands read (`--wait` polls until it settles). The ingest service's URL
is `INGEST_URL`, else the running stack's (`<state>/run/stack.json`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from apev_stack import ops
from apev_stack.state import StackNotFound, load_state, service_url

console = Console(highlight=False)
tenant_app = typer.Typer(no_args_is_help=True, help="A tenant's lifecycle: offboarding and its progress.")
erasure_app = typer.Typer(no_args_is_help=True, help="GDPR erasure of one person (an employee id) in a tenant.")
credentials_app = typer.Typer(
    no_args_is_help=True, help="A tenant's MCP keys and Databricks OAuth secrets: list by age, rotate."
)

TenantOpt = typer.Option(..., "--tenant", "-t", help="The tenant (the token is an admin of it).")
WaitOpt = typer.Option(False, "--wait", help="Poll the progress until the request settles.")
TimeoutOpt = typer.Option(300.0, "--timeout", help="Seconds --wait may take; then exit 1.")
JsonOpt = typer.Option(False, "--json", help="The service's JSON answer instead of a table.")
EXPORT_HELP = (
    "First export its gold tables to this volume of another catalog: /Volumes/<catalog>/<schema>/<volume>, "
    "optionally with a folder after it."
)
KIND_HELP = "mcp_api_key (the pipeline's MCP key), sp_secret (the pipeline principal's Databricks OAuth secret), all."


def register(app: typer.Typer) -> None:
    app.add_typer(tenant_app, name="tenant")
    app.add_typer(erasure_app, name="erasure")
    app.add_typer(credentials_app, name="credentials")


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def _token(tenant: str) -> str:
    secret = os.environ.get("APEV_JWT_SECRET")
    if not secret:
        state = load_state()
        if state is None:
            _fail("no JWT key: set APEV_JWT_SECRET (the services' key), or start the stack with `make run`")
        assert state is not None
        secret = state.jwt_secret
    return ops.dev_token(secret, tenant, ["admin"], subject="operator")


def _call(method: str, path: str, tenant: str, body: Any = None) -> Any:
    """The ingest service's answer; a refusal is printed and exits 1 (a missing stack: 2)."""
    try:
        url = service_url("ingest") + path
    except StackNotFound as exc:
        _fail(str(exc))
        raise
    try:
        status, answer = ops.request_json(method, url, _token(tenant), body)
    except Exception as exc:
        _fail(f"{url}: {type(exc).__name__}: {exc}")
        raise
    if status >= 400:
        typer.echo(json.dumps(answer, indent=2))
        _fail(f"{method} {path} answered {status}", 1)
    return answer


def _wait(read: Callable[[], Any], settled: tuple[str, ...], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = read()
        if isinstance(got, dict) and got.get("state") in settled:
            return got
        if time.monotonic() > deadline:
            typer.echo(json.dumps(got, indent=2))
            _fail(f"not settled after {timeout:.0f}s (state {got.get('state') if isinstance(got, dict) else '?'})", 1)
        time.sleep(0.5)


def _echo(body: Any) -> None:
    typer.echo(json.dumps(body, indent=2))


# ---------------------------------------------------------------------------- offboarding


@tenant_app.command("offboard")
def offboard(
    tenant: str = typer.Argument(..., help="The tenant that leaves."),
    export_volume: str | None = typer.Option(None, "--export-volume", help=EXPORT_HELP),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept in the event)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    wait: bool = WaitOpt,
    timeout: float = TimeoutOpt,
) -> None:
    """Offboard a tenant: every job cancelled and deleted, the catalog dropped (after the optional export),
    principals, secret scope, MCP integrations, webhook and keys removed. Prints the request id."""
    if not yes and not typer.confirm(f"Remove every trace of tenant {tenant!r}? This cannot be undone"):
        _fail("not confirmed (pass --yes)", 1)
    body = {k: v for k, v in {"export_volume": export_volume, "reason": reason}.items() if v is not None}
    asked = _call("POST", f"/api/v1/tenants/{tenant}/offboarding", tenant, body)
    if wait:
        progress = str(asked["progress"])
        asked = _wait(lambda: _call("GET", progress, tenant), ("done",), timeout)
    _echo(asked)


@tenant_app.command("status")
def offboarding_status(
    tenant: str = typer.Argument(..., help="The tenant being offboarded."),
    request_id: str = typer.Argument(..., help="The offboarding's request id."),
    wait: bool = WaitOpt,
    timeout: float = TimeoutOpt,
) -> None:
    """An offboarding's progress: requested, in_progress (with the steps done), done."""
    path = f"/api/v1/tenants/{tenant}/offboarding/{request_id}"

    def read() -> Any:
        return _call("GET", path, tenant)

    _echo(_wait(read, ("done",), timeout) if wait else read())


# ---------------------------------------------------------------------------- erasure


@erasure_app.command("request")
def erasure_request(
    tenant: str = typer.Argument(..., help="The tenant whose data names the person."),
    employee_id: str = typer.Argument(..., help="The person's employee id in the outside systems (e.g. E00042)."),
    wait: bool = WaitOpt,
    timeout: float = TimeoutOpt,
) -> None:
    """Erase one person's rows (bronze, silver, gold) and landing files; their held write-backs are cancelled.
    Prints the request id; `--wait` prints the verified audit record (counts per table, never the id)."""
    asked = _call("POST", "/api/v1/erasures", tenant, {"employee_id": employee_id})
    if wait:
        progress = str(asked["progress"])
        asked = _wait(lambda: _call("GET", progress, tenant), ("verified",), timeout)
    _echo(asked)


@erasure_app.command("status")
def erasure_status(
    request_id: str = typer.Argument(..., help="The erasure's request id."),
    tenant: str = TenantOpt,
    wait: bool = WaitOpt,
    timeout: float = TimeoutOpt,
) -> None:
    """An erasure's audit record: state (requested, erasing, verified), rows deleted per table, files deleted,
    and what the follow-up check still found."""

    def read() -> Any:
        return _call("GET", f"/api/v1/erasures/{request_id}", tenant)

    _echo(_wait(read, ("verified",), timeout) if wait else read())


# ---------------------------------------------------------------------------- credentials


@credentials_app.command("list")
def credentials_list(tenant: str = TenantOpt, as_json: bool = JsonOpt) -> None:
    """The tenant's credentials, oldest first: MCP keys and the pipeline principal's OAuth secrets, with their
    age, whether a rotation retires them and whether they are due (older than the configured maximum)."""
    listed = _call("GET", "/api/v1/credentials", tenant)["credentials"]
    if as_json:
        _echo(listed)
        return
    table = Table(title=f"credentials of {tenant}: {len(listed)}")
    for col in ("kind", "key_id", "created_at", "age_days", "state", "revoke_after", "rotation_due"):
        table.add_column(col, overflow="fold")
    for c in listed:
        due = "[red]yes[/]" if c["rotation_due"] else "no"
        table.add_row(c["kind"], c["key_id"], c["created_at"], f"{c['age_days']:.2f}", c["state"],
                      c["revoke_after"] or "-", due)  # fmt: skip
    console.print(table)


@credentials_app.command("rotate")
def credentials_rotate(
    tenant: str = TenantOpt,
    kind: str = typer.Option("all", "--kind", help=KIND_HELP),
) -> None:
    """Rotate now: the new credential goes to the tenant's secret scope at once, the old one is revoked after
    the grace period (running jobs finish with it). Prints each rotation with its request id."""
    kinds = ["mcp_api_key", "sp_secret"] if kind == "all" else [kind]
    _echo([_call("POST", "/api/v1/credentials/rotations", tenant, {"kind": k}) for k in kinds])


@credentials_app.command("status")
def credentials_status(
    request_id: str = typer.Argument(..., help="The rotation's request id."), tenant: str = TenantOpt
) -> None:
    """A rotation's progress: requested, stored (new credential in use, old ones retiring), done."""
    _echo(_call("GET", f"/api/v1/credentials/rotations/{request_id}", tenant))
