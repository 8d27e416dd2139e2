"""One served entity's worker process, seen from the server: start, call with a concurrency limit, stop.

A replica is "scaled up" while its process is up; that time is what serving bills. Scaled to zero, it has no
process, and the next call starts one (the cold start) and waits for it to load the model.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import IO, Any

from apev_workspace.jobs.execution import kill_tree
from apev_workspace.serving.exceptions import ModelError, Overloaded, WorkerFailed, WorkerUnavailable

# Provisioned concurrency per workload size: requests a worker answers at once (the SDK documents Small as
# 4, Medium up to 16, Large up to 64). Callers beyond it wait for a free slot, then get 429.
CONCURRENCY = {"Small": 4, "Medium": 16, "Large": 64}
QUEUE_WAIT_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 297.0  # Databricks' model serving request timeout


def now_ms() -> int:
    return int(time.time() * 1000)


class Replica:
    def __init__(
        self,
        *,
        spec_key: tuple[Any, ...],
        entity_name: str,
        workload_size: str,
        model_file: Path,
        env: dict[str, str],
        log_path: Path,
        on_scaled_down: Callable[[Replica, int, int], None],
    ) -> None:
        self.spec_key = spec_key  # what makes two served entities the same deployment
        self.entity_name = entity_name
        self.workload_size = workload_size
        self.limit = CONCURRENCY.get(workload_size, CONCURRENCY["Small"])
        self.model_file = model_file
        self.env = env
        self.log_path = log_path
        self.on_scaled_down = on_scaled_down  # (replica, up since ms, down at ms): bill the time it was up
        self.state = "stopped"  # stopped | starting | ready | failed
        self.error: str | None = None
        self.inflight = 0  # guarded by the serving lock
        self.last_used = time.monotonic()
        self.up_since_ms: int | None = None
        self.starts = 0
        self.retiring = False
        self._proc: subprocess.Popen[str] | None = None
        self._log: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._write = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.limit)
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[dict[str, Any]]] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self, startup_delay: float = 0.0) -> None:
        """Spawn the worker unless it is up or coming up; returns at once (`wait_ready` waits)."""
        with self._lock:
            if self.state in ("starting", "ready"):
                return
            self.state, self.error = "starting", None
            self._ready.clear()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            if self._log is not None:
                self._log.close()  # left open by a worker that died on its own
            self._log = self.log_path.open("ab")
            args = [sys.executable, "-m", "apev_workspace.serving.worker", str(self.model_file)]
            args += ["--concurrency", str(self.limit), "--startup-delay", str(startup_delay)]
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                cwd=self.model_file.parent,
                env=self.env,
                text=True,
                start_new_session=True,
            )
            self.up_since_ms = now_ms()
            self.starts += 1
            self.last_used = time.monotonic()
            proc = self._proc
        threading.Thread(target=self._read, args=(proc,), name=f"apev-serving-{self.entity_name}", daemon=True).start()

    def wait_ready(self, timeout: float) -> None:
        if not self._ready.wait(timeout):
            raise WorkerUnavailable(f"Served entity {self.entity_name} did not start within {timeout:.0f} s")
        if self.state == "failed":
            raise WorkerFailed(f"Served entity {self.entity_name} failed to start: {self.error}")
        if self.state != "ready":
            raise WorkerUnavailable(f"Served entity {self.entity_name} is not available: {self.error}")

    def stop(self) -> None:
        """Scale down: end the process, fail what was still waiting, bill the time it was up."""
        with self._lock:
            proc, self._proc = self._proc, None
            up_since, self.up_since_ms = self.up_since_ms, None
            if self.state != "failed":
                self.state = "stopped"
            self._ready.set()
        if proc is not None:
            with contextlib.suppress(OSError):
                if proc.stdin:
                    proc.stdin.close()
            kill_tree(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._fail_pending("The served entity was scaled down while the request was waiting")
        if up_since is not None:
            self.on_scaled_down(self, up_since, now_ms())

    def flush_usage(self) -> None:
        """Bill the time up so far and keep running (called at hour boundaries and before billing is read)."""
        with self._lock:
            if self.up_since_ms is None:
                return
            since, self.up_since_ms = self.up_since_ms, now_ms()
        self.on_scaled_down(self, since, self.up_since_ms)

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "event" in message:
                with self._lock:
                    if self._proc is proc:
                        ready = message["event"] == "ready"
                        self.state = "ready" if ready else "failed"
                        self.error = None if ready else str(message.get("error"))
                        self._ready.set()
                continue
            future = self._pending.pop(int(message.get("id", 0)), None)
            if future is not None and not future.done():
                future.set_result(message)
        proc.wait()
        with self._lock:
            if self._proc is proc:  # died on its own (not stopped): the next call starts a new one
                self.state = "failed" if self.state == "starting" else "stopped"
                self.error = self.error or f"The worker process exited with code {proc.returncode}"
                self._proc = None
                self._ready.set()
                up_since, self.up_since_ms = self.up_since_ms, None
            else:
                up_since = None
        self._fail_pending(f"The served entity's worker exited with code {proc.returncode}")
        if up_since is not None:
            self.on_scaled_down(self, up_since, now_ms())

    def _fail_pending(self, reason: str) -> None:
        for request_id in list(self._pending):
            future = self._pending.pop(request_id, None)
            if future is not None and not future.done():
                future.set_exception(WorkerUnavailable(reason))

    # ------------------------------------------------------------------ requests
    def call(self, kind: str, payload: Any) -> Any:
        """Send one request to the worker, holding one of its concurrency slots; the model's result."""
        if not self._slots.acquire(timeout=QUEUE_WAIT_SECONDS):
            raise Overloaded(f"Served entity {self.entity_name} is at its concurrency limit of {self.limit}")
        try:
            with self._lock:
                proc = self._proc
                if proc is None or proc.stdin is None or self.state != "ready":
                    raise WorkerUnavailable(f"Served entity {self.entity_name} is not running")
                request_id = next(self._ids)
                future: Future[dict[str, Any]] = Future()
                self._pending[request_id] = future
            line = json.dumps({"id": request_id, "kind": kind, "payload": payload}) + "\n"
            try:
                with self._write:
                    proc.stdin.write(line)
                    proc.stdin.flush()
            except (OSError, ValueError):
                self._pending.pop(request_id, None)
                raise WorkerUnavailable(f"Served entity {self.entity_name} stopped accepting requests") from None
            try:
                answer = future.result(timeout=REQUEST_TIMEOUT_SECONDS)
            except FutureTimeout:
                self._pending.pop(request_id, None)
                raise WorkerUnavailable(f"Served entity {self.entity_name} did not answer in time") from None
        finally:
            self._slots.release()
        if not answer.get("ok"):
            raise ModelError(str(answer.get("error")), str(answer.get("stack_trace") or ""))
        return answer.get("result")

    def logs(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")[-1_000_000:]
        except OSError:
            return ""
