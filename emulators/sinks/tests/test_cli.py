"""`python -m apev_sinks` (what `make sinks` runs): starts both servers, logs where, stops on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

EXTRA_KEY = "e" * 32


@pytest.fixture
def cli() -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    env = {**os.environ, "APEV_SINKS_PAGERDUTY_ROUTING_KEYS": f"{EXTRA_KEY}=from-env"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "apev_sinks", "--port", "0", "--smtp-port", "0", "--slack-webhook", "T5/B5/cli=#cli"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 20
    try:
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "read what arrived" in line:
                break
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_cli_serves_all_three_logs_keys_and_stops_on_sigint(cli: tuple[subprocess.Popen[str], list[str]]) -> None:
    proc, lines = cli
    log = "".join(lines)
    match = re.search(r"HTTP on (http://127\.0\.0\.1:\d+), SMTP on 127\.0\.0\.1:(\d+)", log)
    assert match, log
    base, smtp_port = match.group(1), int(match.group(2))
    assert f"{base}/services/T0APEV0000/B0ALERTS00/apev-local-alerts" in log
    assert f"{base}/services/T5/B5/cli" in log
    assert f"{EXTRA_KEY}  -> from-env" in log

    assert httpx.post(f"{base}/services/T5/B5/cli", json={"text": "hi"}).text == "ok"
    event = {
        "routing_key": EXTRA_KEY,
        "event_action": "trigger",
        "payload": {"summary": "s", "source": "cli", "severity": "info"},
    }
    assert httpx.post(f"{base}/v2/enqueue", json=event).status_code == 202
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=5) as smtp:
        smtp.sendmail("a@apev.local", ["b@example.com"], b"Subject: hi\r\n\r\nbody\r\n")
    assert httpx.get(f"{base}/_admin/smtp/messages").json()[0]["subject"] == "hi"

    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0
    assert proc.stdout is not None
    assert "sinks: stopped" in proc.stdout.read()


def test_cli_refuses_a_malformed_routing_key() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "apev_sinks", "--port", "0", "--smtp-port", "0", "--routing-key", "short=x"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 2
    assert "exactly 32 characters" in out.stderr
