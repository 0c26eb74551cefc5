"""The ``kiln`` command: serve, worker, migrate, keys; and the client's datasets, jobs,
models and predict (``modelkiln.commands``)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from app.contracts.enums import Scope
from app.core.config import Settings, SettingsError, get_settings
from app.jobs.broker_check import warn_about_broker
from modelkiln.commands import add_commands as add_client_commands
from modelkiln.commands import run as run_client_command

logger = logging.getLogger("kiln")

WORKER_STOP_GRACE_S = 10.0
PRIVATE_UMASK = 0o077


def _settings_or_exit() -> Settings:
    try:
        return get_settings()
    except SettingsError as error:
        print(f"kiln: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _migrate(settings: Settings) -> None:
    from app.core.migrate import upgrade_to_head
    from app.core.study_storage import open_storage

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.data_dir.chmod(0o700)  # also a data dir made by an earlier version
    upgrade_to_head(settings.database_url)
    _check_study_storage(settings)
    open_storage(settings)  # Optuna's tables, made once here rather than by racing workers
    _check_artifact_store(settings)


def _check_study_storage(settings: Settings) -> None:
    """Exit with one line naming KILN_STUDY_URL when it names the registry's database."""
    from app.core.study_storage import StudyStorageClash, check_apart

    try:
        check_apart(settings)
    except StudyStorageClash as error:
        print(f"kiln: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _check_artifact_store(settings: Settings) -> None:
    """Reach the artifact store (creating an S3 bucket that does not exist yet), or exit
    with the reason: a worker that cannot store results must not take jobs."""
    from app.core.errors import KilnError
    from app.storage import get_store

    try:
        get_store(settings).ensure_ready()
    except (KilnError, OSError) as error:
        print(f"kiln: artifact store: {getattr(error, 'message', error)}", file=sys.stderr)
        raise SystemExit(2) from None


def _bootstrap_key(settings: Settings) -> None:
    from app.auth import bootstrap_admin_key
    from app.core.db import session_scope

    with session_scope(settings.database_url) as session:
        new_key = bootstrap_admin_key(session, settings.admin_key_path)
    if new_key is None:
        return
    if sys.stdout.isatty():  # a person is watching; a captured log must never hold a key
        print(
            "\n  Admin API key (shown once; also saved, mode 0600, to "
            f"{settings.admin_key_path}):\n\n    {new_key.secret}\n",
            flush=True,
        )
    else:
        print(
            f"\n  Admin API key created; it is in {settings.admin_key_path} (mode 0600)\n",
            flush=True,
        )


class WorkerSupervisor(threading.Thread):
    """Keeps a ``kiln worker`` child running until stopped; restarts it if it dies."""

    def __init__(self, concurrency: int) -> None:
        super().__init__(name="worker-supervisor", daemon=True)
        self.concurrency = concurrency
        self.stopping = threading.Event()
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            "-m",
            "app.cli",
            "worker",
            "--concurrency",
            str(self.concurrency),
        ]
        # Its own session: Ctrl-C reaches only us, and we stop the worker's whole group.
        return subprocess.Popen(command, start_new_session=True)

    def run(self) -> None:
        while not self.stopping.is_set():
            self.process = self._spawn()
            code = self.process.wait()
            if self.stopping.is_set():
                return
            logger.warning("worker exited with code %s; restarting in 2 s", code)
            self.stopping.wait(2.0)

    def stop(self) -> None:
        self.stopping.set()
        process = self.process
        if process is None or process.poll() is not None:
            return
        # To the worker's main process only: it stops its pool children itself (a warm
        # shutdown). A signal to the whole group would kill them under it, logged as errors.
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=WORKER_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            logger.warning(
                "worker still busy after %.0f s; killing it (its job is re-queued "
                "when its lease expires)",
                WORKER_STOP_GRACE_S,
            )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _taken(host: str, port: int) -> OSError | None:
    """Why ``host:port`` cannot be bound now (None: it can), tried as the servers bind it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return error
    return None


def _exit_if_ports_taken(host: str, settings: Settings) -> None:
    """One line naming a port that is taken and the flag that moves it, before anything
    starts (workers, migrations), rather than a server's traceback."""
    ports = [(settings.port, "HTTP", "--port N or KILN_PORT=N")]
    if settings.grpc_port:
        ports.append(
            (settings.grpc_port, "gRPC inference", "--grpc-port N or KILN_GRPC_PORT=N (0: no gRPC)")
        )
    for port, what, flag in ports:
        if (error := _taken(host, port)) is not None:
            reason = "in use" if error.errno == errno.EADDRINUSE else error.strerror
            print(
                f"kiln serve: {what} port {port} on {host} is {reason}; choose another with {flag}",
                file=sys.stderr,
            )
            raise SystemExit(1)


def serve(args: argparse.Namespace) -> None:
    """Migrate, make sure an admin key exists, start workers, run the gateway."""
    os.environ.setdefault("KILN_GRPC_HOST", args.host)
    if args.grpc_port is not None:
        os.environ["KILN_GRPC_PORT"] = str(args.grpc_port)
    if args.port is not None:
        os.environ["KILN_PORT"] = str(args.port)
    os.environ["KILN_EMBEDDED_WORKERS"] = str(max(0, args.workers))
    settings = _settings_or_exit()
    _exit_if_ports_taken(args.host, settings)
    _migrate(settings)
    _bootstrap_key(settings)
    warn_about_broker(settings.broker_url)
    _remove_orphans(settings)
    supervisor = WorkerSupervisor(args.workers) if args.workers > 0 else None
    if supervisor is not None:
        supervisor.start()
    import uvicorn

    from app.main import create_app

    # uvicorn shuts down on SIGTERM (docker stop) and then raises the signal again; without
    # a handler that would end the process before ``finally`` stops the workers.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    options: dict[str, Any] = {
        "host": args.host,
        "port": settings.port,
        "log_level": "info",
        "access_log": not args.no_access_log,
        "proxy_headers": args.proxy_headers,
        # httptools, always: h11 answers an oversized header by closing mid-request (the
        # client sees a reset), while the app answers it (431/400) with this parser.
        "http": "httptools",
    }
    shared = settings.data_dir / "tmp" / f"gateways-{os.getpid()}"
    try:
        if args.gateways > 1:
            _share_between_gateways(shared)
            uvicorn.run("app.main:gateway_app", factory=True, workers=args.gateways, **options)
        else:
            uvicorn.run(create_app(settings, serve_grpc=True), **options)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        if supervisor is not None:
            supervisor.stop()


def _share_between_gateways(folder: Path) -> None:
    """What the gateway processes share, in the environment they inherit: a directory for
    their metrics (summed by /metrics in any of them), one for their per-second counters
    (summed by the serving page and its stats route in any of them) and the counter that
    tells them of each other's writes."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "metrics").mkdir(parents=True)
    (folder / "seconds").mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder / "metrics")
    os.environ["KILN_SERVING_SECONDS_DIR"] = str(folder / "seconds")
    os.environ["KILN_SERVING_GENERATION_FILE"] = str(folder / "serving.generation")


def _worker_kinds(text: str) -> list[str]:
    """The job kinds of ``--queues`` (comma-separated); exits 2 naming an unknown one."""
    from app.kinds import JOB_KINDS

    kinds = [name.strip() for name in text.split(",") if name.strip()]
    for kind in kinds:
        if kind not in JOB_KINDS:
            print(
                f"kiln worker: unknown queue {kind!r}; the queues are {', '.join(JOB_KINDS)}",
                file=sys.stderr,
            )
            raise SystemExit(2)
    if not kinds:
        print(f"kiln worker: --queues names none of {', '.join(JOB_KINDS)}", file=sys.stderr)
        raise SystemExit(2)
    return kinds


def _remove_orphans(settings: Settings) -> None:
    """Delete temporary files that killed processes of this host left (spools, partial
    downloads)."""
    from app.api.uploads import remove_orphaned_spools

    if removed := remove_orphaned_spools(settings):
        logger.info("removed %s temporary file(s) left by stopped processes", removed)


def worker(args: argparse.Namespace) -> None:
    """Run one Celery worker node with ``--concurrency`` processes, taking the jobs of the
    kinds in ``--queues`` (default: every kind)."""
    from app.jobs.queue import queue_for
    from app.kinds import JOB_KINDS

    kinds = _worker_kinds(args.queues) if args.queues else list(JOB_KINDS)
    os.environ.setdefault(
        "KILN_TRAIN_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, args.concurrency)))
    )
    settings = _settings_or_exit()
    _check_study_storage(settings)
    _check_artifact_store(settings)
    _remove_orphans(settings)
    _wait_for_broker(settings)
    warn_about_broker(settings.broker_url)
    from workers.celery_app import celery_app

    queues = ",".join(queue_for(settings, kind) for kind in kinds)
    logger.info("taking jobs from %s", queues)
    celery_app.worker_main(
        [
            "worker",
            "--concurrency",
            str(args.concurrency),
            "--pool",
            "prefork",
            "--loglevel",
            args.loglevel,
            "--queues",
            queues,
            "--without-gossip",
            "--without-mingle",
        ]
    )


def _wait_for_broker(settings: Settings) -> None:
    """Exit naming KILN_BROKER_URL when the broker does not answer in its start-up window."""
    from app.jobs.broker_check import wait_for_broker

    if (problem := wait_for_broker(settings.broker_url, settings.broker_startup_s)) is not None:
        print(f"kiln worker: {problem}", file=sys.stderr)
        raise SystemExit(1)


def migrate(_: argparse.Namespace) -> None:
    """Bring the registry schema to the newest migration."""
    settings = _settings_or_exit()
    _migrate(settings)
    print(f"database at head: {settings.database_url.split('@')[-1]}")


def keys_create(args: argparse.Namespace) -> None:
    """Create an API key and print it once."""
    from app.auth import create_key
    from app.core.db import session_scope
    from app.core.names import KEY_NAME

    if problem := KEY_NAME.problem(args.name):
        raise SystemExit(f"kiln keys create: --name: {problem}")
    settings = _settings_or_exit()
    _migrate(settings)
    with session_scope(settings.database_url) as session:
        new_key = create_key(session, name=args.name, scope=Scope(args.scope))
    print(new_key.secret)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiln", description="ModelKiln model-as-a-service.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the gateway and embedded workers")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument(
        "--port",
        type=int,
        help="port of the HTTP API, dashboard and /v2 (default: $KILN_PORT, else 8000)",
    )
    serve_cmd.add_argument(
        "--workers", type=int, default=1, help="worker processes to start (0: gateway only)"
    )
    serve_cmd.add_argument(
        "--gateways",
        type=int,
        default=1,
        help="gateway processes "
        "sharing the port (HTTP and gRPC): more requests per second with "
        "more cores",
    )
    serve_cmd.add_argument(
        "--proxy-headers",
        action="store_true",
        help="take the client's "
        "address from X-Forwarded-For sent by $FORWARDED_ALLOW_IPS "
        "(default 127.0.0.1)",
    )
    serve_cmd.add_argument(
        "--grpc-port",
        type=int,
        help="port of the gRPC inference service (default: $KILN_GRPC_PORT, else 8001; 0: off)",
    )
    serve_cmd.add_argument(
        "--no-access-log",
        action="store_true",
        help="do not log each request (the /metrics counters still count)",
    )
    serve_cmd.set_defaults(func=serve)
    worker_cmd = commands.add_parser("worker", help="run a worker only")
    worker_cmd.add_argument(
        "--concurrency", type=int, default=1, help="worker processes (jobs or trials run at once)"
    )
    worker_cmd.add_argument(
        "--queues",
        help="job kinds to take, comma-separated: search, compress, predict (default: all)",
    )
    worker_cmd.add_argument("--loglevel", default="INFO")
    worker_cmd.set_defaults(func=worker)
    commands.add_parser("migrate", help="upgrade the database schema").set_defaults(func=migrate)
    keys_cmd = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create_cmd = keys_cmd.add_parser("create", help="create a key and print it once")
    create_cmd.add_argument("--name", required=True)
    create_cmd.add_argument("--scope", required=True, choices=[scope.value for scope in Scope])
    create_cmd.set_defaults(func=keys_create)
    add_client_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``kiln`` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "client_command", False):  # a client: its output is its answers
        raise SystemExit(run_client_command(args))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Everything kiln and its workers create (databases, artifacts, keys, spooled uploads)
    # is readable by this user only; the child processes inherit the mask.
    os.umask(PRIVATE_UMASK)
    args.func(args)


if __name__ == "__main__":
    main()
