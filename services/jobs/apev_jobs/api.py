"""The jobs service's HTTP side. Its endpoints arrive with its issue; health and metrics are the runtime's."""

from __future__ import annotations

from starlette.routing import BaseRoute


def routes() -> list[BaseRoute]:
    return []
