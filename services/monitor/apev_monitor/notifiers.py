"""Delivering notifications: Slack incoming webhooks (Block Kit), PagerDuty Events API v2 and SMTP email.

The notifier takes due rows from `monitor_notifications` in id order and sends each once per attempt; every
attempt is a row in `monitor_notification_attempts`. 429 and 5xx (SMTP: 4xx replies, connection errors) are
retried at the server's `Retry-After`, else with a backoff doubling per answer the receiver gave (an open
breaker's refusals do not count), until delivered or expired; other 4xx (SMTP: 5xx) fail for good. Retries
are the notifier's, not the HTTP client's (one request per attempt), so a notification is only sent again
after an answer that says it was not taken. Within one group and receiver the notifications go out in order:
a PagerDuty resolve never overtakes its trigger.

An answer that does not say whether the request was taken (502 or 504 from a gateway, the connection lost or
timed out after the request went out) is retried for PagerDuty, whose `dedup_key` makes a second trigger join
the same incident. A Slack incoming webhook has no such key: a re-sent message is a second message, so by
default Slack's notification ends `unconfirmed` (attempt outcome `unconfirmed`, not re-sent);
`MONITOR_SLACK_RESEND_UNCONFIRMED=true` re-sends it instead (a possible duplicate rather than a possible miss).
"""

from __future__ import annotations

import asyncio
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, Literal, Protocol

import httpx
import structlog
from sqlalchemy import func, insert, not_, or_, select, update

from apev_monitor import tables
from apev_monitor.conditions import aware
from apev_monitor.metrics import Metrics
from apev_monitor.settings import Settings
from apev_runtime.db.engine import Database
from apev_runtime.http import CircuitOpenError, HostBreakers, ResilientClient, RetryPolicy, parse_retry_after

log = structlog.get_logger("apev.monitor.notify")

Outcome = Literal["delivered", "retry", "failed", "unconfirmed"]
CLAIM_SECONDS = 120.0
UNCONFIRMED_STATUSES = frozenset({502, 504})
"""Gateway answers: the request may have reached the receiver before the gateway gave up on it."""
UNCONFIRMED_ERRORS = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)
"""The request went out, the answer never came (a refused or timed-out connect sent nothing)."""


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None


class Sender(Protocol):
    async def send(self, payload: dict[str, Any], kind: str, dedup_key: str) -> SendResult: ...


def _http_result(response: httpx.Response, ok: set[int], resend_unconfirmed: bool) -> SendResult:
    code = response.status_code
    if code in ok:
        return SendResult("delivered", code)
    body = response.text[:300]
    if code in UNCONFIRMED_STATUSES and not resend_unconfirmed:
        return SendResult("unconfirmed", code, f"not re-sent, may have been taken: {body}"[:300])
    if code == 429 or code >= 500:
        return SendResult("retry", code, body, parse_retry_after(response.headers.get("Retry-After")))
    return SendResult("failed", code, body)


async def _post(
    http: ResilientClient, url: str, body: dict[str, Any], ok: set[int], *, resend_unconfirmed: bool = True
) -> SendResult:
    """One attempt. `resend_unconfirmed`: retry when the answer does not say whether the request was taken
    (only for receivers where a second request cannot make a second effect)."""
    try:
        return _http_result(await http.post(url, json=body), ok, resend_unconfirmed)
    except CircuitOpenError as exc:
        return SendResult("retry", None, f"circuit open for {exc.host}", exc.retry_in)
    except httpx.TransportError as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
        if isinstance(exc, UNCONFIRMED_ERRORS) and not resend_unconfirmed:
            return SendResult("unconfirmed", None, f"not re-sent, may have been taken: {error}"[:300])
        return SendResult("retry", None, error)


def slack_message(payload: dict[str, Any]) -> dict[str, Any]:
    """Block Kit: what fired, the essentials as fields, a button to the run page (or the console)."""
    status = payload["status"]
    icon = {"firing": ":rotating_light:", "resolved": ":white_check_mark:"}.get(status, "")
    title = f"{icon} {status.upper()}: {payload['rule']} ({payload['severity']})"
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in sorted(payload["group_labels"].items())]
    firing = [a for a in payload["alerts"] if a["state"] == "firing"]
    resolved = [a for a in payload["alerts"] if a["state"] == "resolved"]
    fields.append({"type": "mrkdwn", "text": f"*alerts*\n{len(firing)} firing, {len(resolved)} resolved"})
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": payload["summary"][:3000]}},
        {"type": "section", "fields": fields[:10]},
    ]
    if payload.get("link"):
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Open run page"}, "url": payload["link"]}
                ],
            }
        )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"apev-monitor · {payload['kind']}"}]})
    return {"text": f"{title}: {payload['summary']}"[:3000], "blocks": blocks}


class SlackSender:
    def __init__(self, http: ResilientClient, webhooks: dict[str, str], *, resend_unconfirmed: bool = False) -> None:
        self.http = http
        self.webhooks = webhooks
        self.resend_unconfirmed = resend_unconfirmed

    async def send(self, payload: dict[str, Any], kind: str, dedup_key: str) -> SendResult:
        url = self.webhooks.get(payload.get("slack_webhook") or "alerts") or self.webhooks.get("alerts")
        if not url:
            return SendResult(
                "failed", None, f"no Slack webhook {payload.get('slack_webhook')!r} or 'alerts' configured"
            )
        return await _post(self.http, url, slack_message(payload), {200}, resend_unconfirmed=self.resend_unconfirmed)


class PagerDutySender:
    """Events API v2: trigger with the group's stable `dedup_key`, resolve with the same key."""

    def __init__(self, http: ResilientClient, events_url: str, routing_key: str | None) -> None:
        self.http = http
        self.url = events_url.rstrip("/") + "/v2/enqueue"
        self.routing_key = routing_key

    async def send(self, payload: dict[str, Any], kind: str, dedup_key: str) -> SendResult:
        if not self.routing_key:
            return SendResult("failed", None, "no PagerDuty routing key configured (MONITOR_PAGERDUTY_ROUTING_KEY)")
        body: dict[str, Any] = {"routing_key": self.routing_key, "dedup_key": dedup_key}
        if kind == "resolved":
            body["event_action"] = "resolve"
        else:
            body["event_action"] = "trigger"
            severity = payload["severity"]
            body["payload"] = {
                "summary": payload["summary"][:1024],
                "source": "apev-monitor",
                "severity": severity,
                "timestamp": payload["created_at"],
                "component": payload["kind"],
                "group": payload["rule"],
                "custom_details": {"labels": payload["group_labels"], "alerts": payload["alerts"][:20]},
            }
            if payload.get("link"):
                body["links"] = [{"href": payload["link"], "text": "Run page"}]
        return await _post(self.http, self.url, body, {200, 202})


class EmailSender:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, payload: dict[str, Any], kind: str, dedup_key: str) -> SendResult:
        s = self.settings
        if not s.smtp_host or not s.email_to:
            return SendResult(
                "failed", None, "no SMTP host or recipients configured (MONITOR_SMTP_HOST, MONITOR_EMAIL_TO)"
            )
        msg = EmailMessage()
        msg["Subject"] = f"[{payload['status'].upper()}] {payload['rule']}: {payload['summary']}"[:250]
        msg["From"] = s.email_from
        msg["To"] = ", ".join(s.email_to)
        msg["X-Apev-Dedup-Key"] = dedup_key
        lines = [payload["summary"], "", f"rule: {payload['rule']} ({payload['severity']})"]
        lines += [f"{k}: {v}" for k, v in sorted(payload["group_labels"].items())]
        for alert in payload["alerts"]:
            lines.append(f"- [{alert['state']}] {alert['summary']}")
        if payload.get("link"):
            lines += ["", f"link: {payload['link']}"]
        msg.set_content("\n".join(lines) + "\n")
        return await asyncio.to_thread(self._send, msg)

    def _send(self, msg: EmailMessage) -> SendResult:
        s = self.settings
        assert s.smtp_host is not None
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.notify_timeout_seconds) as smtp:
                if s.smtp_starttls:
                    smtp.starttls()
                if s.smtp_username and s.smtp_password:
                    smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
                refused = smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            return _smtp_result(min(codes) if codes else 550, str(exc.recipients)[:300])
        except smtplib.SMTPResponseException as exc:
            return _smtp_result(exc.smtp_code, str(exc.smtp_error)[:300])
        except (OSError, smtplib.SMTPException) as exc:
            return SendResult("retry", None, f"{type(exc).__name__}: {exc}"[:300])
        if refused:
            return SendResult("failed", None, f"refused recipients: {refused}"[:300])
        return SendResult("delivered", 250)


def _smtp_result(code: int, error: str) -> SendResult:
    return SendResult("retry" if 400 <= code < 500 else "failed", code, error)


def http_client(settings: Settings, breakers: HostBreakers) -> ResilientClient:
    client = httpx.AsyncClient(timeout=settings.notify_timeout_seconds)
    return ResilientClient(client, breakers=breakers, retry=RetryPolicy(attempts=1))


class Notifier:
    def __init__(self, db: Database, senders: dict[str, Sender], metrics: Metrics) -> None:
        self.db = db
        self.senders = senders
        self.metrics = metrics
        self._lock = asyncio.Lock()

    async def deliver(self, now: datetime) -> int:
        """One pass over pending notifications; returns how many were delivered."""
        async with self._lock:
            return await self._deliver(now)

    async def _deliver(self, now: datetime) -> int:
        n = tables.notifications.c
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(select(tables.notifications).where(n.status == "pending").order_by(n.id))).all()
        blocked: set[tuple[str, str]] = set()
        delivered = 0
        for row in rows:
            key = (row.group_key, row.receiver)
            if key in blocked:
                continue
            blocked.add(key)  # later rows of this group and receiver wait for this one
            if now >= aware(row.expires_at):
                await self._finish(row, now, SendResult("failed", None, "expired before delivery"), status="expired")
                blocked.discard(key)
                continue
            if aware(row.next_attempt_at) > now:
                continue
            if not await self._claim(row, now):
                continue
            sender = self.senders.get(row.receiver)
            if sender is None:
                result = SendResult("failed", None, f"unknown receiver {row.receiver!r}")
            else:
                try:
                    result = await sender.send(row.payload, row.kind, row.dedup_key)
                except Exception as exc:  # a sender bug must not stop the others
                    log.warning("notification_send_crashed", receiver=row.receiver, exc_info=True)
                    result = SendResult("retry", None, f"{type(exc).__name__}: {exc}"[:300])
            await self._finish(row, now, result)
            if result.outcome == "delivered":
                delivered += 1
            if result.outcome != "retry":
                blocked.discard(key)
        return delivered

    async def _claim(self, row: Any, now: datetime) -> bool:
        """Move the row's next attempt ahead before sending, so a second notifier does not send it too."""
        n = tables.notifications.c
        async with self.db.transaction() as tx:
            claimed = await tx.execute(
                update(tables.notifications)
                .where(n.id == row.id, n.status == "pending", n.attempts == row.attempts)
                .values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS), attempts=row.attempts + 1)
            )
        return claimed.rowcount == 1

    async def _answered_retries(self, notification_id: int) -> int:
        a = tables.attempts.c
        async with self.db.engine.connect() as conn:
            query = select(func.count()).where(
                a.notification_id == notification_id,
                a.outcome == "retry",
                or_(a.error.is_(None), not_(a.error.startswith("circuit open"))),
            )
            return int((await conn.execute(query)).scalar_one())

    async def _finish(self, row: Any, now: datetime, result: SendResult, status: str | None = None) -> None:
        n = tables.notifications.c
        attempts = row.attempts + (0 if status == "expired" else 1)
        values: dict[str, Any] = {"last_error": result.error, "attempts": attempts}
        if status is not None:
            values["status"] = status
        elif result.outcome == "delivered":
            values |= {"status": "delivered", "delivered_at": now}
        elif result.outcome in ("failed", "unconfirmed"):
            values["status"] = result.outcome
        else:
            wait = result.retry_after
            if wait is None:  # doubling per answer the receiver gave (refusals by an open breaker never reached it)
                wait = min(300.0, 2.0 ** min(await self._answered_retries(row.id) + 1, 8))
            values["next_attempt_at"] = now + timedelta(seconds=wait)
        async with self.db.transaction() as tx:
            await tx.execute(update(tables.notifications).where(n.id == row.id).values(**values))
            await tx.execute(
                insert(tables.attempts).values(
                    notification_id=row.id,
                    receiver=row.receiver,
                    at=now,
                    outcome=status or result.outcome,
                    status_code=result.status_code,
                    error=result.error,
                    retry_after=result.retry_after,
                )
            )
        self.metrics.notifications.labels(row.receiver, status or result.outcome).inc()
        if result.error and result.error.startswith("circuit open"):
            self.metrics.breaker_trips.labels(row.receiver).inc()
        log.info(
            "notification_attempt",
            receiver=row.receiver,
            rule=row.rule,
            kind=row.kind,
            outcome=status or result.outcome,
            status_code=result.status_code,
            attempt=attempts,
        )
