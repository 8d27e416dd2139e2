"""What a running stack tells the operator tools: one JSON file, `<state dir>/run/stack.json`.

`make run` (and `make demo`, under its own state folder) writes it once everything answers and removes it when
it stops; every CLI command reads it to find the broker, the ports and the local credentials, so nothing has to
be exported in a fresh shell. Without it, commands fall back to the environment or say what to set.
The credentials in it are the embedded default's local-only ones (never a real workspace's token).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from apev_stack.kafka import pid_alive, read_pid
from apev_stack.paths import state_dir


class StackNotFound(RuntimeError):
    """No running stack and no environment variable to use instead; the message says what to set."""


@dataclass
class StackState:
    bootstrap: str
    topic_prefix: str
    urls: dict[str, str]
    """part -> base URL: workspace, mcp, sinks, ingest, jobs, serving, writeback, monitor; smtp as host:port."""
    databricks_token: str
    mcp_admin_key: str
    jwt_secret: str
    data_dir: str
    logs: dict[str, str] = field(default_factory=dict)
    supervisor_pid: int = 0
    kafka_started_by_stack: bool = False

    def url(self, part: str) -> str:
        try:
            return self.urls[part]
        except KeyError:
            raise StackNotFound(f"the running stack has no {part!r} (parts: {sorted(self.urls)})") from None


def state_file(root: Path | None = None) -> Path:
    return (root or state_dir()) / "run" / "stack.json"


def write_state(state: StackState, root: Path | None = None) -> Path:
    path = state_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    tmp.chmod(0o600)  # local credentials only, still: not world-readable
    tmp.replace(path)
    return path


def remove_state(root: Path | None = None) -> None:
    state_file(root).unlink(missing_ok=True)


def load_state(root: Path | None = None) -> StackState | None:
    """The running stack's state, or None when no stack runs (a file left by a killed supervisor is ignored)."""
    path = state_file(root)
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    state = StackState(**data)
    if state.supervisor_pid and not pid_alive(state.supervisor_pid):
        return None
    return state


def running_bootstrap(root: Path | None = None) -> str | None:
    """The background broker of `make kafka` (`<state>/kafka/bootstrap`), if its process lives."""
    home = (root or state_dir()) / "kafka"
    pid = read_pid(home / "broker.pid")
    if pid is None or not pid_alive(pid) or not (home / "bootstrap").exists():
        return None
    return (home / "bootstrap").read_text().strip()


def find_bootstrap(explicit: str | None = None) -> str:
    """`--bootstrap`, else `KAFKA_BOOTSTRAP_SERVERS`, else the running stack's broker, else a clear error."""
    if explicit:
        return explicit
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    state = load_state()
    if state is not None:
        return state.bootstrap
    found = running_bootstrap()
    if found:
        return found
    raise StackNotFound(
        f"no Kafka broker found: no stack runs under {state_dir()} (start one with `make run` or `make kafka`), "
        "and neither --bootstrap nor KAFKA_BOOTSTRAP_SERVERS is set"
    )


def find_topic_prefix(explicit: str | None = None) -> str:
    if explicit is not None:
        return explicit
    if "KAFKA_TOPIC_PREFIX" in os.environ:
        return os.environ["KAFKA_TOPIC_PREFIX"]
    state = load_state()
    return state.topic_prefix if state else ""


def require_state() -> StackState:
    state = load_state()
    if state is None:
        raise StackNotFound(
            f"no running stack under {state_dir()} ({state_file()} is missing or its supervisor is gone): "
            "start it with `make run`, or set APEV_STATE_DIR to the folder of the stack you mean"
        )
    return state


def service_url(part: str, env: str | None = None) -> str:
    """A part's base URL: `<PART>_URL` from the environment (e.g. `JOBS_URL`), else the running stack's."""
    override = os.environ.get(env or f"{part.upper()}_URL")
    if override:
        return override.rstrip("/")
    try:
        return require_state().url(part)
    except StackNotFound as exc:
        raise StackNotFound(f"{exc}; or set {env or part.upper() + '_URL'} to the {part} service's URL") from None
