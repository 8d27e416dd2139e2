import pytest

from apev_runtime.mcp import (
    IntegrationRegistration,
    McpAuthError,
    McpNotFoundError,
    McpTenantInactiveError,
    McpTenantNotFoundError,
    McpTenantRequiredError,
    NewTenant,
)


async def test_missing_tenant(mcp_sim, make_client) -> None:
    with pytest.raises(McpTenantRequiredError) as err:
        await make_client(mcp_sim.admin_key).integration_status()
    assert err.value.status == 400
    assert err.value.detail == "Tenant identification required"


async def test_unknown_tenant(mcp_sim, make_client) -> None:
    with pytest.raises(McpTenantNotFoundError) as err:
        await make_client(mcp_sim.admin_key, tenant="nobody").integration_status()
    assert err.value.status == 404


async def test_inactive_tenant(mcp_sim, make_client) -> None:
    with pytest.raises(McpTenantInactiveError) as err:
        await make_client(mcp_sim.admin_key, tenant="dormant").integration_status()
    assert err.value.status == 403


async def test_missing_key(make_client) -> None:
    with pytest.raises(McpAuthError) as err:
        await make_client(None, tenant="acme").integration_status()
    assert (err.value.status, err.value.detail) == (401, "Not authenticated")


async def test_bad_key(make_client) -> None:
    with pytest.raises(McpAuthError) as err:
        await make_client("acme_sk_forged", tenant="acme").integration_status()
    assert (err.value.status, err.value.detail) == (403, "Invalid or expired API key")


async def test_admin_key_works_for_every_tenant(mcp_sim, make_client) -> None:
    for code in ("default", "acme"):
        assert await make_client(mcp_sim.admin_key, tenant=code).integration_status() == []


async def test_tenant_scoped_key_cannot_read_another_tenant(tenant, mcp_sim, make_client) -> None:
    other = mcp_sim.new_tenant("other")
    other_admin = make_client(mcp_sim.admin_key, tenant=other)
    reg = await other_admin.register_integration(
        IntegrationRegistration(integration_type="adp", datasource_id="ds-secret")
    )
    with pytest.raises(McpAuthError):  # naming the other tenant with my key
        await make_client(tenant.key, tenant=other).fetch_page(reg.integration_id, "employees")
    with pytest.raises(McpNotFoundError):  # the other tenant's integration id under my own tenant
        await tenant.client.fetch_page(reg.integration_id, "employees")
    with pytest.raises(McpAuthError):  # a tenant key cannot mint keys
        await tenant.client.create_api_key(tenant.code)


async def test_tenants_and_keys_lifecycle(mcp_sim, make_client) -> None:
    anonymous = make_client(None)
    codes = {t.tenant_code for t in await anonymous.list_tenants()}
    assert {"default", "acme", "dormant"} <= codes
    created = await anonymous.create_tenant(NewTenant(tenant_code="smile-co", tenant_name="Smile Co"))
    assert (await anonymous.get_tenant("smile-co")) == created
    key = await make_client(mcp_sim.admin_key).create_api_key("smile-co")
    assert key.api_key.startswith("smile-co_sk_")
    scoped = make_client(key.api_key)
    first = await scoped.register_integration(IntegrationRegistration(integration_type="adp", datasource_id="d1"))
    again = await scoped.register_integration(IntegrationRegistration(integration_type="adp", datasource_id="d1"))
    assert again == first
    [status] = await scoped.integration_status("adp")
    assert status.extra_data["integration_id"] == first.integration_id
