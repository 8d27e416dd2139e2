"""The rules file: the packaged one is valid and holds the seed's three rules plus the platform's; an invalid
one stops the start, naming the rule and the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from apev_monitor.app import create_app
from apev_monitor.rules import RulesError, load_rules, parse_duration
from apev_monitor.settings import Settings

BAD = """
rules:
  - name: job_failures
    kind: job_failures
    notify: [pagerduty, slack]
    params: {threshold: 0, window: 1h}
  - name: latency
    kind: endpoint_latency
    for: five minutes
    notify: [sms]
"""


def test_packaged_rules_are_the_seeds_plus_platform_rules() -> None:
    rules = load_rules()
    assert {r.kind for r in rules.rules} == {
        "job_failures",
        "daily_dbu_budget",
        "endpoint_latency",
        "dlq_growth",
        "data_freshness",
        "cost_per_1k_invocations",
        "cost_anomaly",
    }
    latency = rules.get("model_serving_latency")
    assert latency.for_ == 300 and latency.notify == ["slack", "pagerduty"]
    assert rules.params["job_failures"].threshold == 2 and rules.params["job_failures"].window == 3600
    assert (rules.timing.group_wait, rules.timing.group_interval, rules.timing.repeat_interval) == (30, 300, 14400)
    assert rules.send_resolved == {"slack": False, "pagerduty": True, "email": False}
    assert parse_duration("90s") == 90 and parse_duration("1d") == 86400


def test_an_invalid_rules_file_fails_start_up_naming_rule_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text(BAD)
    with pytest.raises(RulesError) as caught:
        create_app(Settings(rules_file=bad, database_url=f"sqlite+aiosqlite:///{tmp_path}/m.db"))
    problems = caught.value.problems
    assert any("rule 'job_failures'" in p and "'params.threshold'" in p for p in problems), problems
    assert any("rule 'latency'" in p and "'for'" in p for p in problems), problems
    assert any("rule 'latency'" in p and "'notify.0'" in p for p in problems), problems

    env = {**os.environ, "MONITOR_RULES_FILE": str(bad), "MONITOR_DATA_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "apev_monitor"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "rule 'job_failures' (rules[0]): field 'params.threshold'" in proc.stderr
