"""JWT bearer authentication for the services' HTTP APIs.

Tokens are issued by AgentProvision: `iss`, `aud`, `exp`, `sub`, a `tenant_id` claim and `roles` from
{admin, engineer, analyst, agent} (§8). Verification: HS256 with a shared key, or RS256 with a public key
or a JWKS URL. Unsigned (`alg: none`), expired, wrong-issuer, wrong-audience and wrong-key tokens are
refused with 401; a valid token lacking the role or tenant an endpoint needs gets 403.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from apev_contracts.naming import validate_tenant_id

Role = Literal["admin", "engineer", "analyst", "agent"]
ROLES: frozenset[str] = frozenset({"admin", "engineer", "analyst", "agent"})


class AuthError(Exception):
    """A request that cannot be let through; `status` is 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: Literal[401, 403], message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant_id: str
    roles: frozenset[str]
    claims: dict[str, Any]

    def require(self, *, tenant_id: str | None = None, roles: set[str] | None = None) -> None:
        if tenant_id is not None and tenant_id != self.tenant_id:
            raise AuthError(403, f"token is for tenant {self.tenant_id!r}, not {tenant_id!r}")
        if roles and not (self.roles & roles):
            raise AuthError(403, f"one of the roles {sorted(roles)} is required; token has {sorted(self.roles)}")


@dataclass
class JwtVerifier:
    issuer: str
    audience: str
    secret: str | None = None
    public_key: str | None = None
    jwks_url: str | None = None
    leeway_seconds: int = 30

    def __post_init__(self) -> None:
        if not (self.secret or self.public_key or self.jwks_url):
            raise ValueError("JWT verification needs a secret (HS256), a public key or a JWKS URL (RS256)")
        self._jwks = jwt.PyJWKClient(self.jwks_url) if self.jwks_url else None

    def _key_and_algorithms(self, token: str) -> tuple[Any, list[str]]:
        if self._jwks is not None:
            return self._jwks.get_signing_key_from_jwt(token).key, ["RS256", "ES256"]
        if self.public_key:
            return self.public_key, ["RS256", "ES256"]
        return self.secret, ["HS256"]

    def verify(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthError(401, "missing Authorization header (expected 'Bearer <token>')")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "Authorization header must be 'Bearer <token>'")
        token = token.strip()
        try:
            key, algorithms = self._key_and_algorithms(token)
            claims = jwt.decode(
                token,
                key=key,
                algorithms=algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError(401, f"token audience is not {self.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise AuthError(401, f"token issuer is not {self.issuer!r}") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError(401, f"token algorithm not accepted (accepted: {', '.join(algorithms)})") from None
        except jwt.InvalidSignatureError:
            raise AuthError(401, "token signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(401, f"token lacks the required claim {exc.claim!r}") from None
        except jwt.PyJWTError as exc:
            raise AuthError(401, f"invalid token: {exc}") from None
        tenant = claims.get("tenant_id")
        if not isinstance(tenant, str):
            raise AuthError(403, "token has no tenant_id claim")
        try:
            tenant = validate_tenant_id(tenant)
        except ValueError as exc:
            raise AuthError(403, f"token tenant_id is malformed: {exc}") from None
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
            raise AuthError(403, f"token roles must be a non-empty list drawn from {sorted(ROLES)}")
        return Principal(subject=str(claims["sub"]), tenant_id=tenant, roles=frozenset(roles), claims=claims)


def mint_token(
    secret: str,
    *,
    tenant_id: str,
    roles: list[str],
    subject: str = "dev-user",
    issuer: str = "agentprovision",
    audience: str = "apev",
    ttl_seconds: int = 3600,
) -> str:
    """A development token (HS256). Production tokens come from AgentProvision's identity provider."""
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": now,
        "exp": now + ttl_seconds,
        "tenant_id": validate_tenant_id(tenant_id),
        "roles": roles,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


Endpoint = Callable[[Request], Awaitable[Response]]


def auth_error_response(err: AuthError) -> JSONResponse:
    """401/403 with a body saying what was wrong (never echoing the token)."""
    body = {"error": "unauthenticated" if err.status == 401 else "forbidden", "detail": err.message}
    headers = {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{err.message}"'}
    return JSONResponse(body, status_code=err.status, headers=headers if err.status == 401 else None)


def requires(verifier: JwtVerifier, *, roles: set[str] | None = None) -> Callable[[Endpoint], Endpoint]:
    """Protect a Starlette endpoint: a verified token, one of `roles`, and the path's `tenant_id` if it has one.
    The endpoint finds the caller in `request.state.principal`."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            try:
                principal = verifier.verify(request.headers.get("authorization"))
                principal.require(tenant_id=request.path_params.get("tenant_id"), roles=roles)
            except AuthError as err:
                return auth_error_response(err)
            request.state.principal = principal
            return await endpoint(request)

        return guarded

    return decorate
