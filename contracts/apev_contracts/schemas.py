"""JSON Schemas of every registered event, generated from the models and committed under `contracts/schemas/`.

    uv run python -m apev_contracts.schemas            # write the schemas (refuses an incompatible change)
    uv run python -m apev_contracts.schemas --check    # exit 1 if a committed schema is stale or incompatible

One file per CloudEvents type, `<type>.json`, describing the whole Kafka value (envelope and `data`). A file
whose type is no longer registered stays: it is the record of an older major version.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from apev_contracts.compat import check_compatible
from apev_contracts.envelope import CloudEvent
from apev_contracts.registry import all_specs, parse_event_type

REGENERATE_COMMAND: Final = "uv run python -m apev_contracts.schemas"
DEFAULT_DIR: Final = Path(__file__).resolve().parent.parent / "schemas"


def schema_for(ce_type: str, model: type[Any]) -> dict[str, Any]:
    schema = CloudEvent[model].model_json_schema()  # type: ignore[valid-type]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://agentprovision.com/schemas/{ce_type}.json"
    schema["title"] = ce_type
    return schema


def generate() -> dict[str, dict[str, Any]]:
    """File name -> schema, for every registered event."""
    return {f"{spec.type}.json": schema_for(spec.type, spec.model) for spec in all_specs()}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@dataclass
class Report:
    incompatible: dict[str, list[str]] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    """Committed files whose type is gone without a newer major version of its topic."""

    @property
    def ok(self) -> bool:
        return not (self.incompatible or self.stale or self.missing or self.orphaned)

    def describe(self) -> str:
        lines: list[str] = []
        for name, problems in self.incompatible.items():
            lines.append(f"{name}: incompatible with the committed schema (publish a new major version instead):")
            lines.extend(f"  - {p}" for p in problems)
        for name in self.orphaned:
            lines.append(f"{name}: event type removed without a newer major version of its topic")
        if self.stale or self.missing:
            names = ", ".join(self.stale + self.missing)
            lines.append(f"{names}: committed schema missing or stale; run `{REGENERATE_COMMAND}`")
        return "\n".join(lines)


def compare(directory: Path, generated: dict[str, dict[str, Any]] | None = None) -> Report:
    """Compare freshly generated schemas with the files in `directory`."""
    generated = generate() if generated is None else generated
    report = Report()
    for name, schema in generated.items():
        path = directory / name
        if not path.exists():
            report.missing.append(name)
            continue
        committed_text = path.read_text(encoding="utf-8")
        problems = check_compatible(json.loads(committed_text), schema)
        if problems:
            report.incompatible[name] = problems
        elif committed_text != render(schema):
            report.stale.append(name)
    current = {parse_event_type(name.removesuffix(".json")) for name in generated}
    for path in sorted(directory.glob("*.json")):
        if path.name in generated:
            continue
        parsed = parse_event_type(path.name.removesuffix(".json"))
        superseded = parsed is not None and any(
            c is not None and c[0] == parsed[0] and c[1] > parsed[1] for c in current
        )
        if not superseded:
            report.orphaned.append(path.name)
    return report


def write(directory: Path) -> Report:
    """Write every schema that is new or compatibly changed; incompatible ones are left alone and reported."""
    generated = generate()
    report = compare(directory, generated)
    directory.mkdir(parents=True, exist_ok=True)
    for name in report.stale + report.missing:
        (directory / name).write_text(render(generated[name]), encoding="utf-8")
    return Report(incompatible=report.incompatible, orphaned=report.orphaned)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apev_contracts.schemas", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="schema folder (default: contracts/schemas)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on any difference")
    args = parser.parse_args(argv)
    report = compare(args.dir) if args.check else write(args.dir)
    if not report.ok:
        print(report.describe(), file=sys.stderr)
        return 1
    print(f"{len(all_specs())} event schemas {'match' if args.check else 'written to'} {args.dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
