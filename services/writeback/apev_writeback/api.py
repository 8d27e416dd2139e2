"""The writeback service's HTTP side: held insights, decisions and the audit trail (JWT, tenant-scoped), and
Slack's interaction requests (signed with the app's signing secret). Health and metrics are the runtime's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from apev_runtime.auth import AuthError, JwtVerifier, Principal, auth_error_response
from apev_writeback import slack
from apev_writeback.service import WritebackService
from apev_writeback.settings import Settings

log = structlog.get_logger("apev.writeback.api")

API = "/api/v1/writeback"
READ_ROLES = {"admin", "engineer", "analyst"}
DECIDE_ROLES = {"admin"}
STATES = {"held", "pending", "applied", "rejected", "conflict", "failed"}

Endpoint = Callable[[Request], Awaitable[Response]]


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def routes(service: WritebackService, settings: Settings, verifier: JwtVerifier | None) -> list[BaseRoute]:
    def guarded(roles: set[str]) -> Callable[[Callable[[Request, Principal], Awaitable[Response]]], Endpoint]:
        def decorate(fn: Callable[[Request, Principal], Awaitable[Response]]) -> Endpoint:
            async def endpoint(request: Request) -> Response:
                try:
                    if verifier is None:
                        raise AuthError(401, "this service has no JWT key configured (APEV_JWT_SECRET, ...)")
                    principal = verifier.verify(request.headers.get("authorization"))
                    principal.require(roles=roles)
                    return await fn(request, principal)
                except AuthError as err:
                    return auth_error_response(err)

            endpoint.__doc__ = fn.__doc__
            return endpoint

        return decorate

    @guarded(READ_ROLES)
    async def list_insights(request: Request, principal: Principal) -> Response:
        """The token's tenant's insights in one state (`?state=held` by default; `all` for every state)."""
        state = request.query_params.get("state", "held")
        if state != "all" and state not in STATES:
            return _error(400, "bad_request", f"state must be one of {sorted(STATES)} or 'all', got {state!r}")
        raw = request.query_params.get("limit", "100")
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            return _error(400, "bad_request", f"limit must be an integer from 1 to 1000, got {raw!r}")
        rows = await service.list_insights(principal.tenant_id, None if state == "all" else state, int(raw))
        return JSONResponse({"insights": rows, "count": len(rows)})

    @guarded(READ_ROLES)
    async def audit(request: Request, principal: Principal) -> Response:
        """One insight with every MCP attempt and every decision (policy, HTTP, Slack, refused ones too)."""
        trail = await service.audit_trail(principal.tenant_id, request.path_params["insight_id"])
        if trail is None:  # another tenant's insight is not found either: its existence is not disclosed
            return _error(404, "not_found", f"no insight {request.path_params['insight_id']!r} for this tenant")
        return JSONResponse(trail)

    def decision(kind: str) -> Endpoint:
        @guarded(DECIDE_ROLES)
        async def decide(request: Request, principal: Principal) -> Response:
            """Approve (write back, once) or reject a held insight; a later decision changes nothing."""
            insight_id = request.path_params["insight_id"]
            result = await service.decide(principal.tenant_id, insight_id, kind, principal.subject, "http")
            if result.status == "not_found":
                return _error(404, "not_found", result.detail or "")
            body = {
                "insight_id": insight_id,
                "changed": result.status == "taken",
                "state": result.state,
                "outcome": result.outcome,
                "detail": result.detail,
            }
            return JSONResponse(body, status_code=409 if result.status == "conflict" else 200)

        return decide

    async def slack_interactions(request: Request) -> Response:
        """Slack's `block_actions` (form field `payload`), signed; answered at once, decided in the background."""
        body = await request.body()
        try:
            secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
            slack.verify(request.headers, body, secret, settings.slack_timestamp_window_seconds)
            payload = slack.parse(body)
            answer = await service.slack_action(payload)
        except slack.InteractionRefused as exc:
            service.metrics.slack_refused.labels(exc.reason).inc()
            log.warning("slack_interaction_refused", reason=exc.reason, detail=exc.detail)
            if exc.reason in ("signature", "timestamp"):
                return _error(401, "unauthenticated", exc.detail)
            if exc.reason == "approver":  # shown to the clicking user only; the message stays as it is
                return JSONResponse({"response_type": "ephemeral", "replace_original": False, "text": exc.detail})
            return _error(400, "bad_request", exc.detail)
        return JSONResponse(answer)

    return [
        Route(f"{API}/insights", list_insights, methods=["GET"]),
        Route(f"{API}/insights/{{insight_id:str}}", audit, methods=["GET"]),
        Route(f"{API}/insights/{{insight_id:str}}/audit", audit, methods=["GET"]),
        Route(f"{API}/insights/{{insight_id:str}}/approve", decision("approve"), methods=["POST"]),
        Route(f"{API}/insights/{{insight_id:str}}/reject", decision("reject"), methods=["POST"]),
        Route("/slack/interactions", slack_interactions, methods=["POST"]),
    ]
