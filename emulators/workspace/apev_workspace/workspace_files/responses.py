"""Workspace API endpoints in Databricks' wire shape."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from starlette.responses import Response

from apev_workspace.core.exceptions import InvalidParameterValue, require
from apev_workspace.core.http import Call
from apev_workspace.workspace_files.models import EXTENSIONS


def _info(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: obj[k] for k in ("path", "object_type", "object_id", "created_at", "modified_at") if k in obj
    }
    if "language" in obj:
        out["language"] = obj["language"]
    if "size" in obj:
        out["size"] = obj["size"]
    out["resource_id"] = str(obj["object_id"])
    return out


def import_(call: Call) -> None:
    try:
        content = base64.b64decode(call.body.get("content") or "", validate=True)
    except (binascii.Error, TypeError):
        raise InvalidParameterValue("content must be base64-encoded") from None
    call.workspace.files.import_(
        require(call.body, "path"),
        content,
        call.body.get("format") or "SOURCE",
        call.body.get("language"),
        call.bool_arg("overwrite"),
    )


def export(call: Call) -> Any:
    obj, content = call.workspace.files.read(require(call.query, "path"))
    if call.bool_arg("direct_download"):
        return Response(content, media_type="application/octet-stream")
    file_type = EXTENSIONS.get(obj.get("language", ""), "").lstrip(".") or obj["path"].rsplit(".", 1)[-1]
    return {"content": base64.b64encode(content).decode(), "file_type": file_type}


def get_status(call: Call) -> dict[str, Any]:
    return _info(call.workspace.files.get(require(call.query, "path")))


def list_objects(call: Call) -> dict[str, Any]:
    objects = call.workspace.files.list(require(call.query, "path"))
    return {"objects": [_info(o) for o in objects]} if objects else {}


def mkdirs(call: Call) -> None:
    call.workspace.files.mkdirs(require(call.body, "path"))


def delete(call: Call) -> None:
    call.workspace.files.delete(require(call.body, "path"), call.bool_arg("recursive"))
