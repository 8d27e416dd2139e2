"""The Dockerfile, parsed (dockerfile-parse): multi-stage, one image whose SERVICE only picks the default
role, uv installing from the frozen lock without dev dependencies, a non-root user, a health check."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "container" / "entrypoint.sh"
SERVICES = ("ingest", "jobs", "serving", "writeback", "monitor")


def parsed() -> list[dict[str, str]]:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    return parser.structure  # type: ignore[no-any-return]


def stages(structure: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    out: list[list[dict[str, str]]] = []
    for instr in structure:
        if instr["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(instr)
    return out


def test_multi_stage_with_a_runtime_stage_last() -> None:
    all_stages = stages(parsed())
    assert len(all_stages) >= 3
    names = [s[0]["value"].split()[-1] for s in all_stages]
    assert names[-1] == "runtime" and "build" in names


def test_uv_installs_from_the_frozen_lock_without_dev_dependencies() -> None:
    build = next(s for s in stages(parsed()) if s[0]["value"].endswith(" AS build"))
    syncs = [i["value"] for i in build if i["instruction"] == "RUN" and "uv sync" in i["value"]]
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs)
    copied = " ".join(i["value"] for i in build if i["instruction"] == "COPY")
    assert "uv.lock" in copied
    assert not any("pip install" in i["value"] for s in stages(parsed()) for i in s if i["instruction"] == "RUN")


def test_the_runtime_stage_runs_as_a_non_root_user_with_a_health_check() -> None:
    runtime = stages(parsed())[-1]
    users = [i["value"].strip() for i in runtime if i["instruction"] == "USER"]
    assert users, "no USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and (not user.isdigit() or int(user) >= 1000)
    instructions = [i["instruction"] for i in runtime]
    assert instructions.index("USER") > max(
        i for i, x in enumerate(instructions) if x == "RUN"
    )  # nothing after runs as root
    (health,) = [i["value"] for i in runtime if i["instruction"] == "HEALTHCHECK"]
    assert "/healthz" in health
    assert not any(i["instruction"] == "COPY" and "uv" in i["value"].split()[0] for i in runtime)  # no uv at run time


def test_one_image_for_all_services() -> None:
    structure = parsed()
    args = [i["value"] for i in structure if i["instruction"] == "ARG"]
    assert any(re.match(r"SERVICE(=|$)", a) for a in args)
    text = (ROOT / "Dockerfile").read_text()
    # SERVICE picks the default role only; every service's package is installed whatever it is.
    assert not re.search(r"--package\s+\S*\$\{?SERVICE", text)
    entry = ENTRYPOINT.read_text()
    for role in (*SERVICES, "migrate", "topics", "workspace", "mcp", "sinks"):
        assert re.search(rf"\b{role}\b[|)]", entry), role
    for member in ("services/ingest", "services/jobs", "services/serving", "services/writeback", "services/monitor"):
        assert f"COPY {member}/pyproject.toml" in text, member


def test_the_entrypoint_is_valid_shell_and_maps_a_role_to_its_settings(tmp_path: Path) -> None:
    assert subprocess.run(["sh", "-n", str(ENTRYPOINT)], capture_output=True).returncode == 0
    # Run it with `python` replaced by a recorder: the jobs role gets its host/port/data settings.
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "$@"; env | grep ^JOBS_ | sort\n')
    fake.chmod(0o755)
    out = subprocess.run(
        ["sh", str(ENTRYPOINT), "jobs"], capture_output=True, text=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin"}
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "-m apev_jobs"
    assert {"JOBS_HTTP_HOST=0.0.0.0", "JOBS_HTTP_PORT=8080", "JOBS_DATA_DIR=/app/data"} <= set(lines)
