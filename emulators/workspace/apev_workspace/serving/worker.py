"""A served entity's worker process: loads one model file and answers requests, one JSON object per line.

    python -m apev_workspace.serving.worker MODEL.py [--concurrency N] [--startup-delay S] [--check]

The model is a Python file exposing `predict(inputs: dict) -> dict`. At start the worker prints
`{"event": "ready"}` (or `{"event": "failed", "error": ...}` and exits 1); `--check` stops there (the registry
uses it to move a version to READY). Then each stdin line `{"id", "kind", "payload"}` is answered on stdout by
`{"id", "ok": true, "result"}` or `{"id", "ok": false, "error", "stack_trace"}`, up to N requests at a time.
`kind` is `rows` (predict per row, a list back), `one` (predict once) or `chat` (predict once on the chat body).
Whatever the model prints goes to stderr (the served entity's log), never into the protocol.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any


def load(path: Path) -> Any:
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("served_model", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["served_model"] = module
    spec.loader.exec_module(module)
    predict = getattr(module, "predict", None)
    if not callable(predict):
        raise TypeError(f"{path.name} does not define a callable predict(inputs: dict) -> dict")
    return predict


def answer(predict: Any, request: dict[str, Any]) -> dict[str, Any]:
    try:
        kind, payload = request.get("kind"), request.get("payload")
        result = [predict(row) for row in payload or []] if kind == "rows" else predict(payload)
        return {"id": request.get("id"), "ok": True, "result": json.loads(json.dumps(result, default=str))}
    except Exception as err:  # the model's error goes back to the caller in Databricks' error shape
        return {
            "id": request.get("id"),
            "ok": False,
            "error": f"{type(err).__name__}: {err}",
            "stack_trace": traceback.format_exc(),
        }


def _reply(send: Any, predict: Any, request: dict[str, Any]) -> None:
    send(answer(predict, request))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--startup-delay", type=float, default=0.0)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    # The protocol owns the original stdout; the model's prints go to stderr.
    protocol: IO[str] = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    write_lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with write_lock:
            protocol.write(json.dumps(message) + "\n")
            protocol.flush()

    if args.startup_delay > 0:
        time.sleep(args.startup_delay)  # the container start a cold start pays
    try:
        predict = load(Path(args.model))
    except BaseException as err:
        send({"event": "failed", "error": f"{type(err).__name__}: {err}", "stack_trace": traceback.format_exc()})
        return 1
    send({"event": "ready"})
    if args.check:
        return 0
    with ThreadPoolExecutor(max_workers=max(1, args.concurrency)) as pool:
        for line in sys.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            pool.submit(_reply, send, predict, request)
    return 0


if __name__ == "__main__":
    sys.exit(main())
