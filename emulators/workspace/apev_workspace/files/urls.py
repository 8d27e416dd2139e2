"""Routes of the Files API on volumes."""

from __future__ import annotations

from starlette.routing import Route

from apev_workspace.files import responses as r

FILES = "/api/2.0/fs/files/{path:path}"
DIRECTORIES = "/api/2.0/fs/directories/{path:path}"


def routes() -> list[Route]:
    return [
        Route(FILES, r.handler(r.upload), methods=["PUT"]),
        Route(FILES, r.handler(r.head_file), methods=["HEAD"]),
        Route(FILES, r.handler(r.download), methods=["GET"]),
        Route(FILES, r.handler(r.delete_file), methods=["DELETE"]),
        Route(DIRECTORIES, r.handler(r.create_directory), methods=["PUT"]),
        Route(DIRECTORIES, r.handler(r.head_directory), methods=["HEAD"]),
        Route(DIRECTORIES, r.handler(r.list_directory), methods=["GET"]),
        Route(DIRECTORIES, r.handler(r.delete_directory), methods=["DELETE"]),
    ]
