import asyncio
import time
import uuid

import httpx
import pytest

from apev_runtime.mcp import (
    ReplayCache,
    SyncRequest,
    WebhookVerificationError,
    WebhookVerifier,
    sign,
    signed_headers,
)

SECRET = "whsec-test-secret"


async def received(mcp_sim, sink: str, count: int = 1) -> list[dict]:
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            got = (await http.get(f"{mcp_sim.base_url}/__admin/sink/{sink}")).json()
            if len(got) >= count:
                return got
            await asyncio.sleep(0.02)
    raise AssertionError(f"sink {sink} received fewer than {count} webhooks")


async def test_signed_webhook_from_the_simulator_verifies(tenant, mcp_sim) -> None:
    sink = uuid.uuid4().hex
    await tenant.client.register_webhook(f"{mcp_sim.base_url}/__admin/sink/{sink}", SECRET, ["sync.completed"])
    run = await tenant.client.run_sync(SyncRequest(integration_type="adp", entity_types=["employees"]))
    assert run.status == "completed" and run.records_processed > 0
    assert (await tenant.client.get_sync(run.sync_id)) == run

    [delivery] = await received(mcp_sim, sink)
    event = WebhookVerifier(SECRET).verify(delivery["headers"], delivery["body"].encode())
    assert event.type == "sync.completed"
    assert event.tenant_code == tenant.code
    assert event.data["sync_id"] == run.sync_id
    assert delivery["headers"]["x-mcp-delivery"] == event.id


async def test_webhook_delivery_is_retried_with_the_same_event_id(tenant, mcp_sim) -> None:
    sink = uuid.uuid4().hex
    mcp_sim.add_fault("503", f"/__admin/sink/{sink}", method="POST", count=2)
    await tenant.client.register_webhook(f"{mcp_sim.base_url}/__admin/sink/{sink}", SECRET, ["data.changed"])
    mcp_sim.tick(tenant.code, ["locations"], ratio=0.5)
    [delivery] = await received(mcp_sim, sink)
    event = WebhookVerifier(SECRET).verify(delivery["headers"], delivery["body"].encode())
    assert event.type == "data.changed"
    assert event.data["changed"] == {"locations": 4}
    [log] = [d for d in mcp_sim.admin("GET", "/__admin/webhooks/deliveries") if d["event_id"] == event.id]
    assert log["attempts"] == [503, 503, 200]
    assert log["status"] == "delivered"


def make(body: bytes = b'{"id":"e1","type":"data.changed","tenant_code":"acme","created_at":"2026-01-01T00:00:00Z"}'):
    timestamp = int(time.time())
    return signed_headers(SECRET, body, event="data.changed", delivery_id="e1", timestamp=timestamp), body


def reason(verifier: WebhookVerifier, headers: dict, body: bytes) -> str:
    with pytest.raises(WebhookVerificationError) as err:
        verifier.verify(headers, body)
    return err.value.reason


def test_genuine_webhook_verifies() -> None:
    headers, body = make()
    assert WebhookVerifier(SECRET).verify(headers, body).id == "e1"


def test_tampered_body_is_rejected() -> None:
    headers, body = make()
    assert reason(WebhookVerifier(SECRET), headers, body.replace(b"acme", b"evil")) == "bad_signature"


def test_wrong_secret_is_rejected() -> None:
    headers, body = make()
    assert reason(WebhookVerifier("another-secret"), headers, body) == "bad_signature"


def test_stale_timestamp_is_rejected_even_when_signed() -> None:
    body = make()[1]
    old = int(time.time()) - 301
    headers = signed_headers(SECRET, body, event="data.changed", delivery_id="e1", timestamp=old)
    assert reason(WebhookVerifier(SECRET, tolerance=300), headers, body) == "stale_timestamp"
    future = WebhookVerifier(SECRET, tolerance=300, clock=lambda: old - 301)
    assert reason(future, headers, body) == "stale_timestamp"


def test_replay_is_rejected_but_a_fresh_retry_is_not() -> None:
    verifier = WebhookVerifier(SECRET)
    headers, body = make()
    verifier.verify(headers, body)
    assert reason(verifier, headers, body) == "replayed"
    retry = signed_headers(SECRET, body, event="data.changed", delivery_id="e1", timestamp=int(time.time()) + 1)
    assert verifier.verify(retry, body).id == "e1"


def test_timestamp_is_part_of_the_signature() -> None:
    headers, body = make()
    headers["X-MCP-Timestamp"] = str(int(headers["X-MCP-Timestamp"]) + 1)
    assert reason(WebhookVerifier(SECRET), headers, body) == "bad_signature"


def test_missing_headers_and_bad_body() -> None:
    assert reason(WebhookVerifier(SECRET), {}, b"{}") == "missing_header"
    now = int(time.time())
    headers = {"X-MCP-Timestamp": str(now), "X-MCP-Signature": sign(SECRET, now, b"[1]")}
    assert reason(WebhookVerifier(SECRET), headers, b"[1]") == "bad_body"


def test_rotation_accepts_either_secret() -> None:
    headers, body = make()
    assert WebhookVerifier(["new-secret", SECRET]).verify(headers, body).type == "data.changed"


def test_replay_cache_forgets_after_the_window() -> None:
    cache = ReplayCache()
    assert cache.add_if_new("sig", expires_at=100, now=50)
    assert not cache.add_if_new("sig", expires_at=100, now=60)
    assert cache.add_if_new("sig", expires_at=200, now=101)
    small = ReplayCache(max_entries=2)
    for i in range(5):
        assert small.add_if_new(f"s{i}", expires_at=1000, now=0)
    assert len(small._seen) <= 2  # bounded
