"""A real single-node Apache Kafka broker in KRaft mode, run from Maven Central's jars.

The broker's jars are resolved once with the installed Maven into the cache
directory and reused; the broker then runs on the installed Java on loopback.
Fails with StackError carrying the tail of the broker's log.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from deploy.stack import process
from deploy.stack.errors import StackError

KAFKA_VERSION = "3.9.2"
SCALA_VERSION = "2.13"
SLF4J_VERSION = "1.7.36"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.ingest</groupId>
  <artifactId>kafka-broker-runtime</artifactId>
  <version>1</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>{slf4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J = """log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""


def ensure_jars(cache_dir: Path) -> Path:
    """The broker's classpath directory, resolved from Maven Central on first use."""
    home = cache_dir / f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}"
    libs = home / "libs"
    done = home / ".complete"
    if done.exists():
        return libs
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise StackError(
            "Kafka needs Java 17+ and Maven on PATH (apt-get install openjdk-17-jre-headless maven)"
        )
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(
        _POM.format(scala=SCALA_VERSION, kafka=KAFKA_VERSION, slf4j=SLF4J_VERSION)
    )
    log = home / "maven.log"
    with log.open("wb") as out:
        result = subprocess.run(
            [
                "mvn",
                "-B",
                "-q",
                "-f",
                str(home / "pom.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={libs}",
                "-DincludeScope=runtime",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise StackError(f"fetching Kafka {KAFKA_VERSION} jars failed; {log}:\n{process.tail(log)}")
    done.touch()
    return libs


def broker_properties(*, data_dir: Path, port: int, controller_port: int) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        # One node: internal topics cannot have more than one replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Topics are created with their real configurations by provisioning, never implicitly.
        "auto.create.topics.enable": "false",
        "num.partitions": "3",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def start(*, libs: Path, state_dir: Path, port: int, controller_port: int) -> tuple[int, Path]:
    """Format a fresh KRaft log directory and start the broker; returns (pid, log path)."""
    data_dir = state_dir / "kafka-data"
    config = state_dir / "kafka.properties"
    log4j = state_dir / "kafka-log4j.properties"
    log = state_dir / "kafka.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    config.write_text(
        broker_properties(data_dir=data_dir, port=port, controller_port=controller_port)
    )
    log4j.write_text(_LOG4J)
    java = ["java", "-cp", f"{libs}/*", f"-Dlog4j.configuration=file:{log4j}"]
    cluster_id = _cluster_id()
    with log.open("ab") as out:
        formatted = subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if formatted.returncode != 0:
        raise StackError(f"formatting the Kafka log directory failed; {log}:\n{process.tail(log)}")
    return _launch(libs, state_dir), log


def _cluster_id() -> str:
    """A random KRaft cluster id that the storage tool will not take for an option."""
    while True:
        # One in 64 would start with "-", as Kafka's own generator also avoids.
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


def restart(*, libs: Path, state_dir: Path) -> tuple[int, Path]:
    """Start the broker again on the log directory and configuration a `start` left there."""
    return _launch(libs, state_dir), state_dir / "kafka.log"


def _launch(libs: Path, state_dir: Path) -> int:
    log4j = state_dir / "kafka-log4j.properties"
    broker = process.spawn(
        [
            "java",
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            "-cp",
            f"{libs}/*",
            f"-Dlog4j.configuration=file:{log4j}",
            "kafka.Kafka",
            str(state_dir / "kafka.properties"),
        ],
        log_path=state_dir / "kafka.log",
    )
    return broker.pid


def wait_ready(*, pid: int, marker: str, port: int, log: Path, timeout: float = 90.0) -> None:
    """Block until the broker answers a metadata request, or raise with its log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.is_running(pid, marker):
            raise StackError(f"Kafka exited during start-up; {log}:\n{process.tail(log)}")
        if process.port_open(port) and asyncio.run(_answers_metadata(port)):
            return
        time.sleep(0.5)
    raise StackError(f"Kafka did not answer within {timeout:.0f}s; {log}:\n{process.tail(log)}")


async def _answers_metadata(port: int) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.describe_cluster()
        return True
    except Exception:  # any failure here only means "not ready yet"
        return False
    finally:
        await admin.close()


def formatted(state_dir: Path) -> bool:
    """Whether `state_dir` holds a KRaft log directory a `start` formatted (with its records)."""
    return (state_dir / "kafka-data" / "meta.properties").exists()


def start_on_data(
    *, libs: Path, state_dir: Path, port: int, controller_port: int
) -> tuple[int, Path]:
    """Start the broker on the log directory already in `state_dir`, never formatting it
    (every record stays), listening on these ports; returns (pid, log path)."""
    (state_dir / "kafka.properties").write_text(
        broker_properties(
            data_dir=state_dir / "kafka-data", port=port, controller_port=controller_port
        )
    )
    (state_dir / "kafka-log4j.properties").write_text(_LOG4J)
    return restart(libs=libs, state_dir=state_dir)
