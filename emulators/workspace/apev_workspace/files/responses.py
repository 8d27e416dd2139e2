"""Files API endpoints. Bodies are raw bytes, not JSON, so these are Starlette handlers of their own."""

from __future__ import annotations

import email.utils
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from apev_workspace.core.exceptions import ApiError
from apev_workspace.core.http import error_response

if TYPE_CHECKING:
    from apev_workspace.server import Workspace


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _headers(stat_size: int, mtime: float) -> dict[str, str]:
    return {
        "content-length": str(stat_size),
        "content-type": "application/octet-stream",
        "last-modified": email.utils.formatdate(mtime, usegmt=True),
    }


def _bytes_range(header: str | None, size: int) -> tuple[int, int] | None:
    if not header or not header.startswith("bytes="):
        return None
    first, _, last = header[6:].split(",")[0].partition("-")
    start = int(first) if first else max(0, size - int(last))
    end = min(size - 1, int(last)) if first and last else size - 1
    return start, end


def handler(fn: Callable[[Workspace, Any, Request, bytes], Response]) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        workspace: Workspace = request.app.state.workspace
        try:
            raw = await request.body()
            who = workspace.identity.authenticate(request.headers.get("authorization"))
            return await run_in_threadpool(fn, workspace, who, request, raw)
        except ApiError as err:
            if request.method == "HEAD":
                return Response(status_code=err.status)
            return error_response(err)

    return handle


def _path(request: Request) -> str:
    return "/" + str(request.path_params["path"])


def upload(ws: Workspace, who: Any, request: Request, raw: bytes) -> Response:
    ws.volume_files.upload(who, _path(request), raw, _flag(request.query_params.get("overwrite")))
    return Response(status_code=204)


def download(ws: Workspace, who: Any, request: Request, raw: bytes) -> Response:
    disk = ws.volume_files.file(who, _path(request))
    data, stat = disk.read_bytes(), disk.stat()
    headers = _headers(len(data), stat.st_mtime)
    span = _bytes_range(request.headers.get("range"), len(data))
    if span is not None and len(data):
        start, end = span
        part = data[start : end + 1]
        headers |= {"content-length": str(len(part)), "content-range": f"bytes {start}-{end}/{len(data)}"}
        return Response(part, status_code=206, headers=headers)
    return Response(data, headers=headers)


def head_file(ws: Workspace, who: Any, request: Request, raw: bytes) -> Response:
    stat = ws.volume_files.file(who, _path(request)).stat()
    return Response(status_code=200, headers=_headers(stat.st_size, stat.st_mtime))


def delete_file(ws: Workspace, who: Any, request: Request, raw: bytes) -> Response:
    ws.volume_files.delete(who, _path(request))
    return Response(status_code=204)


def create_directory(ws: Workspace, who: Any, request: Request, raw: bytes) -> Response:
    ws.volume_files.mkdirs(who, _path(request))
    return Response(status_code=204)


def list_directory(ws: Workspace, who: Any, request: Request, raw: bytes) -> Response:
    items = ws.volume_files.list(who, _path(request))
    size = int(request.query_params.get("page_size") or 1000)
    start = int(request.query_params.get("page_token") or 0)
    body: dict[str, Any] = {"contents": items[start : start + size]}
    if start + size < len(items):
        body["next_page_token"] = str(start + size)
    return JSONResponse(json.loads(json.dumps(body)))


def head_directory(ws: Workspace, who: Any, request: Request, raw: bytes) -> Response:
    ws.volume_files.directory(who, _path(request))
    return Response(status_code=200)


def delete_directory(ws: Workspace, who: Any, request: Request, raw: bytes) -> Response:
    ws.volume_files.rmdir(who, _path(request))
    return Response(status_code=204)
