"""The Kubernetes manifests, rendered offline by kustomize (base and both overlays), validate against the
Kubernetes schemas (kubernetes-validate, strict: unknown fields fail) and KEDA's (cloudcoil's KEDA 2.16
models, with unknown fields refused here), and keep the promises of the deploy issue: probes on the health
endpoints, non-root, sized resources, a PDB and a lag-based ScaledObject per consumer capped at the topics'
partitions, Secret references, the tenant settings, topic and migration Jobs, a NetworkPolicy."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TARGETS = {"base": K8S / "base", "local": K8S / "overlays" / "local", "production": K8S / "overlays" / "production"}
KUBERNETES_VERSION = "1.31.0"  # validated against this API version's schemas (strict)

# What each consumer reads, and its group (the services' settings.consumer_group); test_service_skeletons agrees.
CONSUMERS = {
    "ingest": ({"datasource.created", "run.finished"}, "apev-ingest"),
    "jobs": ({"job.requested"}, "apev-jobs"),
    "serving": ({"run.finished", "endpoint.scale.requested"}, "apev-serving"),
    "writeback": ({"insight.created"}, "apev-writeback"),
    "monitor": ({"run.finished", "cost.sampled", "serving.latency.sampled", "lineage.emitted"}, "apev-monitor"),
}
# The Kafka scaler's metadata (KEDA docs, "Apache Kafka" scaler); anything else is a typo KEDA ignores.
KAFKA_SCALER_KEYS = {
    "bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv", "topic", "topicFromEnv",
    "lagThreshold", "activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers", "excludePersistentLag",
    "scaleToZeroOnInvalidOffset", "limitToPartitionsWithLag", "partitionLimitation", "version", "sasl", "tls",
}  # fmt: skip


@functools.cache
def render(target: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        ["bash", str(K8S / "kustomize.sh"), str(TARGETS[target])], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def keda_model(kind: str) -> type[BaseModel]:
    from cloudcoil.models.keda import v1alpha1

    return getattr(v1alpha1, kind)  # type: ignore[no-any-return]


def _unknown_fields(given: Any, parsed: Any, path: str = "") -> list[str]:
    """Keys of `given` that the model dropped (pydantic ignores extras; the CRD schema would refuse them)."""
    if isinstance(given, dict) and isinstance(parsed, dict):
        out = [f"{path}.{k}" for k in given if k not in parsed]
        return out + [e for k in given if k in parsed for e in _unknown_fields(given[k], parsed[k], f"{path}.{k}")]
    if isinstance(given, list) and isinstance(parsed, list):
        return [
            e
            for i, (g, p) in enumerate(zip(given, parsed, strict=False))
            for e in _unknown_fields(g, p, f"{path}[{i}]")
        ]
    return []


def validate_keda(doc: dict[str, Any]) -> None:
    model = keda_model(doc["kind"]).model_validate(doc)
    parsed = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    unknown = _unknown_fields(doc, parsed)
    assert not unknown, f"{doc['kind']}/{doc['metadata']['name']}: fields not in KEDA's schema: {unknown}"


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_manifest_validates_against_the_schemas(target: str) -> None:
    docs = render(target)
    assert len(docs) >= 25
    for doc in docs:
        where = f"{target}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["apiVersion"].startswith("keda.sh/"):
            validate_keda(doc)
        else:
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(f"{where}: {exc.message} at {list(exc.path)}") from None


def test_the_validators_refuse_what_is_wrong() -> None:
    deployment = next(iter(of_kind(render("base"), "Deployment").values()))
    bad = yaml.safe_load(yaml.safe_dump(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
    scaled = yaml.safe_load(yaml.safe_dump(next(iter(of_kind(render("base"), "ScaledObject").values()))))
    scaled["spec"]["maxReplicas"] = 3
    with pytest.raises(AssertionError, match="maxReplicas"):
        validate_keda(scaled)
    del scaled["spec"]["maxReplicas"]
    scaled["spec"]["maxReplicaCount"] = "many"
    with pytest.raises(ValueError, match="maxReplicaCount"):
        validate_keda(scaled)


@pytest.mark.parametrize("target", list(TARGETS))
def test_deployments_probe_health_run_as_non_root_and_are_sized(target: str) -> None:
    deployments = of_kind(render(target), "Deployment")
    for service in CONSUMERS:
        spec = deployments[f"apev-{service}"]["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["args"] == [service]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        resources = container["resources"]
        assert resources["requests"]["memory"].endswith("Mi") and resources["limits"]["memory"].endswith("Mi")
        assert int(resources["limits"]["memory"][:-2]) >= 2 * int(resources["requests"]["memory"][:-2]) * 0.9
        images = {c["image"] for d in deployments.values() for c in d["spec"]["template"]["spec"]["containers"]}
    assert len({i for i in images if "kafka" not in i and "postgres" not in i}) == 1, images  # one image


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_pdb_and_a_lag_scaler_per_consumer_capped_at_the_partitions(target: str) -> None:
    docs = render(target)
    config = of_kind(docs, "ConfigMap")["apev-config" if target == "base" else _generated(docs, "apev-config")]
    partitions = int(config["data"]["KAFKA_TOPIC_PARTITIONS"])
    pdbs, scaled = of_kind(docs, "PodDisruptionBudget"), of_kind(docs, "ScaledObject")
    deployments = of_kind(docs, "Deployment")
    for service, (topics, group) in CONSUMERS.items():
        labels = deployments[f"apev-{service}"]["spec"]["template"]["metadata"]["labels"]
        selector = pdbs[f"apev-{service}"]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), f"{service}: the PDB selects none of its pods"
        so = scaled[f"apev-{service}"]["spec"]
        assert so["scaleTargetRef"]["name"] == f"apev-{service}"
        assert 1 <= so["minReplicaCount"] <= so["maxReplicaCount"] <= partitions, (service, partitions)
        assert {t["metadata"]["topic"] for t in so["triggers"]} == topics
        for trigger in so["triggers"]:
            meta = trigger["metadata"]
            assert trigger["type"] == "kafka" and meta["consumerGroup"] == group
            assert set(meta) <= KAFKA_SCALER_KEYS, set(meta) - KAFKA_SCALER_KEYS
            assert meta["allowIdleConsumers"] == "false" and int(meta["lagThreshold"]) > 0
            # the scaler reads the same bootstrap servers as the consumers (the container's env)
            assert meta["bootstrapServersFromEnv"] == "KAFKA_BOOTSTRAP_SERVERS"


def _generated(docs: tuple[dict[str, Any], ...], name: str) -> str:
    """kustomize suffixes generated ConfigMaps/Secrets with a hash; patched ones keep their name."""
    names = [d["metadata"]["name"] for d in docs if d["kind"] in ("ConfigMap", "Secret")]
    return name if name in names else next(n for n in names if n.startswith(name + "-"))


def test_consumer_groups_are_the_services_own() -> None:
    import importlib

    for service, (_, group) in CONSUMERS.items():
        assert importlib.import_module(f"apev_{service}.settings").Settings().consumer_group == group


@pytest.mark.parametrize("target", list(TARGETS))
def test_secret_references_cover_databricks_mcp_slack_pagerduty(target: str) -> None:
    docs = render(target)
    refs: dict[str, set[str]] = {}
    for dep in of_kind(docs, "Deployment").values():
        for container in dep["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.setdefault(ref["name"].rsplit("-", 1)[0] if target == "local" else ref["name"], set()).add(
                        env["name"]
                    )
    flat = {v for vs in refs.values() for v in vs}
    for var in ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "MCP_API_KEY",
                "INGEST_MCP_WEBHOOK_SECRET", "MONITOR_SLACK_WEBHOOKS__ALERTS", "WRITEBACK_SLACK_SIGNING_SECRET",
                "MONITOR_PAGERDUTY_ROUTING_KEY", "JOBS_WEBHOOK_PASSWORD"):  # fmt: skip
        assert var in flat, f"{target}: no Secret reference for {var}"
    for dep in (d for n, d in of_kind(docs, "Deployment").items() if n.startswith("apev-")):
        for container in dep["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                assert not ("value" in env and any(w in env["name"] for w in ("TOKEN", "SECRET", "PASSWORD", "KEY"))), (
                    f"{target}: {env['name']} given in clear in a Deployment"
                )


def test_base_tenant_settings_are_deploy_tenants_yaml() -> None:
    docs = render("base")
    tenants = of_kind(docs, "ConfigMap")[_generated(docs, "apev-tenants")]
    assert tenants["data"]["tenants.yaml"] == (ROOT / "deploy" / "tenants.yaml").read_text()
    assert (K8S / "base" / "tenants.yaml").read_text() == (ROOT / "deploy" / "tenants.yaml").read_text()
    for dep in of_kind(docs, "Deployment").values():
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        assert volumes["tenants"]["configMap"]["name"] == tenants["metadata"]["name"]


@pytest.mark.parametrize("target", list(TARGETS))
def test_topic_and_migration_jobs_and_a_network_policy(target: str) -> None:
    docs = render(target)
    jobs = of_kind(docs, "Job")
    assert jobs["apev-topics"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["topics"]
    migrate = jobs["apev-migrate"]["spec"]["template"]["spec"]["containers"][0]
    assert migrate["args"] == ["migrate"]
    names = {e["name"] for e in migrate["env"]}
    for service in CONSUMERS:  # the Job migrates where each service reads its tables
        assert {f"{service.upper()}_DATABASE_URL", f"{service.upper()}_DATABASE_SCHEMA"} <= names
    policy = of_kind(docs, "NetworkPolicy")["apev"]
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "apev"}
