"""SCIM and token endpoints in Databricks' wire shape."""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from apev_workspace.core.exceptions import (
    ApiError,
    InvalidParameterValue,
    PermissionDenied,
    ResourceDoesNotExist,
    require,
)
from apev_workspace.core.http import Call, error_response
from apev_workspace.identity.exceptions import InvalidClient, InvalidRequest, ScimNotFound, UnsupportedGrantType
from apev_workspace.identity.models import Identity, matches, parse_filter, require_admin

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
SP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServicePrincipal"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def _group_refs(identity: Identity, member_id: str) -> list[dict[str, Any]]:
    return [
        {"value": g["id"], "display": g["displayName"], "type": "direct", "$ref": f"Groups/{g['id']}"}
        for g in identity.direct_groups_of(member_id)
    ]


def render_user(identity: Identity, user: dict[str, Any]) -> dict[str, Any]:
    return {
        "schemas": [USER_SCHEMA],
        "id": user["id"],
        "userName": user["userName"],
        "displayName": user["displayName"],
        "active": user.get("active", True),
        "emails": [{"value": user["userName"], "type": "work", "primary": True}],
        "groups": _group_refs(identity, user["id"]),
        "entitlements": user.get("entitlements", []),
    }


def render_sp(identity: Identity, sp: dict[str, Any]) -> dict[str, Any]:
    return {
        "schemas": [SP_SCHEMA],
        "id": sp["id"],
        "applicationId": sp["applicationId"],
        "displayName": sp["displayName"],
        "active": sp.get("active", True),
        "groups": _group_refs(identity, sp["id"]),
        "entitlements": sp.get("entitlements", []),
    }


def render_group(identity: Identity, group: dict[str, Any]) -> dict[str, Any]:
    members = []
    for member in group["members"]:
        if member in identity.users:
            members.append(
                {"value": member, "display": identity.users[member]["displayName"], "$ref": f"Users/{member}"}
            )
        elif member in identity.sps:
            members.append(
                {"value": member, "display": identity.sps[member]["displayName"], "$ref": f"ServicePrincipals/{member}"}
            )
        elif member in identity.groups:
            members.append(
                {"value": member, "display": identity.groups[member]["displayName"], "$ref": f"Groups/{member}"}
            )
    return {
        "schemas": [GROUP_SCHEMA],
        "id": group["id"],
        "displayName": group["displayName"],
        "members": members,
        "groups": _group_refs(identity, group["id"]),
        "entitlements": group.get("entitlements", []),
    }


_TABLES = {
    "Users": ("scim_user", "users", render_user),
    "ServicePrincipals": ("scim_sp", "sps", render_sp),
    "Groups": ("scim_group", "groups", render_group),
}


def _list_response(resources: list[dict[str, Any]], call: Call) -> dict[str, Any]:
    start = max(1, call.int_arg("startIndex", 1) or 1)
    count = call.int_arg("count", 10000) or 10000
    page = resources[start - 1 : start - 1 + count]
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": len(resources),
        "startIndex": start,
        "itemsPerPage": len(page),
        "Resources": page,
    }


def scim_list(resource: str):  # type: ignore[no-untyped-def]
    _, attr, render = _TABLES[resource]

    def handler(call: Call) -> dict[str, Any]:
        identity = call.workspace.identity
        terms = parse_filter(call.query.get("filter"))
        with call.workspace.lock:
            table = getattr(identity, attr)
            rendered = [render(identity, obj) for obj in sorted(table.values(), key=lambda o: o["id"])]
        return _list_response([r for r in rendered if matches(r, terms)], call)

    return handler


def scim_get(resource: str):  # type: ignore[no-untyped-def]
    _, attr, render = _TABLES[resource]

    def handler(call: Call) -> dict[str, Any]:
        identity = call.workspace.identity
        with call.workspace.lock:
            obj = getattr(identity, attr).get(call.path["id"])
            if obj is None:
                raise ScimNotFound(f"{resource[:-1]} with id {call.path['id']} not found.")
            return render(identity, obj)

    return handler


def scim_create(resource: str):  # type: ignore[no-untyped-def]
    _, _, render = _TABLES[resource]

    def handler(call: Call) -> dict[str, Any]:
        identity = call.workspace.identity
        create = {
            "Users": identity.create_user,
            "ServicePrincipals": identity.create_sp,
            "Groups": identity.create_group,
        }[resource]
        obj = create(call.body, call.principal)
        with call.workspace.lock:
            return render(identity, obj)

    return handler


def scim_delete(resource: str):  # type: ignore[no-untyped-def]
    kind, _, _ = _TABLES[resource]

    def handler(call: Call) -> None:
        call.workspace.identity.delete(kind, call.path["id"], call.principal)

    return handler


def group_patch(call: Call) -> None:
    call.workspace.identity.patch_group(call.path["id"], call.body.get("Operations") or [], call.principal)


def me(call: Call) -> dict[str, Any]:
    identity = call.workspace.identity
    p = call.principal
    with call.workspace.lock:
        if p.kind == "user":
            return render_user(identity, identity.users[p.id])
        sp = identity.sps[p.id]
        body = render_sp(identity, sp)
        body.update({"schemas": [USER_SCHEMA], "userName": sp["applicationId"]})
        return body


# ---------------------------------------------------------------------- tokens
def _public(info: dict[str, Any]) -> dict[str, Any]:
    return {k: info[k] for k in ("token_id", "creation_time", "expiry_time", "comment")}


def _managed(call: Call, info: dict[str, Any]) -> dict[str, Any]:
    identity = call.workspace.identity
    owner = identity.principal_for(info["owner_kind"], info["owner_id"])
    return {
        **_public(info),
        "owner_id": int(info["owner_id"]),
        "created_by_id": int(info["created_by_id"]),
        "created_by_username": info["created_by_username"],
        "workspace_id": call.workspace.workspace_id,
        "owner_name": owner.name,
    }


def token_create(call: Call) -> dict[str, Any]:
    lifetime = call.int_arg("lifetime_seconds")
    value, info = call.workspace.identity.create_token(
        call.principal, lifetime_seconds=lifetime, comment=call.body.get("comment")
    )
    return {"token_value": value, "token_info": _public(info)}


def token_list(call: Call) -> dict[str, Any]:
    return {"token_infos": [_public(t) for t in call.workspace.identity.tokens_of(call.principal)]}


def token_delete(call: Call) -> None:
    token_id = require(call.body, "token_id")
    identity = call.workspace.identity
    with call.workspace.lock:
        info = identity.tokens.get(token_id)
        if info is None or info["owner_id"] != call.principal.id:
            raise ResourceDoesNotExist(f"Token with id {token_id} does not exist")
    identity.revoke_token(token_id)


def obo_token_create(call: Call) -> dict[str, Any]:
    require_admin(call.principal)
    app_id = require(call.body, "application_id")
    identity = call.workspace.identity
    owner = identity.principal_by_name(app_id)
    if owner is None or owner.kind != "service_principal":
        raise InvalidParameterValue(f"Service principal with application id {app_id} does not exist")
    value, info = identity.create_token(
        owner,
        lifetime_seconds=call.int_arg("lifetime_seconds"),
        comment=call.body.get("comment"),
        created_by=call.principal,
    )
    with call.workspace.lock:
        return {"token_value": value, "token_info": _managed(call, info)}


def managed_token_list(call: Call) -> dict[str, Any]:
    require_admin(call.principal)
    with call.workspace.lock:
        infos = [t for t in call.workspace.identity.tokens.values() if not t.get("internal")]
        return {"token_infos": [_managed(call, t) for t in infos]}


def managed_token_get(call: Call) -> dict[str, Any]:
    require_admin(call.principal)
    with call.workspace.lock:
        info = call.workspace.identity.tokens.get(call.path["token_id"])
        if info is None:
            raise ResourceDoesNotExist(f"Token with id {call.path['token_id']} does not exist")
        return {"token_info": _managed(call, info)}


def managed_token_delete(call: Call) -> None:
    if not call.principal.is_admin:
        raise PermissionDenied("Only workspace admins can delete other principals' tokens")
    with call.workspace.lock:
        if call.path["token_id"] not in call.workspace.identity.tokens:
            raise ResourceDoesNotExist(f"Token with id {call.path['token_id']} does not exist")
    call.workspace.identity.revoke_token(call.path["token_id"])


# ---------------------------------------------------------------------- OAuth secrets and M2M
def sp_secret_create(call: Call) -> dict[str, Any]:
    scopes = call.body.get("scopes")
    return call.workspace.oauth.create(
        call.path["service_principal_id"], call.body.get("lifetime"), scopes if scopes else None, call.principal
    )


def sp_secret_list(call: Call) -> dict[str, Any]:
    return {"secrets": call.workspace.oauth.list(call.path["service_principal_id"], call.principal)}


def sp_secret_delete(call: Call) -> None:
    call.workspace.oauth.delete(call.path["service_principal_id"], call.path["secret_id"], call.principal)


async def oauth_metadata(request: Request) -> Response:
    """`GET /oidc/.well-known/oauth-authorization-server`: what the SDK reads to find the token endpoint."""
    base = request.app.state.workspace.settings.url + "/oidc"
    return JSONResponse(
        {
            "issuer": base,
            "authorization_endpoint": f"{base}/v1/authorize",
            "token_endpoint": f"{base}/v1/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["all-apis"],
            "response_types_supported": ["code"],
        }
    )


def _client_from_basic(header: str) -> tuple[str, str] | None:
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("Client authentication failed") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClient("Client authentication failed")
    return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)


async def oauth_token(request: Request) -> Response:
    """`POST /oidc/v1/token`, form-encoded `grant_type=client_credentials` (client by basic auth or form)."""
    workspace = request.app.state.workspace
    try:
        form = dict(urllib.parse.parse_qsl((await request.body()).decode(errors="replace")))
        grant = form.get("grant_type")
        if not grant:
            raise InvalidRequest("grant_type is required")
        if grant != "client_credentials":
            raise UnsupportedGrantType(f"Unsupported grant_type: {grant}")
        client = _client_from_basic(request.headers.get("authorization", ""))
        if client is None:
            client = (form.get("client_id", ""), form.get("client_secret", ""))
        answer = workspace.oauth.client_credentials(client[0], client[1], form.get("scope"))
    except ApiError as err:
        return error_response(err)
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})
