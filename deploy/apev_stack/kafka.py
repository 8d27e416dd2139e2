"""A real Apache Kafka broker (KRaft, combined broker + controller) on 127.0.0.1, run from its jars.

Used three ways: `make kafka` (background, state under `.stack/kafka`), the test suite (a private broker
per test session in a temporary folder) and `make run`. Topics come from `apev_contracts.topics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from apev_contracts.topics import all_topics
from apev_stack.jars import ensure_kafka_jars

DEFAULT_HEAP = os.environ.get("APEV_KAFKA_HEAP", "512m")


class KafkaStartError(RuntimeError):
    """The broker did not come up; the message carries the end of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def topic_partitions() -> int:
    """Partitions per topic: `KAFKA_TOPIC_PARTITIONS`, default 3 (enough to exercise per-key order)."""
    return int(os.environ.get("KAFKA_TOPIC_PARTITIONS", "3"))


def topic_replication_factor() -> int:
    """Replicas per partition: `KAFKA_TOPIC_REPLICATION_FACTOR`, default 1 (the one local broker)."""
    return int(os.environ.get("KAFKA_TOPIC_REPLICATION_FACTOR", "1"))


def topic_configs() -> dict[str, str]:
    """Topic configs from `KAFKA_TOPIC_CONFIGS` (`min.insync.replicas=2,retention.ms=...`), default none."""
    raw = os.environ.get("KAFKA_TOPIC_CONFIGS", "")
    pairs = [item.split("=", 1) for item in raw.split(",") if item.strip()]
    bad = [p[0] for p in pairs if len(p) != 2]
    if bad:
        raise ValueError(f"KAFKA_TOPIC_CONFIGS items must be name=value, got {bad}")
    return {k.strip(): v.strip() for k, v in pairs}


def server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={data_dir / 'logs'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=6",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "group.coordinator.append.linger.ms=0",
            "auto.create.topics.enable=false",
            "log.retention.hours=168",
            "",
        ]
    )


LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.kafkaorg.name = org.apache.kafka
logger.kafkaorg.level = WARN
logger.ready.name = kafka.server.KafkaRaftServer
logger.ready.level = INFO
"""


@dataclass
class KafkaBroker:
    """One broker process. `home` holds its config, data, log and pid file."""

    home: Path
    port: int
    controller_port: int
    heap: str = DEFAULT_HEAP
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java:
            raise KafkaStartError("no `java` on PATH and JAVA_HOME unset: Kafka 4 needs Java 17+")
        return java

    def start(self, timeout: float = 90.0) -> None:
        """Format storage (first time), start the JVM detached from our process group, wait until ready."""
        lib = ensure_kafka_jars()
        self.home.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        props.write_text(server_properties(self.home, self.port, self.controller_port))
        (self.home / "log4j2.properties").write_text(LOG4J2.format(log=self.home / "kafka-internal.log"))
        java = self._java()
        classpath = f"{lib}/*"
        if not (self.home / "logs" / "meta.properties").exists():
            cluster_id = (
                subprocess.run(
                    [java, "-cp", classpath, "kafka.tools.StorageTool", "random-uuid"],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            fmt = subprocess.run(
                [
                    java,
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    "-t",
                    cluster_id,
                    "-c",
                    str(props),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                raise KafkaStartError(f"kafka storage format failed: {fmt.stdout}{fmt.stderr}")
        log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            [
                java,
                f"-Xmx{self.heap}",
                f"-Xms{self.heap}",
                "-XX:+UseG1GC",
                "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(props),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives `make` exiting; stopped by its own process group
        )
        log.close()
        self.pid_file.write_text(str(self.process.pid))
        (self.home / "bootstrap").write_text(self.bootstrap)
        try:
            asyncio.run(wait_ready(self.bootstrap, timeout, process=self.process))
        except Exception:
            self.stop()
            raise KafkaStartError(f"kafka did not become ready on {self.bootstrap}:\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_file.exists():
            return "(no broker log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        pid = self.process.pid if self.process else read_pid(self.pid_file)
        if pid is not None:
            stop_process_group(pid, timeout)
        if self.process is not None:
            with contextlib.suppress(Exception):
                self.process.wait(timeout=1)
        self.pid_file.unlink(missing_ok=True)


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    with contextlib.suppress(FileNotFoundError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def stop_process_group(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM the process group (Kafka shuts down cleanly on it), SIGKILL after `timeout`. A process that
    leads no group (the `make run` supervisor) gets the signal itself."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.1)


def _accepts(bootstrap: str) -> bool:
    """Whether the first bootstrap address accepts a TCP connection."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1):
            return True
    except (OSError, ValueError):
        return False


async def wait_ready(bootstrap: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until a metadata request to the broker succeeds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise KafkaStartError(f"broker exited with code {process.returncode}")
        # A plain TCP probe first: aiokafka logs an error for every refused connection while the JVM starts.
        if not _accepts(bootstrap):
            last = ConnectionRefusedError(f"nothing listens on {bootstrap} yet")
            await asyncio.sleep(0.3)
            continue
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.describe_cluster()
            return
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        await asyncio.sleep(0.3)
    raise TimeoutError(f"no metadata answer from {bootstrap} within {timeout}s: {last!r}")


async def create_topics(
    bootstrap: str,
    topics: Iterable[str] | None = None,
    partitions: int | None = None,
    timeout: float = 60.0,
    replication_factor: int | None = None,
    configs: dict[str, str] | None = None,
) -> list[str]:
    """Create topics that do not exist yet (default: every topic and its `.dlq` twin). Returns those created.
    Partitions, replication and configs default to `KAFKA_TOPIC_PARTITIONS`, `..._REPLICATION_FACTOR`,
    `..._CONFIGS`; an existing topic is left as it is (adding partitions moves keys: an operator's decision)."""
    wanted = list(topics) if topics is not None else all_topics()
    parts = partitions or topic_partitions()
    replicas = replication_factor or topic_replication_factor()
    extra = topic_configs() if configs is None else configs
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        before = set(await admin.list_topics())
        deadline = time.monotonic() + timeout
        while missing := [t for t in wanted if t not in set(await admin.list_topics())]:
            if time.monotonic() > deadline:
                raise KafkaStartError(f"topics still missing after {timeout}s: {missing}")
            # Right after start the controller may refuse for a moment; the loop re-checks.
            with contextlib.suppress(TopicAlreadyExistsError, KafkaError):
                await admin.create_topics(
                    [
                        NewTopic(name=t, num_partitions=parts, replication_factor=replicas, topic_configs=extra)
                        for t in missing
                    ]
                )
            await asyncio.sleep(0.2)
        return [t for t in wanted if t not in before]
    finally:
        await admin.close()
