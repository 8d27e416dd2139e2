"""Alert rules: one YAML file (`MONITOR_RULES_FILE`, default the packaged `rules.yaml`), validated at start.

Schema (durations are `90s`, `5m`, `4h`, `1d` or a number of seconds):

    defaults:                      # Alertmanager's defaults; any rule may override them
      group_wait: 30s              # wait before the first notification of a new group
      group_interval: 5m           # wait before notifying a change (alert added or resolved) in a notified group
      repeat_interval: 4h          # re-send a group that is still firing and unchanged
    receivers:                     # resolved notifications per receiver (PagerDuty on, Slack and email off)
      slack: {send_resolved: false}
      pagerduty: {send_resolved: true}
      email: {send_resolved: false}
    rules:
      - name: job_failures         # unique, [a-z0-9_]+
        kind: job_failures         # one of KINDS below; `params` are checked against the kind
        severity: critical         # critical, error, warning, info
        for: 0s                    # the condition must hold this long (pending) before the alert fires
        notify: [pagerduty, slack] # receivers: slack, pagerduty, email
        slack_webhook: alerts      # which configured Slack webhook (MONITOR_SLACK_WEBHOOKS), default `alerts`
        group_by: [tenant_id, job_id]   # labels that make a notification group (default: all the kind's labels)
        params: {threshold: 2, window: 1h}

An invalid file stops the service at start with one message per problem naming the rule and the field.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

DEFAULT_RULES_FILE = Path(__file__).parent / "rules.yaml"
RECEIVERS = ("slack", "pagerduty", "email")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from `90s`, `5m`, `4h`, `1d` or a number."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 30s, 5m, 4h, 1d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration must not be negative")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 5m, 4h, 1d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobFailuresParams(_Strict):
    """`threshold` failed runs of one job within `window`, none of them followed by a success."""

    threshold: int = Field(2, ge=1)
    window: Duration = 3600.0
    outcomes: list[Literal["failure", "timeout", "canceled", "skipped"]] = ["failure", "timeout"]


class DailyDbuBudgetParams(_Strict):
    """A tenant's DBUs on one usage day (all SKUs, latest samples) above `factor` x its `daily_dbu_budget`."""

    factor: Decimal = Field(Decimal("1.2"), gt=0)
    days: int = Field(2, ge=1)
    """Usage days looked at, today included."""
    default_budget: Decimal | None = None
    """Budget for tenants without one in the tenant settings (none: such tenants are not checked)."""


class EndpointLatencyParams(_Strict):
    """The `quantile` of an endpoint's latency, from the merged histograms of every replica over `window`."""

    quantile: float = Field(0.95, gt=0, le=1)
    threshold_ms: float = Field(500.0, gt=0)
    window: Duration = 60.0
    min_count: int = Field(1, ge=1)
    scale_up: bool = True
    """Publish `endpoint.scale.requested` when the alert fires."""


class DlqGrowthParams(_Strict):
    """A dead-letter topic's end offsets (summed over partitions) grew by `threshold` or more within `window`."""

    window: Duration = 900.0
    threshold: int = Field(1, ge=1)


class DataFreshnessParams(_Strict):
    """No successful ingest run of a data source within its freshness budget (tenant settings
    `freshness_minutes`, else `default_minutes`), counted from its last success or, without one, its first run."""

    default_minutes: int = Field(1440, ge=1)


class CostPer1kParams(_Strict):
    """An agent's dollars (its endpoint and insights jobs) per 1,000 invocations over the last `days`."""

    threshold_dollars: Decimal = Field(Decimal("0.10"), ge=0)
    days: int = Field(1, ge=1)
    min_invocations: int = Field(100, ge=1)


class CostAnomalyParams(_Strict):
    """A tenant's daily cost far above its own recent days. Method: robust z-score of the day against the
    `history_days` before it, z = 0.6745 x (x - median) / MAD (Iglewicz-Hoaglin); the day is anomalous when
    z > `z_threshold` (MAD 0: any rise counts), and it is also at least `min_increase_dollars` and
    `min_relative_increase` (a share of the median) above the median. Needs `min_history_days` of history."""

    history_days: int = Field(7, ge=2)
    min_history_days: int = Field(5, ge=2)
    z_threshold: float = Field(3.5, gt=0)
    min_increase_dollars: Decimal = Field(Decimal("1.00"), ge=0)
    min_relative_increase: float = Field(0.5, ge=0)
    days: int = Field(1, ge=1)


PARAMS: dict[str, type[_Strict]] = {
    "job_failures": JobFailuresParams,
    "daily_dbu_budget": DailyDbuBudgetParams,
    "endpoint_latency": EndpointLatencyParams,
    "dlq_growth": DlqGrowthParams,
    "data_freshness": DataFreshnessParams,
    "cost_per_1k_invocations": CostPer1kParams,
    "cost_anomaly": CostAnomalyParams,
}
LABELS: dict[str, tuple[str, ...]] = {
    "job_failures": ("tenant_id", "job_id"),
    "daily_dbu_budget": ("tenant_id", "usage_date"),
    "endpoint_latency": ("tenant_id", "endpoint_name"),
    "dlq_growth": ("topic",),
    "data_freshness": ("tenant_id", "datasource_id"),
    "cost_per_1k_invocations": ("tenant_id", "agent_id"),
    "cost_anomaly": ("tenant_id", "usage_date"),
}
KINDS = tuple(PARAMS)


class Timing(_Strict):
    group_wait: Duration = 30.0
    group_interval: Duration = 300.0
    repeat_interval: Duration = 4 * 3600.0


class ReceiverOptions(_Strict):
    send_resolved: bool


class Rule(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,100}$")]
    kind: Literal[
        "job_failures",
        "daily_dbu_budget",
        "endpoint_latency",
        "dlq_growth",
        "data_freshness",
        "cost_per_1k_invocations",
        "cost_anomaly",
    ]
    severity: Literal["critical", "error", "warning", "info"] = "warning"
    for_: Duration = Field(0.0, alias="for")
    notify: list[Literal["slack", "pagerduty", "email"]] = Field(default_factory=list)
    slack_webhook: str = "alerts"
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _group_by_known(self) -> Rule:
        known = LABELS[self.kind]
        for label in self.group_by or ():
            if label not in known:
                raise ValueError(f"group_by: {label!r} is not a label of kind {self.kind} (labels: {list(known)})")
        return self

    @property
    def labels(self) -> tuple[str, ...]:
        return LABELS[self.kind]

    @property
    def grouping(self) -> tuple[str, ...]:
        return tuple(self.group_by) if self.group_by is not None else LABELS[self.kind]


class RulesFile(_Strict):
    defaults: Timing = Field(default_factory=Timing)
    receivers: dict[Literal["slack", "pagerduty", "email"], ReceiverOptions] = Field(default_factory=dict)
    rules: list[dict[str, Any]] = Field(default_factory=list)


class RulesError(ValueError):
    """The rules file is invalid; `problems` name the rule and the field of each."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"invalid rules file {path}:\n" + "\n".join(f"  - {p}" for p in problems))


class RuleSet:
    """The validated rules, with each rule's params typed and its timing resolved."""

    SEND_RESOLVED_DEFAULTS = {"slack": False, "pagerduty": True, "email": False}

    def __init__(self, rules: list[Rule], params: dict[str, Any], timing: Timing, receivers: dict[str, bool]):
        self.rules = rules
        self.params = params
        self.timing = timing
        self.send_resolved = receivers

    def get(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def group_wait(self, rule: Rule) -> float:
        return rule.group_wait if rule.group_wait is not None else self.timing.group_wait

    def group_interval(self, rule: Rule) -> float:
        return rule.group_interval if rule.group_interval is not None else self.timing.group_interval

    def repeat_interval(self, rule: Rule) -> float:
        return rule.repeat_interval if rule.repeat_interval is not None else self.timing.repeat_interval


def _where(error: Any) -> str:
    return ".".join(str(p) for p in error["loc"]) or "(rule)"


def parse_rules(text: str, path: Path = Path("<rules>")) -> RuleSet:
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RulesError(path, [f"not YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise RulesError(path, ["the file must be a mapping with `rules:` (and optional `defaults:`, `receivers:`)"])
    try:
        top = RulesFile.model_validate(raw)
    except ValidationError as exc:
        raise RulesError(path, [f"field {_where(e)!r}: {e['msg']}" for e in exc.errors()]) from None
    problems: list[str] = []
    rules: list[Rule] = []
    params: dict[str, Any] = {}
    seen: set[str] = set()
    for i, item in enumerate(top.rules):
        name = item.get("name") if isinstance(item, dict) else None
        who = f"rule {name!r} (rules[{i}])" if name else f"rules[{i}]"
        try:
            rule = Rule.model_validate(item)
        except ValidationError as exc:
            problems += [f"{who}: field {_where(e)!r}: {e['msg']}" for e in exc.errors()]
            continue
        if rule.name in seen:
            problems.append(f"{who}: field 'name': duplicate rule name {rule.name!r}")
            continue
        seen.add(rule.name)
        try:
            params[rule.name] = PARAMS[rule.kind].model_validate(rule.params)
        except ValidationError as exc:
            problems += [f"{who}: field 'params.{_where(e)}': {e['msg']}" for e in exc.errors()]
            continue
        rules.append(rule)
    if problems:
        raise RulesError(path, problems)
    receivers = dict(RuleSet.SEND_RESOLVED_DEFAULTS)
    receivers.update({k: v.send_resolved for k, v in top.receivers.items()})
    return RuleSet(rules, params, top.defaults, receivers)


def load_rules(path: Path | None = None) -> RuleSet:
    path = path or DEFAULT_RULES_FILE
    try:
        text = path.read_text()
    except OSError as exc:
        raise RulesError(path, [f"cannot read: {exc}"]) from None
    return parse_rules(text, path)
