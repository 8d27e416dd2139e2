"""Buttons: a click as a named user is a signed block_actions request to the Request URL; response_url
updates are recorded against the message, 5 uses at most."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx

from apev_sinks.testing import RunningSinks

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BLOCKS = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "Approve?"}},
    {
        "type": "actions",
        "block_id": "decide",
        "elements": [
            {"type": "button", "action_id": "approve", "value": "ins-1", "text": {"type": "plain_text", "text": "OK"}},
            {"type": "button", "action_id": "reject", "value": "ins-1", "text": {"type": "plain_text", "text": "No"}},
        ],
    },
]


class _App(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_click_sends_a_signed_block_actions_request_and_response_url_updates_are_kept(
    alert_sinks: RunningSinks,
) -> None:
    app = HTTPServer(("127.0.0.1", 0), _App)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    try:
        alert_sinks.interactivity(f"http://127.0.0.1:{app.server_port}/slack/interactions", SECRET)
        assert httpx.post(alert_sinks.slack_url, json={"text": "Approve?", "blocks": BLOCKS}).status_code == 200
        (message,) = alert_sinks.backend.slack.messages()
        answer = alert_sinks.click(message.id, "approve", "U024BE7LH", user_name="dana")
        assert answer["status"] == 200
        headers, body = _App.received[-1]
        ts = headers["x-slack-request-timestamp"]
        expected = "v0=" + hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
        assert headers["x-slack-signature"] == expected
        assert headers["content-type"] == "application/x-www-form-urlencoded"
        payload = json.loads(parse_qs(body.decode())["payload"][0])
        assert payload["type"] == "block_actions" and payload["user"]["id"] == "U024BE7LH"
        assert payload["actions"][0]["action_id"] == "approve" and payload["actions"][0]["value"] == "ins-1"

        forged = alert_sinks.click(message.id, "reject", "U1", signature="forged", timestamp_offset=-400)
        headers, body = _App.received[-1]
        assert forged["status"] == 200 and int(headers["x-slack-request-timestamp"]) < int(ts) - 300
        assert (
            headers["x-slack-signature"]
            != "v0="
            + hmac.new(
                SECRET.encode(), f"v0:{headers['x-slack-request-timestamp']}:".encode() + body, hashlib.sha256
            ).hexdigest()
        )

        for i in range(6):
            r = httpx.post(payload["response_url"], json={"replace_original": True, "text": f"Approved by dana {i}"})
            assert r.status_code == (200 if i < 5 else 404), r.text
        updates = alert_sinks.backend.slack.interactivity.updates(message.id)
        assert [u.body["text"] for u in updates] == [f"Approved by dana {i}" for i in range(5)]
        listed = httpx.get(f"{alert_sinks.urls.admin}/slack/updates", params={"message_id": message.id}).json()
        assert len(listed) == 5 and listed[0]["replace_original"] is True
        missing = httpx.post(f"{alert_sinks.urls.admin}/slack/messages/{message.id}/click", json={
            "action_id": "nope", "user_id": "U1"})  # fmt: skip
        assert missing.status_code == 404 and missing.json()["error"] == "no_such_button"
    finally:
        app.shutdown()
