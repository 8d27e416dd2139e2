"""The jobs service signed in with OAuth M2M (a service principal's client id and secret) against the local
workspace: job.requested -> a run in the workspace -> run.finished; a wrong secret stops start-up."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from databricks.sdk.service import iam

from apev_contracts.topics import all_topics
from apev_jobs.app import create_app
from apev_runtime.databricks import DatabricksSignInError
from apev_runtime.testing import create_topics
from apev_workspace.testing import RunningWorkspace

from .conftest import Stack, _read_finished, jobs_settings, serve_jobs, task

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def service_principal(ws: RunningWorkspace) -> tuple[str, str]:
    """A service principal in `admins` (the services' own identity) and one OAuth secret of it."""
    w = ws.client()
    admins = next(iter(w.groups.list(filter='displayName eq "admins"')))
    sp = w.service_principals.create(display_name="apev-jobs-m2m", groups=[iam.ComplexValue(value=admins.id)])
    assert sp.id and sp.application_id
    secret = w.service_principal_secrets_proxy.create(service_principal_id=sp.id).secret
    assert secret
    return sp.application_id, secret


def m2m_over(client_id: str, secret: str) -> dict[str, object]:
    return {"databricks_token": None, "DATABRICKS_CLIENT_ID": client_id, "DATABRICKS_CLIENT_SECRET": secret}


async def test_m2m_service_runs_a_job_end_to_end(
    workspace: RunningWorkspace, kafka_bootstrap: str, pg_url: str
) -> None:
    client_id, secret = service_principal(workspace)
    prefix = f"m{uuid.uuid4().hex[:8]}."
    schema = prefix.rstrip(".") + "_jobs"
    await create_topics(kafka_bootstrap, [prefix + t for t in all_topics()], partitions=2)
    settings = jobs_settings(workspace, kafka_bootstrap, pg_url, prefix, schema, **m2m_over(client_id, secret))
    assert settings.databricks_token is None and settings.databricks_client_id == client_id
    async with serve_jobs(settings) as service:
        assert service is not None
        s = Stack(workspace, kafka_bootstrap, pg_url, prefix, schema, settings, service, settings.public_url or "")
        s.producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        await s.producer.start()
        stop = asyncio.Event()
        reader = asyncio.create_task(_read_finished(s, stop))
        try:
            event = s.request(job={"tasks": [task("t")]}, action={"type": "run"})
            await s.send(event)
            run_id = await s.run_of(event.id)
            (done,) = await s.wait_finished(run_id)
            assert done.data.outcome == "success" and done.data.request_id == event.id
            # The job is the service principal's: it was created and run with the M2M token.
            w = workspace.client()
            run = w.jobs.get_run(run_id=int(run_id))
            assert run.creator_user_name == client_id
            assert w.jobs.get(job_id=int(done.data.job_id)).creator_user_name == client_id
        finally:
            stop.set()
            await reader
            await s.producer.stop()


async def test_wrong_secret_fails_start_up_naming_the_client_id(
    workspace: RunningWorkspace, kafka_bootstrap: str, pg_url: str
) -> None:
    client_id, secret = service_principal(workspace)
    wrong = "dose" + "0" * 64
    settings = jobs_settings(workspace, kafka_bootstrap, pg_url, "mx.", "mx_jobs", **m2m_over(client_id, wrong))
    app = create_app(settings)
    with pytest.raises(DatabricksSignInError) as failed:
        async with app.router.lifespan_context(app):
            pytest.fail("the service started with a wrong secret")
    message = str(failed.value)
    assert client_id in message and "invalid_client" in message
    assert wrong not in message and secret not in message
    assert wrong not in repr(app.state.runtime.databricks)
