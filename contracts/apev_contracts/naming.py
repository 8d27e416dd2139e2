"""Tenant ids and every name derived from them (ARCHITECTURE §8), in one place.

A tenant id is a UUID or a slug `^[a-z0-9][a-z0-9-]{0,62}$`. Names derived from it replace `-` with `_`
(Unity Catalog and principal names stay plain identifiers); since a tenant id never contains `_`, the
mapping is one-to-one, so two tenants can never share a catalog or a group.
"""

from __future__ import annotations

import re
import uuid
from typing import Final, Literal, get_args

from apev_contracts.errors import ContractError

TENANT_SLUG_PATTERN: Final = r"^[a-z0-9][a-z0-9-]{0,62}$"
_TENANT_SLUG = re.compile(TENANT_SLUG_PATTERN)
_UUID_SHAPE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# JSON Schema pattern accepting what `validate_tenant_id` accepts (upper-case UUIDs are normalised to lower case)
TENANT_ID_JSON_PATTERN: Final = (
    r"^([a-z0-9][a-z0-9-]{0,62}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)

JobKind = Literal["ingest", "agent-deploy", "agent-insights", "adhoc"]
JOB_KINDS: Final[tuple[str, ...]] = get_args(JobKind)
JOB_KEY_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_JOB_KEY = re.compile(JOB_KEY_PATTERN)
JOB_NAME_PREFIX: Final = "ap"

Role = Literal["admin", "engineer", "analyst", "agent"]
ROLES: Final[tuple[str, ...]] = get_args(Role)
_ROLE_GROUP_SUFFIX: Final = {"admin": "admins", "engineer": "engineers", "analyst": "analysts"}

CATALOG_PREFIX: Final = "agentprovision_"


def tenant_id_problem(value: object) -> str | None:
    """Why `value` is not a tenant id, or None when it is one (before normalisation)."""
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    if _TENANT_SLUG.fullmatch(value) or _UUID_SHAPE.fullmatch(value):
        return None
    return f"{value[:80]!r} is not a tenant id (a UUID or a slug matching {TENANT_SLUG_PATTERN})"


def normalize_tenant_id(value: str) -> str:
    """Upper-case UUIDs become the canonical lower-case form; slugs are returned unchanged."""
    return str(uuid.UUID(value)) if _UUID_SHAPE.fullmatch(value) else value


def validate_tenant_id(value: str) -> str:
    """The tenant id in its canonical form, or `ContractError(field="tenant_id")` when it is malformed."""
    problem = tenant_id_problem(value)
    if problem:
        raise ContractError(problem, field="tenant_id")
    return normalize_tenant_id(value)


def _token(identifier: str) -> str:
    return identifier.replace("-", "_")


def catalog_name(tenant_id: str) -> str:
    """`agentprovision_<id with - as _>`: the tenant's Unity Catalog catalog."""
    return CATALOG_PREFIX + _token(validate_tenant_id(tenant_id))


def secret_scope(tenant_id: str) -> str:
    """`agentprovision_<t>`: the tenant's Databricks secret scope (holds `mcp_api_key`, `mcp_base_url`)."""
    return CATALOG_PREFIX + _token(validate_tenant_id(tenant_id))


KNOWLEDGE_CHUNKS_TABLE = "gold.knowledge_chunks"
KNOWLEDGE_INDEX = "gold.knowledge_chunks_index"


def knowledge_chunks_table(tenant_id: str) -> str:
    """`agentprovision_<t>.gold.knowledge_chunks`: the tenant's document chunks (built by the ingestion pipeline)."""
    return f"{catalog_name(tenant_id)}.{KNOWLEDGE_CHUNKS_TABLE}"


def knowledge_index(tenant_id: str) -> str:
    """`agentprovision_<t>.gold.knowledge_chunks_index`: the tenant's Vector Search index over its chunks. It lives in
    the tenant's catalog, so Unity Catalog grants on that catalog are the second wall around it."""
    return f"{catalog_name(tenant_id)}.{KNOWLEDGE_INDEX}"


def admins_group(tenant_id: str) -> str:
    return f"tenant_{_token(validate_tenant_id(tenant_id))}_admins"


def engineers_group(tenant_id: str) -> str:
    return f"tenant_{_token(validate_tenant_id(tenant_id))}_engineers"


def analysts_group(tenant_id: str) -> str:
    return f"tenant_{_token(validate_tenant_id(tenant_id))}_analysts"


def pipeline_principal(tenant_id: str) -> str:
    """Service principal the tenant's jobs run as."""
    return f"tenant_{_token(validate_tenant_id(tenant_id))}_pipeline"


def reader_principal(tenant_id: str) -> str:
    """Service principal serving's SQL runs as on an analyst's behalf."""
    return f"tenant_{_token(validate_tenant_id(tenant_id))}_reader"


def validate_agent_id(value: str) -> str:
    """Agent ids follow the tenant id rule (UUID or slug); `ContractError(field="agent_id")` otherwise."""
    problem = tenant_id_problem(value)
    if problem:
        raise ContractError(problem.replace("tenant id", "agent id"), field="agent_id")
    return normalize_tenant_id(value)


def agent_principal(agent_id: str) -> str:
    """`agent_<agent id>`: the service principal of one agent."""
    return f"agent_{_token(validate_agent_id(agent_id))}"


def principal_for_role(tenant_id: str, role: str, *, agent_id: str | None = None) -> str:
    """The Databricks principal a JWT role maps to: the tenant's group, or the agent's principal for `agent`."""
    if role == "agent":
        if agent_id is None:
            raise ContractError("role 'agent' maps to the agent's own principal: pass agent_id", field="agent_id")
        validate_tenant_id(tenant_id)
        return agent_principal(agent_id)
    suffix = _ROLE_GROUP_SUFFIX.get(role)
    if suffix is None:
        raise ContractError(f"{role!r} is not a role; expected one of {list(ROLES)}", field="role")
    return f"tenant_{_token(validate_tenant_id(tenant_id))}_{suffix}"


def role_groups(tenant_id: str) -> dict[str, str]:
    """JWT role -> the tenant's group, for the three roles that map to a group (`agent` maps per agent)."""
    return {role: principal_for_role(tenant_id, role) for role in _ROLE_GROUP_SUFFIX}


def validate_job_key(key: str) -> str:
    if not isinstance(key, str) or not _JOB_KEY.fullmatch(key):
        raise ContractError(f"{key!r} does not match {JOB_KEY_PATTERN}", field="key")
    return key


def job_name(tenant_id: str, kind: str, key: str) -> str:
    """The stable Databricks job name `ap:<tenant>:<kind>:<key>` (the jobs service finds jobs by it)."""
    if kind not in JOB_KINDS:
        raise ContractError(f"{kind!r} is not a job kind; expected one of {list(JOB_KINDS)}", field="kind")
    return f"{JOB_NAME_PREFIX}:{validate_tenant_id(tenant_id)}:{kind}:{validate_job_key(key)}"


def parse_job_name(name: str) -> tuple[str, str, str]:
    """(tenant id, kind, key) of a name made by `job_name`; `ContractError` for any other name."""
    parts = name.split(":")
    if len(parts) != 4 or parts[0] != JOB_NAME_PREFIX:
        raise ContractError(f"{name[:200]!r} is not of the form ap:<tenant>:<kind>:<key>", field="job_name")
    _, tenant, kind, key = parts
    if job_name(tenant, kind, key) != name:
        raise ContractError(f"{name[:200]!r} is not in canonical form", field="job_name")
    return tenant, kind, key


def job_tags(
    tenant_id: str,
    kind: str,
    *,
    datasource_id: str | None = None,
    agent_id: str | None = None,
    model_version: str | None = None,
) -> dict[str, str]:
    """The tags §8 puts on every job (they also carry cost attribution to the tenant)."""
    if kind not in JOB_KINDS:
        raise ContractError(f"{kind!r} is not a job kind; expected one of {list(JOB_KINDS)}", field="kind")
    tags = {"ap_tenant_id": validate_tenant_id(tenant_id), "ap_kind": kind}
    if datasource_id is not None:
        tags["ap_datasource_id"] = datasource_id
    if agent_id is not None:
        tags["ap_agent_id"] = agent_id
    if model_version is not None:
        tags["ap_model_version"] = model_version
    return tags
