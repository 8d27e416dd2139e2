"""Unity Catalog endpoints in Databricks' wire shape (`/api/2.1/unity-catalog/...`)."""

from __future__ import annotations

from typing import Any

from apev_workspace.core.exceptions import require
from apev_workspace.core.http import Call


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None and k != "id"} | (
        {"id": obj["id"]} if obj.get("securable_type") == "CATALOG" else {}
    )


def create_catalog(call: Call) -> Any:
    uc = call.workspace.uc
    return _public(uc.create_catalog(call.principal, require(call.body, "name"), call.body))


def list_catalogs(call: Call) -> Any:
    return {"catalogs": [_public(c) for c in call.workspace.uc.list_catalogs(call.principal)]}


def get_catalog(call: Call) -> Any:
    return _public(call.workspace.uc.get_catalog(call.principal, call.path["name"]))


def update_catalog(call: Call) -> Any:
    return _public(call.workspace.uc.update_catalog(call.principal, call.path["name"], call.body))


def delete_catalog(call: Call) -> None:
    call.workspace.uc.delete_catalog(call.principal, call.path["name"], call.bool_arg("force"))


def create_schema(call: Call) -> Any:
    uc = call.workspace.uc
    return _public(
        uc.create_schema(call.principal, require(call.body, "catalog_name"), require(call.body, "name"), call.body)
    )


def list_schemas(call: Call) -> Any:
    schemas = call.workspace.uc.list_schemas(call.principal, require(call.query, "catalog_name"))
    return {"schemas": [_public(s) for s in schemas]}


def get_schema(call: Call) -> Any:
    return _public(call.workspace.uc.get_schema(call.principal, call.path["full_name"]))


def update_schema(call: Call) -> Any:
    return _public(call.workspace.uc.update_schema(call.principal, call.path["full_name"], call.body))


def delete_schema(call: Call) -> None:
    call.workspace.uc.delete_schema(call.principal, call.path["full_name"], call.bool_arg("force"))


def create_volume(call: Call) -> Any:
    for field in ("catalog_name", "schema_name", "name"):
        require(call.body, field)
    return _public(call.workspace.uc.create_volume(call.principal, call.body))


def list_volumes(call: Call) -> Any:
    uc = call.workspace.uc
    volumes = uc.list_volumes(call.principal, require(call.query, "catalog_name"), require(call.query, "schema_name"))
    return {"volumes": [_public(v) for v in volumes]}


def get_volume(call: Call) -> Any:
    return _public(call.workspace.uc.get_volume(call.principal, call.path["name"]))


def update_volume(call: Call) -> Any:
    return _public(call.workspace.uc.update_volume(call.principal, call.path["name"], call.body))


def delete_volume(call: Call) -> None:
    call.workspace.uc.delete_volume(call.principal, call.path["name"])


def list_tables(call: Call) -> Any:
    uc = call.workspace.uc
    tables = uc.list_tables(call.principal, require(call.query, "catalog_name"), require(call.query, "schema_name"))
    return {"tables": [_public(t) for t in tables]}


def get_table(call: Call) -> Any:
    return _public(call.workspace.uc.get_table(call.principal, call.path["full_name"]))


def table_exists(call: Call) -> Any:
    from apev_workspace.unity_catalog.exceptions import ResourceDoesNotExist

    try:
        call.workspace.uc.get_table(call.principal, call.path["full_name"])
    except ResourceDoesNotExist:
        return {"table_exists": False}
    return {"table_exists": True}


def delete_table(call: Call) -> None:
    call.workspace.uc.delete_table(call.principal, call.path["full_name"])


def get_permissions(call: Call) -> Any:
    uc = call.workspace.uc
    items = uc.get_grants(
        call.principal, call.path["securable_type"], call.path["full_name"], call.query.get("principal")
    )
    return {"privilege_assignments": items}


def update_permissions(call: Call) -> Any:
    uc = call.workspace.uc
    items = uc.update_grants(
        call.principal, call.path["securable_type"], call.path["full_name"], call.body.get("changes") or []
    )
    return {} if call.bool_arg("omit_permissions_in_response") else {"privilege_assignments": items}


def effective_permissions(call: Call) -> Any:
    uc = call.workspace.uc
    items = uc.effective(
        call.principal, call.path["securable_type"], call.path["full_name"], call.query.get("principal")
    )
    return {"privilege_assignments": items}
