"""``antinex kafka start|stop|status``: the command line of the local broker in
``antinex.broker``."""

from __future__ import annotations

import argparse
from pathlib import Path

from antinex.broker import (
    DEFAULT_PORT,
    DEFAULT_STATE_DIR,
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_VERSION,
    EXIT_NOT_RUNNING,
    BrokerPaths,
    is_up,
    read_info,
    start_broker,
    stop_broker,
)
from antinex.options import EXIT_FAILURE, EXIT_OK, RuntimeFailure, add_flag


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65534:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port from 1 to 65534")
    return port


def _seconds(text: str) -> float:
    seconds = float(text)
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above zero")
    return seconds


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``antinex kafka start|stop|status``."""
    parser = subparsers.add_parser(
        "kafka",
        help="Run a local single-node Apache Kafka broker",
        description="Start, stop or check a single-node Apache Kafka broker (KRaft, broker and "
        "controller in one JVM) on 127.0.0.1, from jars that Maven fetches once from Maven "
        "Central. Needs Java 17 or newer and mvn.",
        epilog="exit codes: 0 done (start: running, also when it already was; stop: stopped or "
        "was not running; status: running and answering), 1 failure (status: the process "
        f"runs but does not answer), 2 bad usage, {EXIT_NOT_RUNNING} status: not running.",
    )
    parser.add_argument("action", choices=["start", "stop", "status"], help="What to do")
    add_flag(
        parser,
        scope="kafka",
        flag="--state-dir",
        default=DEFAULT_STATE_DIR,
        help="Directory of the jar cache, data, logs and pid file",
    )
    add_flag(
        parser,
        scope="kafka",
        flag="--port",
        default=DEFAULT_PORT,
        type=_port,
        help="Client port on 127.0.0.1; the controller listens on the next one",
    )
    add_flag(
        parser,
        scope="kafka",
        flag="--kafka-version",
        default=DEFAULT_VERSION,
        help="Apache Kafka release to run (4.0.0 or newer)",
    )
    add_flag(
        parser,
        scope="kafka",
        flag="--timeout",
        default=DEFAULT_TIMEOUT_SECONDS,
        type=_seconds,
        help="Seconds to wait for a started broker to answer",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Carry out ``args.action`` on the broker in ``args.state_dir``."""
    try:
        return _run_action(args.action, Path(args.state_dir), args)
    except OSError as err:
        where = err.filename or args.state_dir
        raise RuntimeFailure(
            f"cannot use {where} ({err.strerror}); pass a writable directory as --state-dir."
        ) from err


def _run_action(action: str, state_dir: Path, args: argparse.Namespace) -> int:
    if action == "start":
        info, already = start_broker(state_dir, args.port, args.kafka_version, args.timeout)
        state = "already running" if already else "started"
        print(f"kafka {info.version} {state} on {info.bootstrap} (pid {info.pid})")
        return EXIT_OK
    if action == "stop":
        stopped = stop_broker(state_dir)
        print(f"kafka stopped (pid {stopped.pid})" if stopped else "kafka was not running")
        return EXIT_OK
    return _report_status(BrokerPaths(state_dir))


def _report_status(paths: BrokerPaths) -> int:
    info = read_info(paths)
    if info is None:
        print(f"kafka: not running\nstate dir: {paths.state_dir}")
        return EXIT_NOT_RUNNING
    answering = is_up(info.bootstrap, timeout=3.0)
    print(f"kafka: {'running' if answering else 'running but not answering'}")
    print(f"pid: {info.pid}\nbootstrap: {info.bootstrap}\nversion: {info.version}")
    print(f"state dir: {paths.state_dir}\nlog: {paths.server_log}")
    return EXIT_OK if answering else EXIT_FAILURE
