"""The operator console in a real browser (Playwright driving Debian's Chromium) against one running stack for the
module: Kafka, the three stand-ins and the five services on their embedded defaults, as `make run` starts them.

State is set up through the services' own APIs and events, not the demo: a small tenant onboarded whose first
ingestion run fails (a fault of the local workspace refuses the landing volume), a payroll insight held for
approval, and a data source of a tenant MCP does not know yet, dead-lettered. The operator then repairs the run,
sees the data fresh, approves the insight and finds the value written to MCP, silences the alert the failure
raised, and replays the dead letter (dry run first) once the tenant exists. A tenant-role user sees only its own
tenant and gets no admin page. Each page is photographed at 1280 px and at phone width under
`test-output/console/`. Last, one service is stopped and its page shows it down while the rest renders.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from apev_contracts import DatasourceCreated, InsightCreated
from apev_contracts.envelope import encode, new_event
from apev_contracts.topics import all_topics
from apev_runtime.auth import mint_token
from apev_stack.kafka import create_topics
from apev_stack.paths import repo_root
from apev_stack.supervisor import LOCAL_DATABRICKS_TOKEN, LOCAL_JWT_SECRET, LOCAL_MCP_KEY, Stack, choose_ports

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

TENANT, OTHER = "demo-dental", "replay-co"  # the MCP simulator knows `acme` already: not this one
SHOTS = repo_root() / "test-output" / "console"
PHONE = {"width": 390, "height": 844}
WIDE = {"width": 1280, "height": 900}
REGISTERED = ("registered", "job_requested", "first_run_finished")


def until(what: str, probe: Callable[[], Any], timeout: float = 90.0, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s (last: {last!r})"[:2000]
        time.sleep(every)


class World:
    def __init__(self, stack: Stack, prefix: str) -> None:
        self.stack = stack
        self.prefix = prefix
        self.urls = stack.urls()
        self.http = httpx.Client(timeout=30)
        self.facts: dict[str, Any] = {}

    def token(self, tenant: str = TENANT, role: str = "admin", subject: str = "ops-anna") -> str:
        return mint_token(LOCAL_JWT_SECRET, tenant_id=tenant, roles=[role], subject=subject)

    def api(self, part: str, method: str, path: str, tenant: str = TENANT, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(tenant)}"}
        return self.http.request(method, self.urls[part] + path, headers=headers, **kw)

    def mcp(self, method: str, path: str, tenant: str = TENANT, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {LOCAL_MCP_KEY}", "X-Tenant-ID": tenant}
        return self.http.request(method, self.urls["mcp"] + path, headers=headers, **kw)

    def workspace(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {LOCAL_DATABRICKS_TOKEN}"}
        return self.http.request(method, self.urls["workspace"] + path, headers=headers, **kw)

    def publish(self, *events: Any) -> None:
        async def go() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.stack.bootstrap, enable_idempotence=True)
            await producer.start()
            try:
                for event in events:
                    record = encode(event)
                    await producer.send_and_wait(
                        self.prefix + record.topic, record.value, key=record.key, headers=record.headers
                    )
            finally:
                await producer.stop()

        asyncio.run(go())

    def datasource(self, tenant: str, ds: str) -> dict[str, Any] | None:
        got = self.api("ingest", "GET", f"/api/v1/datasources/{ds}", tenant=tenant)
        return got.json() if got.status_code == 200 else None


def _rules_file(folder: Path) -> Path:
    """The packaged rules, with a job failing once enough to page (one failed run in this module, not two)."""
    from apev_monitor import rules

    source = Path(rules.__file__).with_name("rules.yaml")
    body = yaml.safe_load(source.read_text())
    for rule in body["rules"]:
        if rule["name"] == "job_failures":
            rule["params"]["threshold"] = 1
    body.setdefault("defaults", {})["group_wait"] = "1s"
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("console")
    prefix = f"cs{uuid.uuid4().hex[:6]}."
    asyncio.run(create_topics(kafka_bootstrap, [prefix + t for t in all_topics()]))
    saved = {k: os.environ.pop(k) for k in ("WORKSPACE_PORT", "MCP_PORT", "SINKS_PORT", "SMTP_PORT") if k in os.environ}
    stack = Stack(kafka_bootstrap, folder / "data", choose_ports(free=True), topic_prefix=prefix, ready_timeout=300)
    os.environ.update(saved)
    monitor = next(c for c in stack.services if c.name == "monitor")
    monitor.env |= {
        "MONITOR_RULES_FILE": str(_rules_file(folder)),
        "MONITOR_EVALUATE_INTERVAL_SECONDS": "1",
        "MONITOR_CONSOLE_POLL_SECONDS": "1",
        "MONITOR_SAMPLE_INTERVAL_SECONDS": "5",  # the billing sampler: cost samples of the runs below
    }
    started = time.monotonic()
    w = World(stack, prefix)
    try:
        stack.start(threading.Event())
        w.urls = stack.urls()
        w.facts["stack_seconds"] = time.monotonic() - started
        _set_up(w)
        w.facts["setup_seconds"] = time.monotonic() - started
        yield w
    finally:
        w.http.close()
        stack.stop()
        logs = SHOTS / "logs"  # what each part logged, beside the screenshots
        logs.mkdir(parents=True, exist_ok=True)
        for log in stack.logs_dir.glob("*.log"):
            shutil.copy(log, logs / log.name)


def _set_up(w: World) -> None:
    """A tenant with one data source whose first run fails; a held payroll insight; a dead-lettered data source."""
    made = w.mcp("POST", "/api/v1/tenants/", json={"tenant_code": TENANT, "tenant_name": "Demo Dental"})
    assert made.status_code in (201, 409), made.text
    fault = {"method": "PUT", "path": "/api/2.0/fs/files/Volumes/*", "action": "error", "status": 400,
             "error_code": "INVALID_PARAMETER_VALUE", "message": "landing volume refused (console test fault)",
             "count": 1000}  # fmt: skip
    assert w.workspace("POST", "/__admin/faults", json=fault).status_code in (200, 201)
    w.publish(
        new_event(
            DatasourceCreated(tenant_id=TENANT, datasource_id="adp-1", name="ADP", system="adp",
                              entities=["employees"], mcp_tenant_code=TENANT),
            tenant_id=TENANT, source="tests/console",
        ),
        new_event(  # MCP has no tenant `replay-co` yet: a permanent dead letter until it does
            DatasourceCreated(tenant_id=OTHER, datasource_id="ns-1", name="NetSuite", system="netsuite",
                              entities=["financials"], mcp_tenant_code=OTHER),
            tenant_id=OTHER, source="tests/console",
        ),
    )  # fmt: skip
    employee = w.mcp("GET", "/api/v1/data/employees", params={"limit": 1}).json()[0]
    salary = f"{Decimal(employee['ANNUAL_SALARY']) + Decimal('1500.00'):.2f}"
    insight = f"console-{uuid.uuid4().hex[:10]}"
    w.publish(
        new_event(
            InsightCreated(tenant_id=TENANT, insight_id=insight, agent_id="demo", target_system="adp",
                           entity_type="employees", entity_id=employee["EMPLOYEE_ID"],
                           changes={"ANNUAL_SALARY": salary}, confidence=0.93,
                           reason="Salary below the location's band for this role (console test)"),
            tenant_id=TENANT, source="tests/console",
        )
    )  # fmt: skip
    w.facts |= {"insight": insight, "employee": employee["EMPLOYEE_ID"], "salary": salary,
                "old_salary": employee["ANNUAL_SALARY"]}  # fmt: skip

    def failed() -> dict[str, Any] | None:
        ds = w.datasource(TENANT, "adp-1")
        return ds if ds and ds.get("last_run") and ds["last_run"].get("outcome") else None

    ds = until("the first ingestion run of adp-1 to end", failed, 120)
    assert ds["last_run"]["outcome"] == "failure", ds
    w.facts["run_id"] = ds["last_run"]["run_id"]
    assert w.workspace("DELETE", "/__admin/faults").status_code in (200, 204)


@pytest.fixture(scope="module")
def browser(world: World) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        done = subprocess.run(["bash", str(repo_root() / "deploy" / "chromium.sh")], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        chromium = done.stdout.strip().rpartition("=")[2]
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


def _session(browser: Any, world: World, token: str, viewport: dict[str, int] = WIDE) -> Any:
    """A browser context signed in through the login form (the token pasted, the cookie set by the console)."""
    context = browser.new_context(viewport=viewport, base_url=world.urls["monitor"])
    page = context.new_page()
    page.set_default_timeout(90_000)  # a loaded machine (the suite on 2 cores) answers slowly
    page.goto("/console/")
    assert "/console/login" in page.url  # not signed in yet
    page.fill("#token", token)
    page.click("#sign-in")
    page.wait_for_url(lambda url: "/console/tenants" in url and "/login" not in url)
    nav = page.locator('a[data-nav="tenants"]')
    assert nav.count() == 1, page.content()[:3000]  # signed in: the page with its navigation
    return page


def _shot(page: Any, name: str) -> None:
    """The page as it is at 1280 px, and the same URL at phone width (which must not scroll sideways)."""
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    phone = page.context.browser.new_context(viewport=PHONE)
    try:
        phone.add_cookies(page.context.cookies())
        small = phone.new_page()
        small.set_default_timeout(90_000)
        small.goto(page.url)
        width = small.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"] + 2, f"{name}: {width} px wide on a {PHONE['width']} px screen"
        small.screenshot(path=str(SHOTS / f"{name}-phone.png"), full_page=True)
    finally:
        phone.close()


def test_operator_silences_the_alert_the_failed_run_raised(world: World, browser: Any) -> None:
    page = _session(browser, world, world.token())
    page.click('a[data-nav="alerts"]')
    alert = page.locator('tr[data-rule="job_failures"]').first
    alert.wait_for(timeout=60_000)
    assert alert.get_attribute("data-silenced") == "false"
    alert.locator("button[data-silence]").click()
    page.wait_for_selector("p.notice")
    page.wait_for_selector('tr[data-rule="job_failures"][data-silenced="true"]', timeout=30_000)
    silences = world.api("monitor", "GET", "/api/v1/monitor/silences").json()["silences"]
    assert [s["matchers"]["rule"] for s in silences if s["state"] == "active"] == ["job_failures"]
    _shot(page, "alerts")
    page.context.close()


def test_operator_signs_in_repairs_the_failed_run_and_sees_the_data_fresh(world: World, browser: Any) -> None:
    page = _session(browser, world, world.token())
    row = page.locator('tr[data-datasource="adp-1"]')
    assert row.count() == 1 and "failure" in row.inner_text()
    assert row.locator("[data-fresh]").get_attribute("data-fresh") == "false"

    page.click('a[data-nav="runs"]')
    page.select_option('select[name="result"]', "failure")
    page.click('button:has-text("filter")')
    run_id = world.facts["run_id"]
    failed = page.locator(f'tr[data-run="{run_id}"]')
    assert failed.get_attribute("data-outcome") == "failure"
    assert "landing volume refused" in failed.inner_text()  # the error, from the run's run.finished
    _shot(page, "runs")
    failed.locator("a").first.click()
    page.wait_for_url(f"**/console/runs/{run_id}**")
    assert page.locator('section.attempt[data-attempt="0"]').get_attribute("data-outcome") == "failure"
    assert page.locator("tr[data-task]").count() >= 2  # the run's tasks, from its run.finished
    assert page.locator('section.attempt[data-attempt="0"] tr[data-task] .state-failed').count() >= 1
    page.click("#repair")
    page.wait_for_selector("p.notice")
    assert "repair requested" in page.inner_text("p.notice")
    # The page refreshes itself (no reload): the repair's attempt appears and succeeds.
    page.wait_for_selector('section.attempt[data-attempt="1"][data-outcome="success"]', timeout=120_000)
    assert page.locator("#run").get_attribute("data-outcome") == "success"
    _shot(page, "run")

    page.click('a[data-nav="tenants"]')
    page.wait_for_selector('tr[data-datasource="adp-1"] [data-fresh="true"]', timeout=60_000)
    page.wait_for_selector('tr[data-table^="silver."]', timeout=60_000)
    counts = {
        r.get_attribute("data-table"): r.locator("td.num").inner_text() for r in page.locator("tr[data-table]").all()
    }
    assert any(k.startswith("bronze.") and v not in ("0", "?") for k, v in counts.items()), counts
    _shot(page, "tenants")

    # a table's name links to its lineage: the graph of the runs and tables that built it (stored by the monitor)
    silver = page.locator('a[data-lineage^="silver."]').first.get_attribute("data-lineage")
    page.click(f'a[data-lineage="{silver}"]')
    for _ in range(60):  # the repaired run's lineage events are consumed shortly after its run.finished
        if page.locator("#lineage-nodes").count():
            break
        page.wait_for_timeout(1000)
        page.reload()
    rows = page.locator("#lineage-nodes tr[data-node]").all()
    kinds = {r.get_attribute("data-kind") for r in rows}
    assert {"dataset", "run", "job"} <= kinds, page.content()[:3000]
    assert any(".bronze." in (r.get_attribute("data-name") or "") for r in rows)  # upstream of the silver table
    assert page.locator("svg.lineage a[data-node]").count() == len(rows)
    _shot(page, "lineage")
    page.context.close()


def test_operator_approves_the_held_insight_and_the_write_back_is_applied(world: World, browser: Any) -> None:
    insight = world.facts["insight"]

    def held() -> bool:
        got = world.api("writeback", "GET", f"/api/v1/writeback/insights/{insight}")
        return got.status_code == 200 and got.json()["insight"]["state"] == "held"

    until("the insight held by writeback", held, 60)
    page = _session(browser, world, world.token())
    page.click('a[data-nav="approvals"]')
    card = page.locator(f'section.insight[data-insight="{insight}"]')
    assert world.facts["salary"] in card.locator("td.new").inner_text()
    _shot(page, "approvals")
    card.locator(f'button[data-approve="{insight}"]').click()
    page.wait_for_selector("p.notice")
    page.wait_for_selector(f'#decided tr[data-insight="{insight}"][data-state="applied"]', timeout=60_000)
    record = next(
        r for r in world.mcp("GET", "/api/v1/data/employees", params={"limit": 1000}).json()
        if r["EMPLOYEE_ID"] == world.facts["employee"]
    )  # fmt: skip
    assert record["ANNUAL_SALARY"] == world.facts["salary"]  # written back to MCP
    trail = world.api("writeback", "GET", f"/api/v1/writeback/insights/{insight}/audit").json()
    assert [d["actor"] for d in trail["decisions"] if d["decision"] == "approve"] == ["console:ops-anna"]
    page.context.close()


def test_operator_replays_the_dead_letter_after_a_dry_run(world: World, browser: Any) -> None:
    page = _session(browser, world, world.token())
    page.click('a[data-nav="dlq"]')
    page.wait_for_selector('#dlq-counts tr[data-topic="datasource.created.dlq"]', timeout=60_000)
    letter = page.locator('tr[data-reason="permanent"]').first
    assert "mcp_tenant_code" in letter.inner_text()
    _shot(page, "dlq")
    made = world.mcp("POST", "/api/v1/tenants/", tenant=OTHER, json={"tenant_code": OTHER, "tenant_name": "Replay Co"})
    assert made.status_code == 201, made.text

    def state() -> str | None:
        return (world.datasource(OTHER, "ns-1") or {}).get("state")

    before = state()
    assert before not in REGISTERED  # stuck: MCP did not know the tenant
    letter.locator("button[data-dry-run]").click()
    preview = page.locator("#dry-run")
    assert "would replay" in preview.inner_text() and "datasource.created" in preview.inner_text()
    time.sleep(2)
    assert state() == before  # a dry run sends nothing
    page.click("#replay-confirm")
    page.wait_for_selector("p.notice")
    assert "replayed datasource.created.dlq" in page.inner_text("p.notice")
    until("the replayed data source registered on MCP", lambda: state() in REGISTERED, 90)
    page.goto(f"/console/tenants?tenant={OTHER}")
    page.wait_for_selector('tr[data-datasource="ns-1"]')
    counts = page.goto("/console/dlq?fragment=1")
    assert counts is not None
    held = re.search(r'data-topic="datasource\.created\.dlq"><td>.*?</td><td class="num">(\d+)</td>', counts.text())
    assert held is not None and held.group(1) == "1"  # the replayed message was not dead-lettered again
    page.context.close()


def test_a_tenant_role_sees_only_its_tenant_and_no_admin_page(world: World, browser: Any) -> None:
    page = _session(browser, world, world.token(TENANT, "analyst", "ana-analyst"))
    assert page.locator('a[data-nav="dlq"]').count() == 0 and page.locator("#tenant-select").count() == 0
    assert {r.get_attribute("data-tenant") for r in page.locator("tr[data-datasource]").all()} == {TENANT}
    assert page.locator(f'[data-tenant-link="{OTHER}"]').count() == 0
    assert page.goto("/console/dlq").status == 403
    assert page.goto(f"/console/tenants?tenant={OTHER}").status == 403
    page.goto("/console/approvals")
    assert page.locator("button[data-approve]").count() == 0  # deciding needs admin
    page.goto("/console/sql")
    page.fill("#statement", "SELECT * FROM agentprovision_acme.gold.financial_summary")
    page.click("#run-sql")
    refusal = page.locator("#sql-refused").inner_text()
    assert "refused (403" in refusal and "agentprovision_acme" in refusal  # the reason names the reference
    tables = world.api("ingest", "GET", f"/api/v1/tenants/{TENANT}/tables").json()["tables"]
    gold = [t["name"] for t in tables if t["layer"] == "gold"]
    statement = f"SELECT count(*) AS n FROM gold.{gold[0]}" if gold else "SELECT 1 AS n"  # noqa: S608 - UC's names
    page.fill("#statement", statement)
    page.click("#run-sql")
    assert page.locator("#sql-rows tbody tr").count() == 1
    _shot(page, "sql")
    page.goto("/console/cost")
    page.wait_for_selector('#skus tr[data-sku="STANDARD_JOBS_COMPUTE"]', timeout=120_000)  # the sampler's, refreshed
    assert page.locator("svg.chart rect > title").count() >= 1  # bars with their values, not "no data yet"
    _shot(page, "cost")
    page.goto("/console/agents")
    assert page.locator("main h1").inner_text() == f"Agents of {TENANT}"
    _shot(page, "agents")
    page.context.close()


def test_a_service_that_is_down_shows_as_down_and_the_rest_renders(world: World, browser: Any) -> None:
    serving = next(c for c in world.stack.services if c.name == "serving")
    assert serving.process is not None
    serving.process.terminate()
    serving.process.wait(timeout=30)
    page = _session(browser, world, world.token())
    page.goto("/console/agents")
    down = page.locator('[data-part="serving"][data-down="true"]')
    assert down.count() == 1 and "serving is down" in down.inner_text()
    assert page.locator("nav a").count() == 9  # the page around it rendered
    page.goto("/console/runs")
    assert page.locator(f'tr[data-run="{world.facts["run_id"]}"]').count() == 1  # the other services still answer
    print(f"\nconsole: stack up in {world.facts['stack_seconds']:.1f}s; screenshots in {SHOTS}")
    page.context.close()
