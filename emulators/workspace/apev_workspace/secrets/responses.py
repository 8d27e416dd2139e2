"""Secrets endpoints in Databricks' wire shape."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from apev_workspace.core.exceptions import InvalidParameterValue, ResourceDoesNotExist, require
from apev_workspace.core.http import Call


def create_scope(call: Call) -> None:
    call.workspace.secrets.create_scope(
        require(call.body, "scope"), call.principal, call.body.get("initial_manage_principal")
    )


def list_scopes(call: Call) -> dict[str, Any]:
    return {"scopes": call.workspace.secrets.list_scopes(call.principal)}


def delete_scope(call: Call) -> None:
    call.workspace.secrets.delete_scope(require(call.body, "scope"), call.principal)


def put(call: Call) -> None:
    if "string_value" in call.body and "bytes_value" in call.body:
        raise InvalidParameterValue("Only one of string_value and bytes_value may be set")
    if "bytes_value" in call.body:
        try:
            value = base64.b64decode(call.body["bytes_value"], validate=True)
        except (binascii.Error, TypeError):
            raise InvalidParameterValue("bytes_value must be base64") from None
    else:
        if call.body.get("string_value") is None:
            raise InvalidParameterValue("Missing required field: string_value (or bytes_value)")
        value = str(call.body["string_value"]).encode()
    call.workspace.secrets.put(require(call.body, "scope"), require(call.body, "key"), value, call.principal)


def delete(call: Call) -> None:
    call.workspace.secrets.delete(require(call.body, "scope"), require(call.body, "key"), call.principal)


def list_secrets(call: Call) -> dict[str, Any]:
    return {"secrets": call.workspace.secrets.list_secrets(require(call.query, "scope"), call.principal)}


def get(call: Call) -> dict[str, Any]:
    key = require(call.query, "key")
    return {"key": key, "value": call.workspace.secrets.get(require(call.query, "scope"), key, call.principal)}


def put_acl(call: Call) -> None:
    call.workspace.secrets.put_acl(
        require(call.body, "scope"), require(call.body, "principal"), require(call.body, "permission"), call.principal
    )


def delete_acl(call: Call) -> None:
    call.workspace.secrets.delete_acl(require(call.body, "scope"), require(call.body, "principal"), call.principal)


def list_acls(call: Call) -> dict[str, Any]:
    return {"items": call.workspace.secrets.acls(require(call.query, "scope"), call.principal)}


def get_acl(call: Call) -> dict[str, Any]:
    principal = require(call.query, "principal")
    for item in call.workspace.secrets.acls(require(call.query, "scope"), call.principal):
        if item["principal"] == principal:
            return dict(item)
    raise ResourceDoesNotExist(f"No ACL for {principal} on scope {call.query['scope']}")
