"""Notification destination endpoints in the wire shape of `/api/2.0/notification-destinations`."""

from __future__ import annotations

import base64
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from apev_workspace.core.exceptions import ApiError
from apev_workspace.core.http import Call, error_response
from apev_workspace.notifications.exceptions import InvalidParameterValue
from apev_workspace.notifications.models import render

MAX_PAGE = 200


def create(call: Call) -> dict[str, Any]:
    item = call.workspace.notifications.create(dict(call.body), call.principal)
    return render(item, with_config=True)


def get(call: Call) -> dict[str, Any]:
    item = call.workspace.notifications.get(call.path["id"])
    return render(item, with_config=call.principal.is_admin)


def update(call: Call) -> dict[str, Any]:
    item = call.workspace.notifications.update(call.path["id"], dict(call.body), call.principal)
    return render(item, with_config=True)


def delete(call: Call) -> dict[str, Any]:
    call.workspace.notifications.delete(call.path["id"], call.principal)
    return {}


def list_destinations(call: Call) -> dict[str, Any]:
    size = call.int_arg("page_size", MAX_PAGE) or MAX_PAGE
    if not 0 < size <= MAX_PAGE:
        raise InvalidParameterValue(f"page_size must be between 1 and {MAX_PAGE}, got {size}")
    items = call.workspace.notifications.list_all()
    offset = 0
    token = call.query.get("page_token")
    if token:
        try:
            offset = int(json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["o"])
        except (ValueError, KeyError, TypeError):
            raise InvalidParameterValue(f"Invalid page_token {token!r}") from None
    page = items[offset : offset + size]
    out: dict[str, Any] = {"results": [render(i, with_config=False) for i in page]}
    if offset + size < len(items):
        out["next_page_token"] = base64.urlsafe_b64encode(json.dumps({"o": offset + size}).encode()).decode()
    return out


async def admin_switch(request: Request) -> Response:
    """`GET|POST /__admin/notifications` `{"enabled": bool}`: turn every webhook notification off or on."""
    ws = request.app.state.workspace
    try:
        principal = ws.identity.authenticate(request.headers.get("authorization"))
        if not principal.is_admin:
            raise ApiError("Only workspace admins may switch notifications", error_code="PERMISSION_DENIED", status=403)
        if request.method == "POST":
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                raise InvalidParameterValue("Body must be JSON") from None
            if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
                raise InvalidParameterValue('Body must be {"enabled": true|false}')
            ws.notifier.enabled = body["enabled"]
    except ApiError as err:
        return error_response(err)
    return JSONResponse({"enabled": ws.notifier.enabled, "suppressed": ws.notifier.suppressed})
