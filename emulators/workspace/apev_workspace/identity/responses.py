"""SCIM and token endpoints in Databricks' wire shape."""

from __future__ import annotations

from typing import Any

from apev_workspace.core.exceptions import InvalidParameterValue, PermissionDenied, ResourceDoesNotExist, require
from apev_workspace.core.http import Call
from apev_workspace.identity.exceptions import ScimNotFound
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
