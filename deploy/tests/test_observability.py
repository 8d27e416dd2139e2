"""The Prometheus alerting rules say what the monitor's rules.yaml says (same thresholds and windows, the
tenant budgets of deploy/tenants.yaml), and the Grafana dashboard is well formed. Whether their metrics exist
is checked against running services in test_live_metrics.py."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"
NOT_EXPRESSIBLE = {"cost_per_1k_invocations", "cost_anomaly"}  # documented at the end of the rules file


def monitor_rules() -> dict[str, dict[str, Any]]:
    text = (resources.files("apev_monitor") / "rules.yaml").read_text()
    return {r["name"]: r for r in yaml.safe_load(text)["rules"]}


def prometheus_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load((OBS / "prometheus-rules.yaml").read_text())["groups"] for r in g["rules"]]


def alerts_by_rule() -> dict[str, dict[str, Any]]:
    return {r["labels"]["rule"]: r for r in prometheus_rules() if "alert" in r}


def _seconds(duration: str) -> int:
    value, unit = int(duration[:-1]), duration[-1]
    return value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def test_every_monitor_rule_has_an_alert_or_is_documented_as_not_expressible() -> None:
    mine = alerts_by_rule()
    for name in monitor_rules():
        assert name in mine or name in NOT_EXPRESSIBLE, f"rules.yaml rule {name!r} has no Prometheus alert"
    text = (OBS / "prometheus-rules.yaml").read_text()
    for name in NOT_EXPRESSIBLE:
        assert name in text.split("Not expressible", 1)[1]


def test_thresholds_windows_severities_and_receivers_match_rules_yaml() -> None:
    theirs, mine = monitor_rules(), alerts_by_rule()
    for name, rule in theirs.items():
        if name in NOT_EXPRESSIBLE:
            continue
        alert, params, expr = mine[name], rule.get("params", {}), mine[name]["expr"]
        assert alert["labels"]["severity"] == rule["severity"], name
        assert alert["labels"]["notify"].split(",") == rule["notify"], name
        assert _seconds(alert.get("for", "0s")) == _seconds(rule.get("for", "0s")), name
        if "window" in params:
            assert f"[{params['window']}]" in expr, (name, params["window"])
        for key in ("threshold", "threshold_ms", "quantile", "factor"):
            if key in params:
                assert re.search(rf"(?<![\d.]){re.escape(str(params[key]))}(?![\d.])", expr), (name, key)
        if "default_minutes" in params:
            assert f"{params['default_minutes']} * 60" in expr, name


def test_tenant_budgets_are_deploy_tenants_yaml() -> None:
    tenants = yaml.safe_load((ROOT / "deploy" / "tenants.yaml").read_text())
    records = [r for r in prometheus_rules() if r.get("record") == "apev:tenant_daily_dbu_budget"]
    recorded = {}
    for r in records:
        m = re.fullmatch(r'label_replace\(vector\(([\d.]+)\), "tenant_id", "([^"]+)", "", ""\)', r["expr"])
        assert m, r["expr"]
        recorded[m.group(2)] = float(m.group(1))
    wanted = {t: float(s["daily_dbu_budget"]) for t, s in tenants["tenants"].items() if "daily_dbu_budget" in s}
    assert recorded == wanted
    (default,) = [r for r in prometheus_rules() if r.get("record") == "apev:default_daily_dbu_budget"]
    assert default["expr"] == f"vector({tenants['defaults']['daily_dbu_budget']})"


def test_the_dashboard_is_well_formed() -> None:
    board = json.loads((OBS / "grafana-dashboard.json").read_text())
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    graphs = [p for p in board["panels"] if p["type"] != "row"]
    assert len(graphs) >= 15
    for panel in graphs:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), (panel["title"], target["expr"])
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "job"} <= variables
