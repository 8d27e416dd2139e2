"""The package promises: importable without aiokafka, Pydantic + stdlib only, no I/O at import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import apev_contracts

PACKAGE_DIR = Path(apev_contracts.__file__).parent
ALLOWED_THIRD_PARTY = {"pydantic", "pydantic_core", "typing_extensions", "annotated_types", "typing_inspection"}


def test_importing_everything_but_the_publisher_loads_no_kafka_client() -> None:
    modules = sorted(
        "apev_contracts." + ".".join(p.relative_to(PACKAGE_DIR).with_suffix("").parts)
        for p in PACKAGE_DIR.rglob("*.py")
        if p.name != "__init__.py" and p.stem != "publisher"
    )
    code = (
        "import sys, importlib\n"
        "sys.modules['aiokafka'] = None  # any import of it now fails\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "import apev_contracts\n"
        "top = {m.split('.')[0] for m, mod in sys.modules.items() if mod is not None}\n"
        "third = {m for m in top if m not in sys.stdlib_module_names and not m.startswith('_sysconfigdata')}\n"
        "print(sorted(third - {'apev_contracts', '__main__'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(eval(out.stdout))  # noqa: S307 - our own printed list literal
    assert loaded <= ALLOWED_THIRD_PARTY, loaded - ALLOWED_THIRD_PARTY


def test_the_publisher_explains_a_missing_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['aiokafka'] = None\n"
        "from apev_contracts.publisher import EventPublisher\n"
        "try:\n"
        "    EventPublisher('127.0.0.1:9092')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "install `apev-contracts[kafka]`" in out.stdout
