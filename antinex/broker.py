"""Run a local single-node Apache Kafka broker (KRaft) from Maven Central jars: start, stop, status.

The broker is the real one: ``kafka.Kafka`` on the machine's Java, with its classpath fetched once
by Maven from ``deploy/kafka/pom.xml``. Everything it owns lives in one state directory:

    jars/VERSION/       the runtime classpath, one directory per Kafka version
    data/               the KRaft metadata log and the topic partitions (``log.dirs``)
    logs/server.log     the broker's own log (log4j2, rolled at 10 MB)
    logs/kafka.out      what the JVM wrote to stdout and stderr
    server.properties   rewritten on every start
    kafka.pid           the broker's process id while it runs
    broker.json         pid, port and version of the running broker, read by ``status``
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from antinex.logs import event
from antinex.options import RuntimeFailure, UsageError

logger = logging.getLogger("antinex.broker")

HOST = "127.0.0.1"
DEFAULT_PORT = 9092
DEFAULT_VERSION = "4.4.0"
DEFAULT_STATE_DIR = "~/.cache/antinex/kafka"
DEFAULT_TIMEOUT_SECONDS = 60
STOP_GRACE_SECONDS = 30.0
# Large enough for a batch holding one ~4 MiB record plus its headers and framing.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
# ``status`` exit code when no broker runs, as LSB init scripts report it.
EXIT_NOT_RUNNING = 3
# Limitation: the pom and log config are read from the source tree, not installed with the
# package, so `antinex kafka` works from a checkout (or an editable install) only.
DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy" / "kafka"
JVM_OPTIONS = (
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
)


class BrokerPaths:
    """Where one broker keeps its jars, data, logs and pid file."""

    def __init__(self, state_dir: Path | str) -> None:
        # Absolute, because the broker runs in this directory and is found by its argument list.
        self.state_dir = Path(state_dir).expanduser().resolve()
        self.data = self.state_dir / "data"
        self.logs = self.state_dir / "logs"
        self.server_log = self.logs / "server.log"
        self.jvm_output = self.logs / "kafka.out"
        self.properties = self.state_dir / "server.properties"
        self.pid_file = self.state_dir / "kafka.pid"
        self.info_file = self.state_dir / "broker.json"

    def jars(self, version: str) -> Path:
        return self.state_dir / "jars" / version


@dataclass(frozen=True)
class BrokerInfo:
    """A broker process started by this module, as recorded in ``broker.json``."""

    pid: int
    port: int
    version: str
    started_at: float

    @property
    def bootstrap(self) -> str:
        return bootstrap_address(self.port)


def bootstrap_address(port: int = DEFAULT_PORT) -> str:
    """The ``host:port`` that Kafka clients bootstrap from."""
    return f"{HOST}:{port}"


def is_up(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when a Kafka broker at ``bootstrap`` answers a metadata request within ``timeout``."""
    from kafka import KafkaAdminClient  # imported here: costs ~0.3 s and only some callers need it
    from kafka.errors import KafkaError

    host, _, port = bootstrap.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError):
        return False
    ms = max(int(timeout * 1000), 200)
    options = {
        "bootstrap_servers": bootstrap,
        "request_timeout_ms": ms,
        "client_id": "antinex-probe",
    }
    if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:  # kafka-python 3
        options["bootstrap_timeout_ms"] = ms
    try:
        admin = KafkaAdminClient(**options)
    except (KafkaError, OSError):
        return False
    try:
        cluster = admin.describe_cluster()
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()
    return any(not broker.get("is_fenced") for broker in cluster.get("brokers", []))


def listener_settings(port: int) -> dict[str, str]:
    """The listener properties of a node with clients on ``port`` and its controller on the next
    port, both on the loopback address only."""
    controller = f"{HOST}:{port + 1}"
    return {
        "controller.quorum.bootstrap.servers": controller,
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    }


def server_settings(port: int, data_dir: Path) -> dict[str, str]:
    """The ``server.properties`` of a combined broker+controller node listening on ``port``."""
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        **listener_settings(port),
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        # One node: every internal topic has one replica and needs only that one in sync.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "message.max.bytes": str(MAX_MESSAGE_BYTES),
        "replica.fetch.max.bytes": str(MAX_MESSAGE_BYTES),
    }


def render_properties(settings: dict[str, str]) -> str:
    """``settings`` as a Java properties file."""
    lines = ["# Written by `antinex kafka start` on every start; edits here are overwritten."]
    lines += [f"{key}={value.replace(chr(92), chr(92) * 2)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def new_cluster_id() -> str:
    """A random Kafka cluster id: 16 bytes, URL-safe base64 without padding, as Kafka makes them."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka avoids these too: they read as command-line flags
            return text


def read_info(paths: BrokerPaths) -> BrokerInfo | None:
    """The broker recorded in the state directory, if that process is still running."""
    try:
        recorded = json.loads(paths.info_file.read_text())
        info = BrokerInfo(
            pid=int(recorded["pid"]),
            port=int(recorded["port"]),
            version=str(recorded["version"]),
            started_at=float(recorded["started_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if _is_our_broker(info.pid, paths) else None


def _pom_digest() -> str:
    pom = DEPLOY_DIR / "pom.xml"
    try:
        return hashlib.sha256(pom.read_bytes()).hexdigest()
    except OSError as err:
        raise RuntimeFailure(
            f"{pom} cannot be read ({err.strerror}); run antinex from a checkout of the project."
        ) from err


def cached_jars(paths: BrokerPaths, version: str) -> Path | None:
    """The jar directory of ``version`` if it was fetched with the current ``pom.xml``."""
    jars = paths.jars(version)
    try:
        return jars if (jars / ".complete").read_text().strip() == _pom_digest() else None
    except OSError:
        return None


def fetch_jars(paths: BrokerPaths, version: str) -> Path:
    """Download the broker's runtime classpath for ``version`` once; return its directory.

    The jars are fetched again when ``deploy/kafka/pom.xml`` has changed since.
    """
    cached = cached_jars(paths, version)
    if cached is not None:
        return cached
    jars, pom, pom_digest = paths.jars(version), DEPLOY_DIR / "pom.xml", _pom_digest()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeFailure(
            "mvn was not found on PATH; install Maven (apt-get install maven) "
            "so the Kafka jars can be fetched."
        )
    partial = jars.with_name(version + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    event(logger, logging.INFO, "kafka_jars_fetching", version=version, into=str(jars))
    started = time.monotonic()
    command = [mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(pom)]
    command += [f"-Dkafka.version={version}", "dependency:copy-dependencies"]
    command += [f"-DoutputDirectory={partial}"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        _print_tail("mvn", (result.stdout + result.stderr).splitlines())
        raise RuntimeFailure(
            f"Maven could not fetch the jars of Kafka {version} (exit {result.returncode}); "
            "check --kafka-version and that Maven Central is reachable."
        )
    (partial / ".complete").write_text(pom_digest + "\n")
    if jars.is_symlink():
        jars.unlink()
    shutil.rmtree(jars, ignore_errors=True)
    partial.rename(jars)
    files = list(jars.glob("*.jar"))
    mib = sum(f.stat().st_size for f in files) / 2**20
    seconds = round(time.monotonic() - started, 1)
    event(
        logger,
        logging.INFO,
        "kafka_jars_fetched",
        jars=len(files),
        mib=round(mib, 1),
        seconds=seconds,
    )
    return jars


def start_broker(
    state_dir: Path,
    port: int = DEFAULT_PORT,
    version: str = DEFAULT_VERSION,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    extra_settings: Mapping[str, str] | None = None,
) -> tuple[BrokerInfo, bool]:
    """Start the broker unless it runs; return it and whether it was already running.

    ``extra_settings`` replace or add server properties (more listeners, say); the start waits
    for the PLAINTEXT listener on ``port``, so they must keep it.

    Raises ``RuntimeFailure`` when Java is missing, a port is taken, the jars cannot be fetched,
    or the broker does not answer within ``timeout`` seconds.
    """
    check_version(version)
    paths = BrokerPaths(state_dir)
    with _locked(paths):
        running = read_info(paths)
        if running is not None:
            return running, True
        java = _find_java()
        for taken in (port, port + 1):
            if not _port_free(taken):
                raise RuntimeFailure(
                    f"port {taken} on {HOST} is in use by another program; stop it or start "
                    "Kafka on other ports with --port."
                )
        jars = fetch_jars(paths, version)
        paths.logs.mkdir(parents=True, exist_ok=True)
        settings = {**server_settings(port, paths.data), **(extra_settings or {})}
        paths.properties.write_text(render_properties(settings))
        if not (paths.data / "meta.properties").exists():
            _format_storage(java, jars, paths)
        return _launch(java, jars, paths, port, version, timeout), False


def stop_broker(state_dir: Path, grace: float = STOP_GRACE_SECONDS) -> BrokerInfo | None:
    """Stop the broker with SIGTERM (SIGKILL after ``grace`` seconds); None if none ran."""
    paths = BrokerPaths(state_dir)
    with _locked(paths):
        info = read_info(paths)
        if info is not None:
            _terminate(info.pid, grace)
            event(logger, logging.INFO, "kafka_stopped", pid=info.pid, bootstrap=info.bootstrap)
        _forget(paths)
        return info


def check_version(version: str) -> None:
    """Raise ``UsageError`` unless ``version`` names a Kafka 4 or newer release."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version)
    if match is None or int(match.group(1)) < 4:
        raise UsageError(
            f"--kafka-version {version!r} is not supported; give a Kafka release 4.0.0 or newer, "
            f"such as {DEFAULT_VERSION}."
        )


def _find_java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise RuntimeFailure(
            "java was not found (JAVA_HOME or PATH); install Java 17 or newer "
            "(apt-get install openjdk-17-jre-headless)."
        )
    return java


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # TIME_WAIT connections left by a broker that just stopped must not count as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _java_command(java: str, jars: Path, paths: BrokerPaths, *args: str) -> list[str]:
    logging_options = [
        f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={paths.logs}",
    ]
    return [java, *JVM_OPTIONS, *logging_options, "-cp", f"{jars}/*", *args]


def _format_storage(java: str, jars: Path, paths: BrokerPaths) -> None:
    cluster_id = new_cluster_id()
    command = _java_command(
        java, jars, paths, "kafka.tools.StorageTool", "format",
        "-t", cluster_id, "-c", str(paths.properties), "--standalone",
    )  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        _print_tail("kafka-storage", (result.stdout + result.stderr).splitlines())
        raise RuntimeFailure(
            f"formatting the Kafka data directory {paths.data} failed (exit {result.returncode}); "
            "the lines above say why."
        )
    event(
        logger, logging.INFO, "kafka_storage_formatted", cluster_id=cluster_id, data=str(paths.data)
    )


def _launch(
    java: str, jars: Path, paths: BrokerPaths, port: int, version: str, timeout: float
) -> BrokerInfo:
    started = time.monotonic()
    log_sizes = {log: _log_size(log) for log in (paths.server_log, paths.jvm_output)}
    command = _java_command(java, jars, paths, "kafka.Kafka", str(paths.properties))
    with paths.jvm_output.open("ab") as output:
        process = subprocess.Popen(
            command, cwd=paths.state_dir, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    info = BrokerInfo(process.pid, port, version, time.time())
    paths.pid_file.write_text(f"{process.pid}\n")
    paths.info_file.write_text(json.dumps(info.__dict__) + "\n")

    deadline = started + timeout
    while not is_up(info.bootstrap, timeout=2.0):
        code = process.poll()
        if code is not None or time.monotonic() > deadline:
            if code is None:
                _terminate(process.pid, grace=10.0)
            _forget(paths)
            for log, size in log_sizes.items():
                _print_tail(str(log), _last_lines(log, since=size))
            if code is None:
                what = f"did not answer within {timeout:g} s and was stopped"
            else:
                what = f"exited with code {code}"
            raise RuntimeFailure(
                f"the Kafka broker {what} while starting; see {paths.server_log} "
                f"and {paths.jvm_output}."
            )
        time.sleep(0.25)
    event(
        logger,
        logging.INFO,
        "kafka_started",
        pid=info.pid,
        bootstrap=info.bootstrap,
        version=version,
        seconds=round(time.monotonic() - started, 1),
    )
    return info


def _is_our_broker(pid: int, paths: BrokerPaths) -> bool:
    """True while ``pid`` is a live ``kafka.Kafka`` reading this state directory's properties."""
    # Limitation: reads /proc, so the process checks work on Linux only.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return _alive(pid) and b"kafka.Kafka" in cmdline and bytes(paths.properties) in cmdline


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if this process started it and it has exited
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _terminate(pid: int, grace: float) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while _alive(pid):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        else:
            return
        if sig == signal.SIGTERM:
            event(logger, logging.WARNING, "kafka_stop_forced", pid=pid, grace_seconds=grace)


def _forget(paths: BrokerPaths) -> None:
    for stale in (paths.pid_file, paths.info_file):
        stale.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(paths: BrokerPaths) -> Iterator[None]:
    """Serialize start and stop on one state directory across processes."""
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    with (paths.state_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _last_lines(path: Path, since: int = 0, count: int = 15) -> list[str]:
    """The last error logged in ``path`` after byte ``since``, and what follows it.

    Without such an error, the last ``count`` lines written after ``since``.
    """
    try:
        with path.open("rb") as log:
            end = log.seek(0, os.SEEK_END)
            since = since if since <= end else 0  # the log rolled over meanwhile
            log.seek(max(since, end - 65536))
            lines = log.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    errors = [i for i, line in enumerate(lines) if re.search(r"\] (ERROR|FATAL) ", line)]
    return lines[errors[-1] : errors[-1] + count] if errors else lines[-count:]


def _print_tail(source: str, lines: list[str], count: int = 15) -> None:
    if lines:
        print(f"--- last lines of {source} ---", file=sys.stderr)
        print("\n".join(lines[-count:]), file=sys.stderr)
