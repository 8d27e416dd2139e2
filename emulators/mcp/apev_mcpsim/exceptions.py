"""Errors in the MCP server's own shape: ``{"detail": "..."}`` (plus extra keys where the real server adds them)."""

from __future__ import annotations

from typing import Any


class McpSimError(Exception):
    def __init__(self, status: int, detail: Any, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, **self.extra}


def not_found(what: str) -> McpSimError:
    return McpSimError(404, f"{what} not found")


def conflict(detail: str) -> McpSimError:
    return McpSimError(409, detail)


def invalid(detail: str) -> McpSimError:
    return McpSimError(422, detail)
