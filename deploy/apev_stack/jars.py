"""Fetch Apache Kafka's broker jars (and a Log4j2 backend) from Maven Central into the cache, once."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from apev_stack.paths import cache_dir, repo_root

KAFKA_VERSION = os.environ.get("APEV_KAFKA_VERSION", "4.1.1")
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
_COMPLETE = ".complete"


class JarFetchError(RuntimeError):
    """Maven could not resolve the Kafka jars; the message quotes Maven's own output."""


def kafka_lib_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_dir() / "kafka" / version / "lib"


def ensure_kafka_jars(version: str = KAFKA_VERSION, log: bool = True) -> Path:
    """Return the folder holding the broker's classpath, downloading it with Maven the first time.

    The download goes to a temporary folder and is renamed into place only when complete, so an
    interrupted fetch never leaves a half-filled cache that later runs would trust.
    """
    lib = kafka_lib_dir(version)
    if (lib / _COMPLETE).exists():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarFetchError("Maven (`mvn`) is not on PATH; install it (apt-get install maven) and retry")
    pom = repo_root() / "deploy" / "kafka" / "pom.xml"
    lib.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if log:
        print(
            f"kafka: fetching Apache Kafka {version} jars from Maven Central into {lib} (once) ...",
            flush=True,
        )
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        out = Path(tmp) / "lib"
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom),
            f"-Dkafka.version={version}",
            DEPENDENCY_PLUGIN,
            f"-DoutputDirectory={out}",
            "-DincludeScope=runtime",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not any(out.glob("kafka_2.13-*.jar")):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
            raise JarFetchError(
                f"mvn failed to fetch org.apache.kafka:kafka_2.13:{version} (exit {proc.returncode}):\n{tail}"
            )
        (out / _COMPLETE).write_text(f"kafka {version}\n")
        if lib.exists():
            shutil.rmtree(lib)
        out.rename(lib)
    if log:
        jars = len(list(lib.glob("*.jar")))
        print(f"kafka: {jars} jars cached in {time.monotonic() - started:.1f}s", flush=True)
    return lib
