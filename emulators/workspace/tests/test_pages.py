"""Run pages: the HTML behind `run_page_url`, task output and job pages, and a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs, ml

from apev_workspace.testing import RunningWorkspace, py_task, upload, wait_run

REPO = Path(__file__).resolve().parents[3]
TASKS = {"extract": "SUCCESS", "load": "SUCCESS", "check": "FAILED", "publish": "UPSTREAM_FAILED"}


def _dag_run(w: WorkspaceClient) -> jobs.Run:
    ok = upload(w, "/Shared/pages/ok.py", "print('rows loaded: 42 <ok>')")
    bad = upload(w, "/Shared/pages/bad.py", "raise RuntimeError('quality check failed: 3 nulls')")
    job = w.jobs.create(
        name="pages-dag",
        tasks=[
            py_task("extract", ok),
            py_task("load", ok, depends_on=("extract",)),
            py_task("check", bad, depends_on=("extract",)),
            py_task("publish", ok, depends_on=("load", "check")),
        ],
    )
    return wait_run(w, w.jobs.run_now(job.job_id).run_id)


def test_run_page_job_page_and_task_output(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    run = _dag_run(w)
    assert run.run_page_url == f"{ws.host}/?o=1234567890123456#job/{run.job_id}/run/{run.run_id}"
    with httpx.Client(base_url=ws.host) as http:  # no token: pages are for a person on this machine
        home = http.get(run.run_page_url)
        assert home.status_code == 200 and "location.replace" in home.text  # the fragment is resolved client-side
        assert f"/jobs/{run.job_id}/runs/{run.run_id}" in home.text  # and linked for browsers without scripts

        page = http.get(f"/jobs/{run.job_id}/runs/{run.run_id}")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        for key, state in TASKS.items():
            assert f'data-task="{key}" data-state="{state}"' in html
        assert html.count('class="edge"') == 4
        assert "Task check failed with message: RuntimeError: quality check failed: 3 nulls" in html
        assert not re.search(r"<(script|link|img|iframe)\b|@import|url\(http", html)  # nothing fetched

        check = next(t for t in run.tasks if t.task_key == "check")
        assert f'href="/jobs/{run.job_id}/runs/{check.run_id}"' in html
        output = http.get(f"/jobs/{run.job_id}/runs/{check.run_id}").text
        assert "RuntimeError: quality check failed: 3 nulls" in output and "Traceback" in output
        extract = next(t for t in run.tasks if t.task_key == "extract")
        assert "rows loaded: 42 &lt;ok&gt;" in http.get(f"/jobs/{run.job_id}/runs/{extract.run_id}").text

        job_page = http.get(f"/jobs/{run.job_id}").text
        assert f'href="/jobs/{run.job_id}/runs/{run.run_id}"' in job_page and "pages-dag" in job_page
        assert http.get("/jobs/1/runs/2").status_code == 404


def test_retries_and_active_runs_render(w: WorkspaceClient, ws: RunningWorkspace, tmp_path: Path) -> None:
    flaky = upload(
        w,
        "/Shared/pages/flaky.py",
        "import os, sys\nif not os.path.exists(sys.argv[1]):\n    open(sys.argv[1], 'w').close(); sys.exit(3)\n",
    )
    job = w.jobs.create(name="retry-page", tasks=[py_task("flaky", flaky, str(tmp_path / "m"), max_retries=2)])
    run = wait_run(w, w.jobs.run_now(job.job_id).run_id)
    with httpx.Client(base_url=ws.host) as http:
        html = http.get(f"/jobs/{run.job_id}/runs/{run.run_id}").text
        assert "2 (1 retry)" in html and "attempt 2" in html
        output = http.get(f"/jobs/{run.job_id}/runs/{run.tasks[0].run_id}").text
        assert "attempt 1</a>" in output  # link to the earlier, failed attempt


# ---------------------------------------------------------------------- headless Chromium
@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed by deploy/chromium.sh when missing (a fresh CI machine)."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found is None:
        done = subprocess.run(
            ["bash", str(REPO / "deploy" / "chromium.sh")], capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"deploy/chromium.sh failed: {done.stderr[-2000:]}"
        found = done.stdout.strip().rpartition("=")[2]
    return found


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--no-pings",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # no name outside this machine resolves
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",  # let the home page's script follow run_page_url's fragment
    ]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=120)


def test_run_page_in_headless_chromium(w: WorkspaceClient, chromium: str, tmp_path: Path) -> None:
    run = _dag_run(w)
    assert run.run_page_url.startswith("http://127.0.0.1:")  # never anything but the local workspace
    dom = _chromium(chromium, tmp_path / "profile", "--dump-dom", run.run_page_url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert f"run {run.run_id}" in dom.stdout  # the browser followed the fragment to the run page
    for key, state in TASKS.items():
        assert f'data-task="{key}" data-state="{state}"' in dom.stdout
        assert f'<span class="task-name">{key}</span>' in dom.stdout

    out_dir = REPO / "test-output"
    out_dir.mkdir(exist_ok=True)
    shot = tmp_path / "run-page.png"
    done = _chromium(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1400,900", run.run_page_url)
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    shutil.copy(shot, out_dir / "run-page.png")


def test_mlflow_run_link_in_headless_chromium(
    w: WorkspaceClient, ws: RunningWorkspace, chromium: str, tmp_path: Path
) -> None:
    """Databricks' MLflow run link `<host>/#mlflow/experiments/<id>/runs/<run>` lands on the run page."""
    experiment_id = w.experiments.create_experiment("/Shared/browser-test").experiment_id
    run = w.experiments.create_run(experiment_id=experiment_id, run_name="deploy-7").run
    assert run is not None and run.info is not None and run.info.run_id
    w.experiments.log_metric(run_id=run.info.run_id, key="answer_accuracy", value=0.625, timestamp=1)
    w.experiments.log_param(run_id=run.info.run_id, key="model_source", value="/Shared/m.py")
    w.experiments.update_run(run_id=run.info.run_id, status=ml.UpdateRunStatus.FINISHED, end_time=2)
    link = f"{ws.host}/?o=1234567890123456#mlflow/experiments/{experiment_id}/runs/{run.info.run_id}"
    dom = _chromium(chromium, tmp_path / "profile", "--dump-dom", link)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<h1>deploy-7</h1>" in dom.stdout and "answer_accuracy" in dom.stdout and "0.625" in dom.stdout
    assert "/Shared/m.py" in dom.stdout and run.info.run_id in dom.stdout
