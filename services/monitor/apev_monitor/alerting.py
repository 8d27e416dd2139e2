"""Alert states and notification groups, in the manner of Prometheus Alertmanager.

Per rule and label set (the alert's fingerprint): a condition that starts to hold makes the alert *pending*;
held for the rule's `for`, it is *firing* (its actions run once, e.g. `endpoint.scale.requested`); when it
stops holding a firing alert is *resolved* and a pending one *inactive*. Every change lands in the history.

Firing alerts that no silence matches are grouped per rule, receiver and `group_by` labels. A new group
notifies after `group_wait`; a notified group notifies a change (an alert added or resolved) after
`group_interval`, and re-sends an unchanged firing group after `repeat_interval`; a group whose alerts all
resolved sends a resolved notification when the receiver wants one, and closes. Notifications are rows,
delivered (and retried) by the notifier, never sent from here.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts import EndpointScaleRequested
from apev_contracts.envelope import new_event
from apev_contracts.ids import scale_request_id
from apev_monitor import tables
from apev_monitor.conditions import Observation, aware, observe
from apev_monitor.rules import EndpointLatencyParams, Rule, RuleSet
from apev_monitor.tenants import Tenants
from apev_runtime import outbox

SOURCE = "/apev/monitor"
ACTIVE = ("pending", "firing")


def fingerprint(rule: str, labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps([rule, sorted(labels.items())]).encode()).hexdigest()


def dedup_key(rule: str, group_labels: dict[str, str]) -> str:
    """PagerDuty's `dedup_key`: stable for a rule and its group's labels, whatever the receiver or the time."""
    digest = hashlib.sha256(json.dumps([rule, sorted(group_labels.items())]).encode()).hexdigest()[:32]
    return f"apev-{rule}-{digest}"[:255]


def silence_matches(matchers: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in matchers.items())


@dataclass
class EvalResult:
    transitions: list[tuple[str, str, str]]  # (rule, fingerprint, new state)
    notifications: int
    scale_requests: int


class Alerting:
    def __init__(self, rules: RuleSet, tenants: Tenants, *, notification_ttl: float) -> None:
        self.rules = rules
        self.tenants = tenants
        self.ttl = timedelta(seconds=notification_ttl)

    async def evaluate(self, tx: AsyncConnection, now: datetime) -> EvalResult:
        result = EvalResult([], 0, 0)
        silences = await active_silences(tx, now)
        for rule in self.rules.rules:
            params = self.rules.params[rule.name]
            observed = await observe(tx, rule, params, now, self.tenants)
            await self._advance(tx, rule, params, observed, now, result)
            for receiver in rule.notify:
                result.notifications += await self._dispatch(tx, rule, receiver, silences, now)
        return result

    async def _advance(
        self, tx: AsyncConnection, rule: Rule, params: Any, observed: list[Observation], now: datetime, r: EvalResult
    ) -> None:
        a = tables.alerts.c
        rows = {row.fingerprint: row for row in (await tx.execute(select(tables.alerts).where(a.rule == rule.name)))}
        seen: set[str] = set()
        for obs in observed:
            fp = fingerprint(rule.name, obs.labels)
            seen.add(fp)
            row = rows.get(fp)
            values: dict[str, Any] = {"value": obs.value, "summary": obs.summary, "link": obs.link, "updated_at": now}
            if row is None or row.state not in ACTIVE:
                since, state = now, "pending"
                values |= {"active_since": now, "fired_at": None, "resolved_at": None}
            else:
                since, state = aware(row.active_since), row.state
            if state == "pending" and now - since >= timedelta(seconds=rule.for_):
                state = "firing"
                values["fired_at"] = now
                r.scale_requests += await self._on_fire(tx, rule, params, obs, now)
            values["state"] = state
            if row is None:
                tenant = obs.labels.get("tenant_id")
                await tx.execute(
                    insert(tables.alerts).values(
                        fingerprint=fp, rule=rule.name, labels=obs.labels, tenant_id=tenant, **values
                    )
                )
            else:
                await tx.execute(update(tables.alerts).where(a.fingerprint == fp).values(**values))
            if row is None or row.state != state:
                await _history(tx, fp, rule.name, state, obs.value, now)
                r.transitions.append((rule.name, fp, state))
        for fp, row in rows.items():
            if fp in seen or row.state not in ACTIVE:
                continue
            state = "resolved" if row.state == "firing" else "inactive"
            extra = {"resolved_at": now} if state == "resolved" else {}
            await tx.execute(
                update(tables.alerts).where(a.fingerprint == fp).values(state=state, updated_at=now, **extra)
            )
            await _history(tx, fp, rule.name, state, row.value, now)
            r.transitions.append((rule.name, fp, state))

    async def _on_fire(self, tx: AsyncConnection, rule: Rule, params: Any, obs: Observation, now: datetime) -> int:
        if not (isinstance(params, EndpointLatencyParams) and params.scale_up):
            return 0
        data = EndpointScaleRequested(
            tenant_id=obs.labels["tenant_id"],
            endpoint_name=obs.labels["endpoint_name"],
            rule=rule.name,
            reason=obs.summary[:4000],
            observed_p95_ms=float(obs.value),
            threshold_ms=params.threshold_ms,
        )
        event = new_event(
            data,
            tenant_id=data.tenant_id,
            source=SOURCE,
            id=scale_request_id(data.endpoint_name, rule.name, now),
        )
        await outbox.add(tx, event)
        return 1

    async def _dispatch(
        self, tx: AsyncConnection, rule: Rule, receiver: str, silences: list[dict[str, str]], now: datetime
    ) -> int:
        a, g = tables.alerts.c, tables.groups.c
        alerts = (await tx.execute(select(tables.alerts).where(a.rule == rule.name))).all()
        by_fp = {row.fingerprint: row for row in alerts}
        firing: dict[str, list[str]] = defaultdict(list)
        group_labels: dict[str, dict[str, str]] = {}
        for row in alerts:
            if row.state != "firing" or any(silence_matches(m, {**row.labels, "rule": row.rule}) for m in silences):
                continue
            labels = {k: row.labels[k] for k in rule.grouping if k in row.labels}
            key = _group_key(rule.name, receiver, labels)
            firing[key].append(row.fingerprint)
            group_labels[key] = labels
        existing = {
            row.group_key: row
            for row in await tx.execute(select(tables.groups).where(g.rule == rule.name, g.receiver == receiver))
        }
        sent = 0
        for key in sorted(set(firing) | set(existing)):
            now_firing = sorted(firing.get(key, []))
            group = existing.get(key)
            if group is None:
                await tx.execute(
                    insert(tables.groups).values(
                        group_key=key,
                        rule=rule.name,
                        receiver=receiver,
                        labels=group_labels[key],
                        created_at=now,
                        last_sent_at=None,
                        last_firing=[],
                    )
                )
                created, last_sent, last_firing, labels = now, None, [], group_labels[key]
            else:
                created, last_firing, labels = aware(group.created_at), list(group.last_firing), dict(group.labels)
                last_sent = aware(group.last_sent_at) if group.last_sent_at else None
            if last_sent is None:
                if not now_firing:
                    await tx.execute(delete(tables.groups).where(g.group_key == key))
                elif now - created >= timedelta(seconds=self.rules.group_wait(rule)):
                    sent += await self._notify(tx, rule, receiver, key, labels, "firing", now_firing, [], by_fp, now)
                continue
            changed = now_firing != sorted(last_firing)
            since_sent = now - last_sent
            if changed and since_sent >= timedelta(seconds=self.rules.group_interval(rule)):
                resolved = [fp for fp in last_firing if fp not in now_firing]
                if now_firing:
                    sent += await self._notify(
                        tx, rule, receiver, key, labels, "firing", now_firing, resolved, by_fp, now
                    )
                else:
                    if self.rules.send_resolved.get(receiver, False):
                        sent += await self._notify(
                            tx, rule, receiver, key, labels, "resolved", [], resolved, by_fp, now
                        )
                    await tx.execute(delete(tables.groups).where(g.group_key == key))
            elif not changed and now_firing and since_sent >= timedelta(seconds=self.rules.repeat_interval(rule)):
                sent += await self._notify(tx, rule, receiver, key, labels, "firing", now_firing, [], by_fp, now)
        return sent

    async def _notify(
        self,
        tx: AsyncConnection,
        rule: Rule,
        receiver: str,
        key: str,
        labels: dict[str, str],
        kind: str,
        firing: list[str],
        resolved: list[str],
        by_fp: dict[str, Any],
        now: datetime,
    ) -> int:
        def item(fp: str, state: str) -> dict[str, Any]:
            row = by_fp[fp]
            return {
                "fingerprint": fp,
                "state": state,
                "labels": row.labels,
                "summary": row.summary,
                "value": row.value,
                "link": row.link,
                "fired_at": aware(row.fired_at).isoformat() if row.fired_at else None,
            }

        items = [item(fp, "firing") for fp in firing if fp in by_fp]
        items += [item(fp, "resolved") for fp in resolved if fp in by_fp]
        head = items[0] if items else {"summary": rule.description or rule.name, "link": None}
        summary = head["summary"] if len(items) <= 1 else f"{head['summary']} (+{len(items) - 1} more)"
        payload = {
            "rule": rule.name,
            "kind": rule.kind,
            "severity": rule.severity,
            "status": kind,
            "summary": summary,
            "description": rule.description,
            "group_labels": labels,
            "alerts": items,
            "link": next((i["link"] for i in items if i.get("link")), None),
            "slack_webhook": rule.slack_webhook,
            "created_at": now.isoformat(),
        }
        await tx.execute(
            insert(tables.notifications).values(
                group_key=key,
                rule=rule.name,
                receiver=receiver,
                kind=kind,
                dedup_key=dedup_key(rule.name, labels),
                payload=payload,
                status="pending",
                attempts=0,
                created_at=now,
                next_attempt_at=now,
                expires_at=now + self.ttl,
            )
        )
        await tx.execute(
            update(tables.groups)
            .where(tables.groups.c.group_key == key)
            .values(last_sent_at=now, last_firing=sorted(firing))
        )
        return 1


def _group_key(rule: str, receiver: str, labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps([rule, receiver, sorted(labels.items())]).encode()).hexdigest()


async def _history(tx: AsyncConnection, fp: str, rule: str, state: str, value: str | None, now: datetime) -> None:
    await tx.execute(insert(tables.alert_history).values(fingerprint=fp, rule=rule, state=state, value=value, at=now))


async def active_silences(conn: AsyncConnection, now: datetime) -> list[dict[str, str]]:
    s = tables.silences.c
    rows = await conn.execute(select(tables.silences).where(s.expired.is_(False), s.starts_at <= now, s.ends_at > now))
    return [dict(row.matchers) for row in rows]
