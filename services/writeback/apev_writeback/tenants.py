"""Tenant settings (ARCHITECTURE §8), the part writeback reads: one YAML file, reloaded when it changes.

    defaults:
      writeback_policy: {confidence_threshold: 0.7}
    tenants:
      acme:
        mcp_tenant_code: acme
        writeback_policy:
          default: auto                     # auto | hold | reject, when no rule below says otherwise
          confidence_threshold: 0.7         # below it: held
          targets:                          # per target system, or system/entity type (the more precise wins)
            netsuite/journal_entries: hold
            dentrix: reject
          hold_fields: [ANNUAL_SALARY]      # replaces the default payroll and compensation fields
        approvers: [U024BE7LH]              # Slack user ids allowed to approve or reject
        approvals_webhook: https://hooks.slack.com/services/T../B../...   # the approvals channel

Documented defaults for a tenant the file does not name (or fields it leaves out): policy `auto`, payroll
(`adp/payroll_runs`) and compensation fields held, confidence below 0.7 held, no approvers, no channel
(held insights are then decided over HTTP only), MCP code from `datasource.created` events. A broken file
keeps the last good one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from apev_runtime.tenants import TenantDirectory

Action = Literal["auto", "hold", "reject"]

DEFAULT_CONFIDENCE_THRESHOLD = 0.7
DEFAULT_TARGETS: dict[str, Action] = {"adp/payroll_runs": "hold"}
DEFAULT_HOLD_FIELDS = ("ANNUAL_SALARY", "GROSS_PAY", "NET_PAY", "TAXES_WITHHELD", "PAYROLL_EXPENSE")
# Any field whose name says pay or compensation is held too, whatever the list says.
COMPENSATION_WORDS = ("SALARY", "WAGE", "BONUS", "COMPENSATION", "PAY_RATE", "GROSS_PAY", "NET_PAY")


class WritebackPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: Action = "auto"
    confidence_threshold: float = Field(DEFAULT_CONFIDENCE_THRESHOLD, ge=0.0, le=1.0)
    targets: dict[str, Action] = Field(default_factory=lambda: dict(DEFAULT_TARGETS))
    hold_fields: list[str] = Field(default_factory=lambda: list(DEFAULT_HOLD_FIELDS))


class TenantSettings(BaseModel):
    model_config = ConfigDict(extra="allow")  # the other services' settings live in the same file

    mcp_tenant_code: str | None = None
    writeback_policy: WritebackPolicy = Field(default_factory=WritebackPolicy)
    approvers: list[str] = Field(default_factory=list)
    approvals_webhook: str | None = None


class Decision(BaseModel):
    action: Action
    reason: str


def decide(policy: WritebackPolicy, system: str, entity_type: str, fields: list[str], confidence: float) -> Decision:
    """Reject beats hold beats auto: a rejecting rule for the target wins; then any reason to hold; else auto."""
    rule = policy.targets.get(f"{system}/{entity_type}") or policy.targets.get(system)
    where = f"{system}/{entity_type}"
    if rule == "reject" or (rule is None and policy.default == "reject"):
        return Decision(action="reject", reason=f"policy rejects write-backs to {where}")
    if rule == "hold" or (rule is None and policy.default == "hold"):
        return Decision(action="hold", reason=f"policy holds write-backs to {where} for approval")
    upper = {f.upper() for f in fields}
    sensitive = sorted(
        f for f in upper if f in {h.upper() for h in policy.hold_fields} or any(w in f for w in COMPENSATION_WORDS)
    )
    if sensitive:
        return Decision(action="hold", reason=f"payroll or compensation fields {', '.join(sensitive)} need approval")
    if confidence < policy.confidence_threshold:
        return Decision(
            action="hold",
            reason=f"confidence {confidence:.2f} is below the threshold {policy.confidence_threshold:.2f}",
        )
    return Decision(action="auto", reason=f"policy applies write-backs to {where} automatically")


Tenants = TenantDirectory[TenantSettings]
"""What the service holds: the shared tenant settings file, read through this service's view."""


def tenant_directory(path: Path) -> Tenants:
    """The policy is merged one level deep: a tenant that sets only `confidence_threshold` keeps the defaults'
    targets and hold fields."""
    return TenantDirectory(path, TenantSettings, nested=("writeback_policy",))
