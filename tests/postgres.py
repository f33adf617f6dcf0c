"""A real PostgreSQL server for tests, from Debian's ``postgresql`` package.

Why a real server: the store's SQL (``ON CONFLICT``, ``FOR UPDATE``, advisory locks, type
mapping) must hold on Postgres itself, and a fake would only test the fake.

``PostgresServer.start()`` runs ``initdb`` into a fresh directory under the system temp dir
(with ``--no-sync``) and ``pg_ctl start`` on a free 127.0.0.1 port plus a unix socket in that
directory, with durability off (``fsync``, ``synchronous_commit``, ``full_page_writes``): test
data need not survive a power cut. Postgres refuses to run as root, so as root every server
command runs as the ``postgres`` OS user (``runuser``) and the directory is handed to it.
Authentication is ``trust``, reachable only from this machine.

Fixtures (expose them from a ``conftest.py`` with ``from tests.postgres import ...``):
``postgres_server`` starts one server per session and stops it at the end;
``postgres_url`` creates a fresh database per test and drops it afterwards.

No binaries: the fixture fails (never skips: CI must run these tests) and says that
``bash scripts/install-system-deps`` installs them.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

__all__ = ["PostgresServer", "find_bindir", "postgres_server", "postgres_url"]

OS_USER = "postgres"
SUPERUSER = "postgres"
MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on "
    "PATH: run `bash scripts/install-system-deps` (it installs Debian's postgresql package)"
)


def find_bindir() -> Path | None:
    """The newest installed server's bin directory (Debian keeps them off PATH)."""

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if candidates:
        return Path(candidates[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One throwaway cluster: ``start()`` it, ``create_database()`` per test, ``stop()``."""

    def __init__(self, bindir: Path, root: Path, port: int, as_user: list[str]) -> None:
        self.bindir = bindir
        self.root = root
        self.port = port
        self.data = root / "data"
        self.socket_dir = root / "socket"
        self.log = root / "server.log"
        self._as_user = as_user
        self._names = itertools.count(1)
        self._running = False
        #: Wall time initdb + start took (for reports; never asserted on).
        self.startup_seconds = 0.0

    @classmethod
    def start(cls, attempts: int = 3) -> PostgresServer:
        bindir = find_bindir()
        if bindir is None or not (bindir / "pg_ctl").exists():
            pytest.fail(MISSING, pytrace=False)
        as_user: list[str] = []
        root = Path(tempfile.mkdtemp(prefix="runnerscale-pg-"))
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam(OS_USER)
            except KeyError:
                shutil.rmtree(root, ignore_errors=True)
                pytest.fail(f"no {OS_USER!r} OS user to run Postgres as. {MISSING}", pytrace=False)
            os.chown(root, owner.pw_uid, owner.pw_gid)
            as_user = ["runuser", "-u", OS_USER, "--"]
        server = cls(bindir, root, _free_port(), as_user)
        began = time.monotonic()
        try:
            server._initdb()
            for attempt in range(attempts):
                if server._pg_ctl_start():
                    break
                if attempt == attempts - 1:
                    pytest.fail(f"Postgres did not start:\n{server.log_tail()}", pytrace=False)
                server.port = _free_port()  # most likely someone took the port meanwhile
        except BaseException:
            server.stop()
            raise
        server.startup_seconds = time.monotonic() - began
        atexit.register(server.stop)
        return server

    def _run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_user, *(str(arg) for arg in args)],
            cwd=self.root,  # the postgres user may not be allowed into the caller's cwd
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def _initdb(self) -> None:
        done = self._run(
            self.bindir / "initdb",
            "-D",
            self.data,
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        if done.returncode != 0:
            pytest.fail(f"initdb failed:\n{done.stdout}\n{done.stderr}", pytrace=False)
        self._run("mkdir", "-p", self.socket_dir)

    def _pg_ctl_start(self) -> bool:
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-p {self.port}",
                f"-k {self.socket_dir}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
            ]
        )
        done = self._run(
            self.bindir / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60",
            "-o", options, "start",
        )  # fmt: skip
        self._running = done.returncode == 0
        return self._running

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as error:
            return f"(no server log: {error})"

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL as a user would configure it."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        )

    def create_database(self) -> str:
        """A new, empty database; returns its name."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        with self._admin() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        with self._admin() as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def stop(self) -> None:
        """Stop the server and delete its directory. Idempotent."""
        if self._running:
            self._run(self.bindir / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
            self._running = False
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """``postgresql://`` URL of a database of this test's own."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)
