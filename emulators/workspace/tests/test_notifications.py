"""Notification destinations (through the SDK) and job/task webhook notifications (raw HTTP receiver)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, NotFound, PermissionDenied
from databricks.sdk.service import jobs, settings

from apev_workspace.testing import RunningWorkspace, py_task, upload, wait_run

FLAKY_ONCE = """
import os, sys
marker = sys.argv[1]
if not os.path.exists(marker):
    open(marker, "w").close()
    raise SystemExit("first attempt fails")
"""


@dataclass
class Receiver:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    attempts: int = 0
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self) -> list[str]:
        with self.lock:
            return [r["event_type"] for r in self.received]

    def wait_for(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            assert time.monotonic() < deadline, f"only {self.events()} arrived, wanted {count} events"
            time.sleep(0.02)


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with receiver.lock:
                receiver.attempts += 1
                refuse = receiver.fail_next > 0
                if refuse:
                    receiver.fail_next -= 1
                else:
                    receiver.received.append(json.loads(body))
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(500 if refuse else 200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as r:
        yield r


@pytest.fixture
def fast_retries(ws: RunningWorkspace) -> None:
    ws.workspace.webhooks.retry_base = 0.05


def _destination(w: WorkspaceClient, url: str, **auth: str) -> str:
    created = w.notification_destinations.create(
        display_name="apev-jobs", config=settings.Config(generic_webhook=settings.GenericWebhookConfig(url=url, **auth))
    )
    assert created.id
    return created.id


def _hooks(*events: str, dest: str) -> jobs.WebhookNotifications:
    return jobs.WebhookNotifications(**{e: [jobs.Webhook(id=dest)] for e in events})


def test_destination_lifecycle(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    cfg = settings.Config(
        generic_webhook=settings.GenericWebhookConfig(url="https://example.invalid/hook", username="u", password="p")
    )
    created = w.notification_destinations.create(display_name="ops", config=cfg)
    assert created.destination_type == settings.DestinationType.WEBHOOK
    hook = created.config.generic_webhook
    assert (hook.url_set, hook.username_set, hook.password_set) == (True, True, True)
    assert hook.url is None and hook.password is None  # input-only, never echoed

    listed = list(w.notification_destinations.list())
    assert [(d.id, d.display_name, d.destination_type) for d in listed] == [
        (created.id, "ops", settings.DestinationType.WEBHOOK)
    ]
    renamed = w.notification_destinations.update(created.id, display_name="ops-2")
    assert renamed.display_name == "ops-2" and renamed.config.generic_webhook.url_set
    assert w.notification_destinations.get(created.id).display_name == "ops-2"
    with pytest.raises(InvalidParameterValue, match="type cannot change"):
        w.notification_destinations.update(
            created.id, config=settings.Config(slack=settings.SlackConfig(url="https://hooks.invalid/x"))
        )

    sp = w.service_principals.create(display_name="reader")
    token = w.token_management.create_obo_token(application_id=sp.application_id, lifetime_seconds=600)
    other = ws.client(token=token.token_value)
    with pytest.raises(PermissionDenied):
        other.notification_destinations.create(display_name="x", config=cfg)
    assert other.notification_destinations.get(created.id).config is None  # only admins see configs

    w.notification_destinations.delete(created.id)
    with pytest.raises(NotFound):
        w.notification_destinations.get(created.id)


def test_destination_paging_and_validation(w: WorkspaceClient) -> None:
    for i in range(5):
        w.notification_destinations.create(
            display_name=f"d{i}", config=settings.Config(email=settings.EmailConfig(addresses=[f"a{i}@x.test"]))
        )
    names = [d.display_name for d in w.notification_destinations.list(page_size=2)]
    assert names == ["d0", "d1", "d2", "d3", "d4"]
    with pytest.raises(InvalidParameterValue, match="url"):
        w.notification_destinations.create(
            display_name="bad", config=settings.Config(generic_webhook=settings.GenericWebhookConfig(url="ftp://x"))
        )


def test_job_run_sends_start_and_success_then_failure(w: WorkspaceClient, receiver: Receiver) -> None:
    dest = _destination(w, receiver.url, username="apev", password="s3cret")
    ok = upload(w, "/Shared/hooks/ok.py", "print('fine')")
    bad = upload(w, "/Shared/hooks/bad.py", "raise ValueError('boom')")
    hooks = _hooks("on_start", "on_success", "on_failure", dest=dest)
    good_job = w.jobs.create(name="hooks-ok", tasks=[py_task("t", ok)], webhook_notifications=hooks).job_id
    run = wait_run(w, w.jobs.run_now(good_job).run_id)
    received = receiver.wait_for(2)
    assert received == [
        {
            "event_type": "jobs.on_start",
            "workspace_id": "1234567890123456",
            "run": {"run_id": run.run_id},
            "job": {"job_id": good_job, "name": "hooks-ok"},
        },
        {
            "event_type": "jobs.on_success",
            "workspace_id": "1234567890123456",
            "run": {"run_id": run.run_id},
            "job": {"job_id": good_job, "name": "hooks-ok"},
        },
    ]
    expected_auth = "Basic " + base64.b64encode(b"apev:s3cret").decode()
    assert all(h["authorization"] == expected_auth for h in receiver.headers)
    assert receiver.headers[0]["content-type"] == "application/json"

    bad_job = w.jobs.create(name="hooks-bad", tasks=[py_task("t", bad)], webhook_notifications=hooks).job_id
    failed = wait_run(w, w.jobs.run_now(bad_job).run_id)
    assert failed.state.result_state == jobs.RunResultState.FAILED
    events = receiver.wait_for(4)[2:]
    assert [e["event_type"] for e in events] == ["jobs.on_start", "jobs.on_failure"]
    assert all(e["run"] == {"run_id": failed.run_id} for e in events)


def test_receiver_failing_twice_gets_each_event_once_it_recovers(
    w: WorkspaceClient, receiver: Receiver, fast_retries: None
) -> None:
    receiver.fail_next = 2
    dest = _destination(w, receiver.url)
    path = upload(w, "/Shared/hooks/ok.py", "print('fine')")
    job = w.jobs.create(
        name="retry", tasks=[py_task("t", path)], webhook_notifications=_hooks("on_start", "on_success", dest=dest)
    )
    run = wait_run(w, w.jobs.run_now(job.job_id).run_id)
    received = receiver.wait_for(2)
    time.sleep(0.3)  # nothing more arrives: each event exactly once after the recovery
    assert [(e["event_type"], e["run"]["run_id"]) for e in receiver.received] == [
        ("jobs.on_start", run.run_id),
        ("jobs.on_success", run.run_id),
    ]
    assert received[0]["event_type"] == "jobs.on_start"  # order kept behind the retried first event
    assert receiver.attempts == 4
    assert "Authorization" not in receiver.headers[0] and "authorization" not in receiver.headers[0]


def test_task_notifications_and_no_job_level_notice_for_task_retries(
    w: WorkspaceClient, receiver: Receiver, tmp_path: Path
) -> None:
    dest = _destination(w, receiver.url)
    path = upload(w, "/Shared/hooks/flaky.py", FLAKY_ONCE)
    task = py_task(
        "flaky",
        path,
        str(tmp_path / "marker"),
        max_retries=1,
        webhook_notifications=_hooks("on_start", "on_success", "on_failure", dest=dest),
    )
    job = w.jobs.create(
        name="task-hooks",
        tasks=[task],
        webhook_notifications=_hooks("on_start", "on_success", "on_failure", dest=dest),
    )
    run = wait_run(w, w.jobs.run_now(job.job_id).run_id)
    assert run.state.result_state == jobs.RunResultState.SUCCESS
    received = receiver.wait_for(6)
    time.sleep(0.3)
    job_level = [e["event_type"] for e in receiver.received if "task" not in e]
    task_level = [e for e in receiver.received if "task" in e]
    assert job_level == ["jobs.on_start", "jobs.on_success"]  # the failed first attempt is not a job failure
    assert [e["event_type"] for e in task_level] == [
        "jobs.on_start",
        "jobs.on_failure",
        "jobs.on_start",
        "jobs.on_success",
    ]
    attempts = run.tasks[0]
    first_attempt = task_level[0]["run"]["run_id"]
    assert first_attempt != attempts.run_id and task_level[-1]["run"]["run_id"] == attempts.run_id
    for event in task_level:
        assert event["task"] == {"task_key": "flaky"}
        assert event["run"]["parent_run_id"] == run.run_id
        assert event["job"] == {"job_id": job.job_id, "name": "task-hooks"}
    assert len(received) == 6


def test_duration_warning_fires_once(w: WorkspaceClient, receiver: Receiver) -> None:
    dest = _destination(w, receiver.url)
    path = upload(w, "/Shared/hooks/slow.py", "import time; time.sleep(2.2)")
    rule = jobs.JobsHealthRule(
        metric=jobs.JobsHealthMetric.RUN_DURATION_SECONDS, op=jobs.JobsHealthOperator.GREATER_THAN, value=1
    )
    job = w.jobs.create(
        name="slow",
        tasks=[py_task("t", path)],
        health=jobs.JobsHealthRules(rules=[rule]),
        webhook_notifications=_hooks("on_duration_warning_threshold_exceeded", "on_success", dest=dest),
    )
    run = wait_run(w, w.jobs.run_now(job.job_id).run_id)
    receiver.wait_for(2)
    assert receiver.events() == ["jobs.on_duration_warning_threshold_exceeded", "jobs.on_success"]
    assert receiver.received[0]["run"] == {"run_id": run.run_id}


def test_a_dead_receiver_never_blocks_runs(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    dest = _destination(w, "http://127.0.0.1:9/unreachable")
    path = upload(w, "/Shared/hooks/ok.py", "print('fine')")
    job = w.jobs.create(name="dead", tasks=[py_task("t", path)], webhook_notifications=_hooks("on_start", dest=dest))
    started = time.monotonic()
    for _ in range(3):
        assert wait_run(w, w.jobs.run_now(job.job_id).run_id).state.result_state == jobs.RunResultState.SUCCESS
    assert time.monotonic() - started < 15
    assert ws.workspace.webhooks.pending() >= 1  # still retrying in the background


def test_webhook_settings_are_validated(w: WorkspaceClient) -> None:
    path = upload(w, "/Shared/hooks/ok.py", "print('fine')")
    four = jobs.WebhookNotifications(on_failure=[jobs.Webhook(id=f"d{i}") for i in range(4)])
    with pytest.raises(InvalidParameterValue, match=r"webhook_notifications.on_failure has 4 destinations"):
        w.jobs.create(name="too-many", tasks=[py_task("t", path)], webhook_notifications=four)
    bad_rule = {"rules": [{"metric": "RUN_DURATION_SECONDS", "op": "LESS_THAN", "value": 3}]}
    with pytest.raises(InvalidParameterValue, match="GREATER_THAN"):
        w.api_client.do(
            "POST",
            "/api/2.2/jobs/create",
            body={"name": "bad-health", "health": bad_rule, "tasks": [py_task("t", path).as_dict()]},
        )


def test_notifications_switched_off_send_nothing_until_switched_on(
    w: WorkspaceClient, ws: RunningWorkspace, receiver: Receiver
) -> None:
    dest = _destination(w, receiver.url)
    ok = upload(w, "/Shared/hooks/quiet.py", "print('fine')")
    job = w.jobs.create(
        name="hooks-quiet", tasks=[py_task("t", ok)], webhook_notifications=_hooks("on_start", "on_success", dest=dest)
    ).job_id
    ws.set_notifications(False)
    wait_run(w, w.jobs.run_now(job).run_id)
    time.sleep(0.3)
    assert receiver.attempts == 0
    with ws.admin_http() as http:
        assert http.get("/__admin/notifications").json() == {"enabled": False, "suppressed": 2}
        sp = w.service_principals.create(display_name="not-admin")
        token = w.token_management.create_obo_token(application_id=sp.application_id).token_value
        refused = http.post(
            "/__admin/notifications", json={"enabled": True}, headers={"Authorization": f"Bearer {token}"}
        )
        assert refused.status_code == 403
        assert http.post("/__admin/notifications", json={"enabled": "yes"}).status_code == 400
    ws.set_notifications(True)
    run = wait_run(w, w.jobs.run_now(job).run_id)
    assert [e["run"]["run_id"] for e in receiver.wait_for(2)] == [run.run_id, run.run_id]
