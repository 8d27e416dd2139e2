"""Slack: the approval message (Block Kit, Approve and Reject buttons), its update after a decision, and the
verification of interaction requests (v0 signature over `v0:{timestamp}:{body}`, 5-minute window)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qs

APPROVE, REJECT = "writeback_approve", "writeback_reject"


class InteractionRefused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def verify(headers: Any, body: bytes, secret: str | None, window: int, now: float | None = None) -> None:
    """Raise `InteractionRefused` unless the request is signed with `secret` within `window` seconds."""
    if not secret:
        raise InteractionRefused("signature", "this service has no Slack signing secret configured")
    raw_ts = headers.get("x-slack-request-timestamp")
    signature = headers.get("x-slack-signature")
    if not raw_ts or not signature:
        raise InteractionRefused("signature", "X-Slack-Request-Timestamp and X-Slack-Signature are required")
    try:
        ts = int(raw_ts)
    except ValueError:
        raise InteractionRefused("timestamp", f"X-Slack-Request-Timestamp is not an integer: {raw_ts!r}") from None
    if abs((now if now is not None else time.time()) - ts) > window:
        raise InteractionRefused("timestamp", f"request timestamp is more than {window} s from now (a replay?)")
    expected = "v0=" + hmac.new(secret.encode(), b"v0:" + raw_ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise InteractionRefused("signature", "X-Slack-Signature does not match the body")


def parse(body: bytes) -> dict[str, Any]:
    """The `block_actions` payload: a form field `payload` holding JSON."""
    try:
        fields = parse_qs(body.decode(), strict_parsing=True)
        payload = json.loads(fields["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError) as exc:
        raise InteractionRefused("payload", f"body must be a form with a JSON `payload` field: {exc}") from None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions" or not payload.get("actions"):
        raise InteractionRefused("payload", "only block_actions payloads with an action are handled")
    return payload


def button_value(tenant_id: str, insight_id: str) -> str:
    return json.dumps({"t": tenant_id, "i": insight_id}, separators=(",", ":"))


def read_value(value: Any) -> tuple[str, str]:
    try:
        parsed = json.loads(value)
        return str(parsed["t"]), str(parsed["i"])
    except (TypeError, ValueError, KeyError) as exc:
        raise InteractionRefused("payload", f"the button's value is not one of this service's: {exc}") from None


def _fmt(value: Any) -> str:
    return "_unknown_" if value is None else f"`{value}`"


def approval_message(row: Any) -> dict[str, Any]:
    """What would change (old -> new), the agent, its reason and confidence, where it came from; two buttons."""
    old = row.old_values or {}
    lines = [f"• *{field}*: {_fmt(old.get(field))} → {_fmt(new)}" for field, new in row.changes.items()]
    title = f"Approval needed: {row.target_system} {row.entity_type} {row.entity_id}"
    value = button_value(row.tenant_id, row.insight_id)
    return {
        "text": title,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*Agent*\n{row.agent_id}"},
                    {"type": "mrkdwn", "text": f"*Confidence*\n{row.confidence:.0%}"},
                    {"type": "mrkdwn", "text": f"*Reason*\n{row.reason[:1900]}"},
                    {"type": "mrkdwn", "text": f"*Held because*\n{row.policy_reason[:1900]}"},
                ],
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"Insight `{row.insight_id}` · event `{row.event_id}` · tenant `{row.tenant_id}`"
                        + (f" · expected version {row.expected_version}" if row.expected_version else ""),
                    }
                ],
            },
            {
                "type": "actions",
                "block_id": f"writeback:{row.insight_id}"[:255],
                "elements": [
                    {"type": "button", "action_id": APPROVE, "style": "primary", "value": value,
                     "text": {"type": "plain_text", "text": "Approve"}},
                    {"type": "button", "action_id": REJECT, "style": "danger", "value": value,
                     "text": {"type": "plain_text", "text": "Reject"}},
                ],
            },
        ],
    }  # fmt: skip


def decided_message(row: Any, who: str, decision: str, outcome: str) -> dict[str, Any]:
    """The message after a decision: who, when, and what MCP said; no buttons left."""
    when = row.decided_at.isoformat() if row.decided_at else "now"
    verb = "Approved" if decision == "approve" else "Rejected"
    result = f"MCP outcome: *{outcome}*"
    if row.version is not None:
        result += f" (version {row.version}, change `{row.change_id}`)"
    if row.detail:
        result += f" · {row.detail[:500]}"
    text = f"{verb} by <@{who}> at {when}: {row.target_system} {row.entity_type} {row.entity_id}"
    return {
        "replace_original": True,
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": result}]},
        ],
    }
