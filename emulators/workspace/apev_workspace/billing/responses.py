"""Admin endpoints (outside `/api/`, like the fault switches): read the ledger and correct a past day."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from apev_workspace.billing.exceptions import InvalidParameterValue, PermissionDenied
from apev_workspace.billing.models import jsonable
from apev_workspace.core.exceptions import ApiError
from apev_workspace.core.http import error_response


def _admin(request: Request) -> None:
    principal = request.app.state.workspace.identity.authenticate(request.headers.get("authorization"))
    if not principal.is_admin:
        raise PermissionDenied("Only workspace admins may use the billing admin endpoint")


async def correct(request: Request) -> Response:
    """`POST /__admin/billing/corrections {"usage_date": "YYYY-MM-DD", "factor": "0.9", "sku_name"?,
    "billing_origin_product"?, "custom_tags"?}` writes RETRACTION and RESTATEMENT rows for that day."""
    try:
        _admin(request)
        try:
            spec = json.loads(await request.body() or b"{}")
        except ValueError:
            raise InvalidParameterValue("Body must be JSON") from None
        if not isinstance(spec, dict) or not spec.get("usage_date"):
            raise InvalidParameterValue("Missing required field: usage_date")
        rows = request.app.state.workspace.billing.correct(
            str(spec["usage_date"]),
            spec.get("factor", 1),
            sku_name=spec.get("sku_name"),
            billing_origin_product=spec.get("billing_origin_product"),
            custom_tags=spec.get("custom_tags"),
        )
    except ApiError as err:
        return error_response(err)
    return JSONResponse({"records_written": len(rows), "record_ids": [r["record_id"] for r in rows]})


async def tables(request: Request) -> Response:
    """`GET /__admin/billing/{usage|list_prices}`: the table as JSON (what the SQL engine serves)."""
    try:
        _admin(request)
        name = request.path_params["table"]
        found = request.app.state.workspace.billing.billing_tables()
        if name not in found:
            raise InvalidParameterValue(f"Unknown billing table {name!r}: use usage or list_prices")
    except ApiError as err:
        return error_response(err)
    return JSONResponse(jsonable(found[name]))
