"""Routes of the identity area."""

from __future__ import annotations

from starlette.routing import Route

from apev_workspace.core.http import endpoint
from apev_workspace.identity import responses as r

SCIM = "/api/2.0/preview/scim/v2"
SP_SECRETS = "/api/2.0/accounts/servicePrincipals/{service_principal_id}/credentials/secrets"


def routes() -> list[Route]:
    table = [Route(f"{SCIM}/Me", endpoint(r.me), methods=["GET"])]
    for resource in ("Users", "ServicePrincipals", "Groups"):
        table += [
            Route(f"{SCIM}/{resource}", endpoint(r.scim_list(resource)), methods=["GET"]),
            Route(f"{SCIM}/{resource}", endpoint(r.scim_create(resource)), methods=["POST"]),
            Route(f"{SCIM}/{resource}/{{id}}", endpoint(r.scim_get(resource)), methods=["GET"]),
            Route(f"{SCIM}/{resource}/{{id}}", endpoint(r.scim_delete(resource)), methods=["DELETE"]),
        ]
    table += [
        Route(f"{SCIM}/Groups/{{id}}", endpoint(r.group_patch), methods=["PATCH"]),
        Route("/api/2.0/token/create", endpoint(r.token_create), methods=["POST"]),
        Route("/api/2.0/token/list", endpoint(r.token_list), methods=["GET"]),
        Route("/api/2.0/token/delete", endpoint(r.token_delete), methods=["POST"]),
        Route("/api/2.0/token-management/on-behalf-of/tokens", endpoint(r.obo_token_create), methods=["POST"]),
        Route("/api/2.0/token-management/tokens", endpoint(r.managed_token_list), methods=["GET"]),
        Route("/api/2.0/token-management/tokens/{token_id}", endpoint(r.managed_token_get), methods=["GET"]),
        Route("/api/2.0/token-management/tokens/{token_id}", endpoint(r.managed_token_delete), methods=["DELETE"]),
        # Service principal OAuth secrets: the workspace-level proxy (`w.service_principal_secrets_proxy`).
        Route(SP_SECRETS, endpoint(r.sp_secret_create), methods=["POST"]),
        Route(SP_SECRETS, endpoint(r.sp_secret_list), methods=["GET"]),
        Route(SP_SECRETS + "/{secret_id}", endpoint(r.sp_secret_delete), methods=["DELETE"]),
        # OAuth M2M: discovery and the token endpoint (no bearer token: the client authenticates itself).
        Route("/oidc/.well-known/oauth-authorization-server", r.oauth_metadata, methods=["GET"]),
        Route("/oidc/v1/token", r.oauth_token, methods=["POST"]),
    ]
    return table
