"""The committed AsyncAPI documents of the five services, `docs/asyncapi/<service>.json`.

    python -m apev_stack.asyncapi            # (re)write them: `make asyncapi`
    python -m apev_stack.asyncapi --check    # exit 1 when a committed document differs (tests/test_asyncapi.py)

Each service's app is built with `create_app(settings)` (nothing starts or connects) on default settings with
placeholder endpoints, and `apev_runtime.asyncapi` describes what its broker registered: the same code that
serves `GET /asyncapi.json` in the running service.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from apev_runtime import asyncapi
from apev_runtime.app import Runtime

SERVICES: Final = ("ingest", "jobs", "serving", "writeback", "monitor")
DEFAULT_DIR: Final = Path(__file__).resolve().parents[2] / "docs" / "asyncapi"
REGENERATE_COMMAND: Final = "make asyncapi"

# Only what `create_app` insists on; nothing here is called. The replica id names serving's per-replica group.
_PLACEHOLDERS: Final = {
    "DATABRICKS_HOST": "http://127.0.0.1:9",
    "DATABRICKS_TOKEN": "placeholder",
    "MCP_BASE_URL": "http://127.0.0.1:9",
    "MCP_API_KEY": "placeholder",
    "SERVING_REPLICA_ID": "<replica-id>",
}


@contextlib.contextmanager
def _environment(data_dir: Path) -> Iterator[None]:
    """Only the placeholders (no variable of the caller's shell changes a group id or a topic)."""
    saved = dict(os.environ)
    keep = {k: v for k, v in saved.items() if k in ("PATH", "HOME", "TMPDIR", "LANG")}
    os.environ.clear()
    data_dirs = {f"{s.upper()}_DATA_DIR": str(data_dir / s) for s in SERVICES}
    os.environ.update(keep | _PLACEHOLDERS | data_dirs)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def generate() -> dict[str, dict[str, Any]]:
    """File name -> document, for every service."""
    docs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="apev-asyncapi-") as tmp, _environment(Path(tmp)):
        for service in SERVICES:
            module = importlib.import_module(f"apev_{service}.app")
            settings = importlib.import_module(f"apev_{service}.settings").Settings()
            app = module.create_app(settings)
            runtime: Runtime = app.state.runtime
            docs[f"{service}.json"] = asyncapi.document(runtime)
    return docs


def compare(directory: Path, generated: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Names of committed documents that are missing, stale, or not generated any more."""
    generated = generate() if generated is None else generated
    out = [
        name
        for name, doc in generated.items()
        if not (directory / name).exists() or (directory / name).read_text(encoding="utf-8") != asyncapi.render(doc)
    ]
    out += sorted(p.name for p in directory.glob("*.json") if p.name not in generated)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apev_stack.asyncapi", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="output folder (default: docs/asyncapi)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on any difference")
    args = parser.parse_args(argv)
    generated = generate()
    for name, doc in generated.items():
        if found := asyncapi.problems(doc):
            print(f"{name}: not valid AsyncAPI 3.0: " + "; ".join(found), file=sys.stderr)
            return 1
    if args.check:
        if differ := compare(args.dir, generated):
            print(f"{', '.join(differ)}: missing, stale or orphaned in {args.dir}; run `{REGENERATE_COMMAND}`")
            return 1
        print(f"{len(generated)} AsyncAPI documents match {args.dir}")
        return 0
    args.dir.mkdir(parents=True, exist_ok=True)
    for name, doc in generated.items():
        (args.dir / name).write_text(asyncapi.render(doc), encoding="utf-8")
    for path in args.dir.glob("*.json"):
        if path.name not in generated:
            path.unlink()
    print(f"{len(generated)} AsyncAPI documents written to {args.dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
