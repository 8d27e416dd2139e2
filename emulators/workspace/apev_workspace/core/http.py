"""The one adapter between Starlette and the API areas' plain functions.

An endpoint is `fn(call) -> dict`: it runs in a worker thread (the areas are synchronous and share one
lock), receives the authenticated principal and the parsed request, and raises `ApiError` for errors.
"""

from __future__ import annotations

import base64
import email.policy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from apev_workspace.core.exceptions import ApiError, InvalidParameterValue, MalformedRequest

if TYPE_CHECKING:
    from apev_workspace.identity.models import Principal
    from apev_workspace.server import Workspace


@dataclass
class Call:
    workspace: Workspace
    principal: Principal
    body: dict[str, Any]
    query: dict[str, str]
    path: dict[str, str] = field(default_factory=dict)
    repeated: dict[str, list[str]] = field(default_factory=dict)  # every value of each query parameter

    def query_list(self, name: str) -> list[str]:
        """All values of a repeated query parameter (`?k=a&k=b`, as the SDK sends lists in a DELETE)."""
        return list(self.repeated.get(name, []))

    def arg(self, name: str, default: Any = None) -> Any:
        """A parameter from the JSON body, else the query string (GET and DELETE carry them there)."""
        if name in self.body:
            return self.body[name]
        return self.query.get(name, default)

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        value = self.arg(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InvalidParameterValue(f"Invalid value for {name}: expected an integer, got {value!r}") from None

    def bool_arg(self, name: str, default: bool = False) -> bool:
        value = self.arg(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise InvalidParameterValue(f"Invalid value for {name}: expected true or false, got {value!r}")


Handler = Callable[[Call], Any]


def parse_multipart(content_type: str, raw: bytes) -> dict[str, Any]:
    """Form fields as strings and file parts as base64 (the SDK's `workspace.upload` posts multipart)."""
    message = BytesParser(policy=email.policy.HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        payload = payload if isinstance(payload, bytes) else b""
        if part.get_param("filename", header="content-disposition") is not None:
            fields[str(name)] = base64.b64encode(payload).decode()
        else:
            fields[str(name)] = payload.decode()
    return fields


def error_response(err: ApiError) -> Response:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def endpoint(fn: Handler) -> Callable[[Request], Any]:
    async def handle(request: Request) -> Response:
        workspace = request.app.state.workspace
        try:
            raw = await request.body()
            content_type = request.headers.get("content-type", "")
            if content_type.startswith("multipart/form-data"):
                body = parse_multipart(content_type, raw)
            else:
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    raise MalformedRequest("Request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise MalformedRequest("Request body must be a JSON object")
            principal = workspace.identity.authenticate(request.headers.get("authorization"))
            repeated: dict[str, list[str]] = {}
            for key, value in request.query_params.multi_items():
                repeated.setdefault(key, []).append(value)
            call = Call(workspace, principal, body, dict(request.query_params), dict(request.path_params), repeated)
            result = await run_in_threadpool(fn, call)
        except ApiError as err:
            return error_response(err)
        if isinstance(result, Response):
            return result
        return JSONResponse({} if result is None else result)

    handle.__name__ = getattr(fn, "__name__", "handle")
    return handle
