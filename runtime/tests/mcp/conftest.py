"""The MCP client against the real simulator over HTTP (one simulator for this session)."""

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import stamina

from apev_mcpsim.testing import RunningMcp, mcp_sim  # noqa: F401  (the session fixture)
from apev_runtime.http import HostBreakers, RetryPolicy
from apev_runtime.mcp import McpClient

FAST = RetryPolicy(attempts=4, timeout=10, wait_initial=0.01, wait_max=0.05, wait_jitter=0.01)


@pytest.fixture(autouse=True)
def real_retries() -> Iterator[None]:
    before = stamina.is_testing()
    stamina.set_testing(False)
    yield
    stamina.set_testing(before)


@pytest.fixture(autouse=True)
def no_leftover_faults(mcp_sim: RunningMcp) -> Iterator[None]:  # noqa: F811
    yield
    mcp_sim.clear_faults()


@dataclass
class TenantFixture:
    code: str
    key: str
    client: McpClient


@pytest.fixture
async def make_client(mcp_sim: RunningMcp) -> AsyncIterator[Callable[..., McpClient]]:  # noqa: F811
    clients: list[McpClient] = []

    def make(api_key: str | None, **kwargs: Any) -> McpClient:
        kwargs.setdefault("retry", FAST)
        kwargs.setdefault("breakers", HostBreakers())
        client = McpClient(mcp_sim.base_url, api_key, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def tenant(mcp_sim: RunningMcp, make_client: Callable[..., McpClient]) -> TenantFixture:  # noqa: F811
    """A fresh tenant, its tenant-scoped key, and a client using that key (tenant from the key's prefix)."""
    code = mcp_sim.new_tenant()
    key = mcp_sim.tenant_key(code)
    return TenantFixture(code, key, make_client(key))
