"""The stand-ins over real HTTP (background server, manual clock): the issue's acceptance and the admin API."""

from __future__ import annotations

import time

import httpx

from apev_sinks.backend import SinksConfig
from apev_sinks.clock import ManualClock
from apev_sinks.testing import RunningSinks, running_sinks


def trigger(key: str, dedup_key: str | None = "dbu-budget:t1", summary: str = "budget exceeded") -> dict[str, object]:
    body: dict[str, object] = {
        "routing_key": key,
        "event_action": "trigger",
        "payload": {"summary": summary, "source": "monitor", "severity": "warning", "custom_details": {"x": 1}},
    }
    if dedup_key is not None:
        body["dedup_key"] = dedup_key
    return body


# ------------------------------------------------------------------ Slack


async def test_slack_second_message_within_a_second_is_429_with_retry_after(
    sinks: RunningSinks, http: httpx.AsyncClient, manual_clock: ManualClock
) -> None:
    first = await http.post(sinks.slack_url, json={"text": "one"})
    assert (first.status_code, first.text) == (200, "ok")
    second = await http.post(sinks.slack_url, json={"text": "two"})
    assert second.status_code == 429
    assert second.headers["retry-after"] == "1"
    assert second.headers["content-type"].startswith("text/plain")
    manual_clock.advance(1.0)
    third = await http.post(sinks.slack_url, json={"text": "three"})
    assert third.status_code == 200
    listed = (await http.get("/_admin/slack/messages")).json()
    assert [m["text"] for m in listed] == ["one", "three"]
    assert listed[0]["channel"] == "#alerts"


async def test_slack_empty_payload_is_no_text_and_unknown_path_channel_not_found(
    sinks: RunningSinks, http: httpx.AsyncClient
) -> None:
    empty = await http.post(sinks.slack_url, json={})
    assert (empty.status_code, empty.text) == (400, "no_text")
    bad = await http.post(sinks.slack_url, content=b"{oops", headers={"content-type": "application/json"})
    assert (bad.status_code, bad.text) == (400, "invalid_payload")
    unknown = await http.post("/services/T0/B0/nope", json={"text": "x"})
    assert (unknown.status_code, unknown.text) == (404, "channel_not_found")
    rejections = (await http.get("/_admin/slack/rejections")).json()
    assert [r["error"] for r in rejections] == ["no_text", "invalid_payload", "channel_not_found"]


async def test_slack_webhooks_can_be_registered_at_run_time(sinks: RunningSinks, http: httpx.AsyncClient) -> None:
    created = await http.post("/_admin/slack/webhooks", json={"path": "T7/B7/tenant", "channel": "#t7"})
    assert created.status_code == 201
    assert (await http.post("/services/T7/B7/tenant", json={"text": "hi"})).text == "ok"
    await http.post("/_admin/slack/webhooks", json={"path": "T7/B7/gone", "archived": True})
    gone = await http.post("/services/T7/B7/gone", json={"text": "hi"})
    assert (gone.status_code, gone.text) == (410, "channel_is_archived")
    assert (await http.get("/_admin/slack/messages", params={"webhook": "T7/B7/tenant"})).json()[0]["channel"] == "#t7"


async def test_shared_fixture_uses_the_real_one_second_window(alert_sinks: RunningSinks) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.post(alert_sinks.slack_url, json={"text": "a"})).status_code == 200
        limited = await client.post(alert_sinks.slack_url, json={"text": "b"})
    assert (limited.status_code, limited.headers["retry-after"], limited.text) == (429, "1", "rate_limited")


# ------------------------------------------------------------------ PagerDuty


async def test_pagerduty_three_triggers_one_incident_resolve_then_a_new_incident(
    sinks: RunningSinks, http: httpx.AsyncClient
) -> None:
    for _ in range(3):
        answer = await http.post("/v2/enqueue", json=trigger(sinks.routing_key))
        assert answer.status_code == 202
        assert answer.json() == {"status": "success", "message": "Event processed", "dedup_key": "dbu-budget:t1"}
    [incident] = (await http.get("/_admin/pagerduty/incidents")).json()
    assert (incident["status"], incident["trigger_count"]) == ("triggered", 3)

    resolve = {"routing_key": sinks.routing_key, "event_action": "resolve", "dedup_key": "dbu-budget:t1"}
    assert (await http.post("/v2/enqueue", json=resolve)).status_code == 202
    assert (await http.get(f"/_admin/pagerduty/incidents/{incident['id']}")).json()["status"] == "resolved"

    await http.post("/v2/enqueue", json=trigger(sinks.routing_key))
    listed = (await http.get("/_admin/pagerduty/incidents", params={"dedup_key": "dbu-budget:t1"})).json()
    assert [i["status"] for i in listed] == ["resolved", "triggered"]
    assert len((await http.get("/_admin/pagerduty/events")).json()) == 5


async def test_pagerduty_generates_a_dedup_key_on_trigger(sinks: RunningSinks, http: httpx.AsyncClient) -> None:
    answer = (await http.post("/v2/enqueue", json=trigger(sinks.routing_key, dedup_key=None))).json()
    [incident] = (await http.get("/_admin/pagerduty/incidents", params={"status": "triggered"})).json()
    assert incident["dedup_key"] == answer["dedup_key"]


async def test_pagerduty_invalid_event_is_400_with_reasons(sinks: RunningSinks, http: httpx.AsyncClient) -> None:
    body = trigger("n" * 32)
    body["payload"] = {"summary": "x", "source": "monitor", "severity": "fatal"}
    answer = await http.post("/v2/enqueue", json=body)
    assert answer.status_code == 400
    assert answer.json()["status"] == "invalid event"
    assert answer.json()["errors"][0] == "Invalid routing key"
    assert answer.json()["errors"][1].startswith("'payload.severity' must be one of")
    malformed = await http.post("/v2/enqueue", content=b"not json")
    assert malformed.status_code == 400
    assert malformed.json()["errors"][0].startswith("Malformed JSON")


async def test_pagerduty_429_beyond_the_limit_and_limits_are_tunable(
    sinks: RunningSinks, http: httpx.AsyncClient, manual_clock: ManualClock
) -> None:
    assert (await http.patch("/_admin/limits", json={"pagerduty_rate_limit": 2})).status_code == 200
    try:
        codes = [(await http.post("/v2/enqueue", json=trigger(sinks.routing_key))).status_code for _ in range(3)]
        assert codes == [202, 202, 429]
        manual_clock.advance(60)
        assert (await http.post("/v2/enqueue", json=trigger(sinks.routing_key))).status_code == 202
    finally:
        await http.patch("/_admin/limits", json={"pagerduty_rate_limit": 120})


async def test_pagerduty_routing_keys_can_be_registered(sinks: RunningSinks, http: httpx.AsyncClient) -> None:
    short = await http.post("/_admin/pagerduty/routing-keys", json={"routing_key": "short"})
    assert short.status_code == 400
    assert "exactly 32 characters" in short.json()["detail"]
    key = "r" * 32
    created = await http.post("/_admin/pagerduty/routing-keys", json={"routing_key": key, "service": "tenant-7"})
    assert created.json() == {"routing_key": key, "service": "tenant-7"}
    assert (await http.post("/v2/enqueue", json=trigger(key))).status_code == 202
    assert (await http.get("/_admin/pagerduty/incidents")).json()[0]["service"] == "tenant-7"


# ------------------------------------------------------------------ faults, counters, reset


async def test_counted_5xx_fault_then_normal_answers(sinks: RunningSinks, http: httpx.AsyncClient) -> None:
    rule = await http.post("/_admin/faults", json={"match": "/v2/enqueue", "status": 503, "count": 2, "retry_after": 4})
    assert rule.status_code == 201
    first = await http.post("/v2/enqueue", json=trigger(sinks.routing_key))
    assert (first.status_code, first.headers["retry-after"], first.json()["status"]) == (503, "4", "error")
    assert (await http.post("/v2/enqueue", json=trigger(sinks.routing_key))).status_code == 503
    assert (await http.post("/v2/enqueue", json=trigger(sinks.routing_key))).status_code == 202
    # Faults answered before applying: only the third event reached PagerDuty.
    assert (await http.get("/_admin/pagerduty/incidents")).json()[0]["trigger_count"] == 1
    counts = (await http.get("/_admin/requests")).json()
    assert counts["sinks"]["pagerduty"]["targets"]["POST /v2/enqueue"] == {"202": 1, "503": 2}
    assert (await http.get("/_admin/faults")).json()[0]["hits"] == 2


async def test_slack_injected_429_is_plain_text_with_retry_after(sinks: RunningSinks, http: httpx.AsyncClient) -> None:
    await http.post("/_admin/faults", json={"match": "/services/*", "status": 429, "count": 1})
    limited = await http.post(sinks.slack_url, json={"text": "x"})
    assert (limited.status_code, limited.text, limited.headers["retry-after"]) == (429, "rate_limited", "1")
    assert (await http.post(sinks.slack_url, json={"text": "x"})).status_code == 200


async def test_lost_response_fault_applies_the_request_then_errors(
    sinks: RunningSinks, http: httpx.AsyncClient
) -> None:
    await http.post("/_admin/faults", json={"match": "/services/*", "status": 502, "count": 1, "after_apply": True})
    answer = await http.post(sinks.slack_url, json={"text": "applied"})
    assert answer.status_code == 502
    assert [m["text"] for m in (await http.get("/_admin/slack/messages")).json()] == ["applied"]


async def test_latency_fault_delays_the_answer(sinks: RunningSinks, http: httpx.AsyncClient) -> None:
    await http.post("/_admin/faults", json={"match": "/v2/enqueue", "latency": 0.3, "count": 1})
    started = time.monotonic()
    answer = await http.post("/v2/enqueue", json=trigger(sinks.routing_key))
    assert answer.status_code == 202
    assert time.monotonic() - started >= 0.3


async def test_faults_can_be_removed_and_bad_rules_are_refused(sinks: RunningSinks, http: httpx.AsyncClient) -> None:
    bad = await http.post("/_admin/faults", json={"match": "*", "status": 200})
    assert bad.status_code == 400
    assert "between 400 and 599" in bad.json()["detail"]
    rule = (await http.post("/_admin/faults", json={"match": "/services/*", "status": 500})).json()
    assert (await http.delete(f"/_admin/faults/{rule['id']}")).status_code == 204
    assert (await http.delete(f"/_admin/faults/{rule['id']}")).status_code == 404
    assert (await http.post(sinks.slack_url, json={"text": "x"})).status_code == 200


async def test_admin_paths_are_never_faulted_and_reset_empties_everything(
    sinks: RunningSinks, http: httpx.AsyncClient
) -> None:
    await http.post("/_admin/faults", json={"match": "*", "status": 500})
    assert (await http.get("/_admin/slack/messages")).status_code == 200
    assert (await http.post(sinks.slack_url, json={"text": "x"})).status_code == 500
    assert (await http.post("/_admin/reset")).status_code == 204
    assert (await http.get("/_admin/faults")).json() == []
    assert (await http.get("/_admin/requests")).json() == {"total": 0, "sinks": {}}
    assert (await http.post(sinks.slack_url, json={"text": "x"})).status_code == 200


async def test_overview_lists_urls_keys_and_smtp(sinks: RunningSinks, http: httpx.AsyncClient) -> None:
    overview = (await http.get("/_admin")).json()
    assert overview["slack"]["webhooks"][0]["url"] == sinks.slack_url
    assert overview["pagerduty"]["events_url"] == sinks.urls.pagerduty_events
    assert sinks.routing_key in overview["pagerduty"]["routing_keys"]
    assert overview["smtp"] == {"host": "127.0.0.1", "port": sinks.urls.smtp_port}


def test_running_sinks_takes_its_own_webhooks_keys_and_limits() -> None:
    key = "c" * 32
    config = SinksConfig(defaults=False)
    with running_sinks(config, slack_webhooks={"T3/B3/only": "#only"}, routing_keys={key: "solo"}) as own:
        assert (own.slack_path, own.routing_key) == ("T3/B3/only", key)
        assert [h.path for h in own.backend.slack.webhooks()] == ["T3/B3/only"]
        default_hook = own.urls.slack_webhook("T0APEV0000/B0ALERTS00/apev-local-alerts")
        assert httpx.post(default_hook, json={"text": "x"}).status_code == 404
        assert httpx.post(own.slack_url, json={"text": "x"}).text == "ok"
        own.fault("/services/*", status=500, count=1)
        assert httpx.post(own.slack_url, json={"text": "x"}).status_code == 500
