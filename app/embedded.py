"""Throwaway `redis-server` and Postgres for the demo and the tests.

Each server runs as a child process on a free loopback port with its data in
a folder of its own; `stop()` ends it and, unless asked to keep it, removes
the folder. Postgres refuses to run as root, so as root it runs as the
`postgres` user (or `nobody`) through `setpriv`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)


class EmbeddedError(RuntimeError):
    """A server could not be found or started."""


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedError(f"{name} exited with code {process.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.2),
        ):
            return
        time.sleep(0.05)
    raise EmbeddedError(f"{name} did not accept connections on port {port} in 30 s")


def _terminate(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class EmbeddedRedis:
    """A `redis-server` with append-only persistence, on 127.0.0.1."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise EmbeddedError(
                "redis-server is not installed; install it (apt-get install "
                "redis-server) or set REDIS_URL"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "dir": str(self.folder),
            "appendonly": "yes",
            "appendfsync": "always",
            "save": "",
            "daemonize": "no",
            "logfile": str(self.folder / "redis.log"),
        }
        command = [binary]
        for name, value in options.items():
            command += [f"--{name}", value]
        # A session of its own: Ctrl-C in the terminal reaches only the
        # program that started it, which then stops the servers in order.
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, start_new_session=True
        )
        _wait_for_port(self.port, self.process, "redis-server")
        logger.info("embedded_redis_started", extra={"port": self.port})

    def stop(self, kill: bool = False) -> None:
        """Stop the server; `kill` sends SIGKILL, as a crash would."""
        if self.process is not None:
            _terminate(self.process, signal.SIGKILL if kill else signal.SIGTERM)
            self.process = None


def _postgres_bindir() -> Path:
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        output = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        candidates.append(Path(output.stdout.strip()))
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    raise EmbeddedError(
        "Postgres server programs (initdb, postgres) were not found; install "
        "postgresql or set DATABASE_URL"
    )


def _unprivileged_user() -> pwd.struct_passwd | None:
    """Return the account to run Postgres as, or None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise EmbeddedError(
        "cannot run Postgres as root, and no user postgres or nobody exists to "
        "run it as; create one or set DATABASE_URL"
    )


class EmbeddedPostgres:
    """A Postgres cluster made by initdb in a folder, on 127.0.0.1."""

    def __init__(self, folder: Path, port: int | None = None, fast: bool = False):
        self.folder = folder
        self.port = port or free_port()
        self.fast = fast
        self.process: subprocess.Popen[bytes] | None = None
        self.user = _unprivileged_user()

    @property
    def url(self) -> str:
        return f"postgresql://parking@127.0.0.1:{self.port}/parking"

    def _command(self, *args: str) -> list[str]:
        if self.user is None:
            return list(args)
        return [
            "setpriv",
            f"--reuid={self.user.pw_uid}",
            f"--regid={self.user.pw_gid}",
            "--clear-groups",
            *args,
        ]

    def _initdb(self, bindir: Path) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            os.chown(self.folder, self.user.pw_uid, self.user.pw_gid)
        result = subprocess.run(
            self._command(
                str(bindir / "initdb"),
                "-D",
                str(self.folder / "data"),
                "-U",
                "parking",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedError(f"initdb failed: {result.stderr.strip()}")

    def start(self) -> None:
        bindir = _postgres_bindir()
        if not (self.folder / "data").exists():
            self._initdb(bindir)
        options = [
            "-D",
            str(self.folder / "data"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-k",
            str(self.folder),
            "-c",
            "max_connections=200",
        ]
        if self.fast:
            # Only for throwaway test data: losing it on a crash is fine.
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        log = open(self.folder / "postgres.log", "ab")  # noqa: SIM115
        with log:
            self.process = subprocess.Popen(
                self._command(str(bindir / "postgres"), *options),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        _wait_for_port(self.port, self.process, "postgres")
        self._create_database(bindir)
        logger.info("embedded_postgres_started", extra={"port": self.port})

    def _create_database(self, bindir: Path) -> None:
        deadline = time.monotonic() + 30
        while True:
            result = subprocess.run(
                [
                    str(bindir / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "parking",
                    "parking",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode == 0 or "already exists" in result.stderr:
                return
            if time.monotonic() > deadline:
                raise EmbeddedError(f"createdb failed: {result.stderr.strip()}")
            time.sleep(0.2)

    def stop(self, kill: bool = False) -> None:
        """Stop the server with a fast shutdown, or SIGKILL when `kill`."""
        if self.process is not None:
            _terminate(self.process, signal.SIGKILL if kill else signal.SIGINT)
            self.process = None


class EmbeddedServers:
    """Redis and Postgres in one throwaway folder, removed on `stop()`."""

    def __init__(self, folder: Path | None = None, fast: bool = False) -> None:
        """Create the folder, with its parents, or raise `EmbeddedError`."""
        self.owns_folder = folder is None
        self.folder = folder or Path(tempfile.mkdtemp(prefix="parking-sale-"))
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # mkdtemp makes the folder private, but Postgres may run as another user.
            self.folder.chmod(0o755)
        except OSError as exc:
            raise EmbeddedError(
                f"cannot create the data folder {self.folder}: {exc.strerror}"
            ) from None
        self.redis = EmbeddedRedis(self.folder / "redis")
        self.postgres = EmbeddedPostgres(self.folder / "postgres", fast=fast)

    def start(self) -> None:
        try:
            self.redis.start()
            self.postgres.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.redis.stop()
        self.postgres.stop()
        if self.owns_folder:
            shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def embedded_servers(fast: bool = False) -> Iterator[EmbeddedServers]:
    """Start Redis and Postgres in a temporary folder and stop them on exit."""
    servers = EmbeddedServers(fast=fast)
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()
