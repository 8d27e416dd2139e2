"""Vector Search in Databricks' wire shape (`/api/2.0/vector-search/...`, as databricks-sdk's
`vector_search_endpoints` and `vector_search_indexes` call it)."""

from __future__ import annotations

from typing import Any

from apev_workspace.core.exceptions import require
from apev_workspace.core.http import Call
from apev_workspace.vector_search.exceptions import InvalidParameterValue

PAGE = 100


def _page(items: list[dict[str, Any]], call: Call, field: str) -> dict[str, Any]:
    token = call.arg("page_token")
    start = int(token) if token and str(token).isdigit() else 0
    out: dict[str, Any] = {field: items[start : start + PAGE]}
    if start + PAGE < len(items):
        out["next_page_token"] = str(start + PAGE)
    return out


def create_endpoint(call: Call) -> dict[str, Any]:
    return call.workspace.vector_search.create_endpoint(call.principal, call.body)


def get_endpoint(call: Call) -> dict[str, Any]:
    return call.workspace.vector_search.get_endpoint(require(call.path, "name"))


def list_endpoints(call: Call) -> dict[str, Any]:
    return _page(call.workspace.vector_search.list_endpoints(), call, "endpoints")


def delete_endpoint(call: Call) -> dict[str, Any]:
    call.workspace.vector_search.delete_endpoint(call.principal, require(call.path, "name"))
    return {}


def create_index(call: Call) -> dict[str, Any]:
    return call.workspace.vector_search.create_index(call.principal, call.body)


def get_index(call: Call) -> dict[str, Any]:
    return call.workspace.vector_search.get_index(call.principal, require(call.path, "name"))


def list_indexes(call: Call) -> dict[str, Any]:
    endpoint = call.arg("endpoint_name")
    if not endpoint:
        raise InvalidParameterValue("Missing required field: endpoint_name")
    return _page(call.workspace.vector_search.list_indexes(call.principal, str(endpoint)), call, "vector_indexes")


def delete_index(call: Call) -> dict[str, Any]:
    call.workspace.vector_search.delete_index(call.principal, require(call.path, "name"))
    return {}


def sync_index(call: Call) -> dict[str, Any]:
    call.workspace.vector_search.sync(call.principal, require(call.path, "name"))
    return {}


def query_index(call: Call) -> dict[str, Any]:
    return call.workspace.vector_search.query(call.principal, require(call.path, "name"), call.body)


def upsert_data(call: Call) -> dict[str, Any]:
    inputs = call.body.get("inputs_json")
    if not isinstance(inputs, str):
        raise InvalidParameterValue("Missing required field: inputs_json (a JSON string of rows)")
    return call.workspace.vector_search.upsert(call.principal, require(call.path, "name"), inputs)


def delete_data(call: Call) -> dict[str, Any]:
    keys = call.body.get("primary_keys") or call.query_list("primary_keys")
    if isinstance(keys, str):
        keys = [keys]
    return call.workspace.vector_search.delete_data(call.principal, require(call.path, "name"), [str(k) for k in keys])
