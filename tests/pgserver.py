"""A private PostgreSQL cluster for the test session, on a free loopback port.

Debian's server binaries refuse to run as root, so as root the cluster is
initialised and run as the `postgres` user. fsync is off: the data is thrown
away at the end of the session.
"""

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

USER = "botmon"
PASSWORD = "test-pg-password-4711"


def server_bin_dir() -> Path:
    """Where initdb and pg_ctl are; missing binaries fail the test."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError(
        "PostgreSQL's initdb was not found; run scripts/ensure-test-tools "
        "(apt-get install postgresql)"
    )


class PostgresCluster:
    """One initdb'd cluster; `create_database()` gives each botmon its own."""

    def __init__(self, port: int):
        self.port = port
        self.bin_dir = server_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="botmon-pg-"))
        self.data_dir = self.root / "data"
        self._names = itertools.count(1)
        self._as_postgres = (
            ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        )

    def start(self) -> "PostgresCluster":
        """Initialise the cluster on first use, then start its server."""
        if not self.data_dir.exists():
            self._init()
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self.root}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=300",
            ]
        )
        self._run(
            "pg_ctl", "start", "--wait", "--timeout", "60",
            "--pgdata", str(self.data_dir),
            "--log", str(self.root / "server.log"),
            "--options", options,
        )  # fmt: skip
        return self

    def _init(self) -> None:
        password_file = self.root / "password"
        password_file.write_text(PASSWORD + "\n")
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(password_file, "postgres", "postgres")
        self._run(
            "initdb",
            "--pgdata", str(self.data_dir),
            "--username", USER,
            "--pwfile", str(password_file),
            "--auth-local", "trust",
            "--auth-host", "scram-sha-256",
            "--encoding", "UTF8",
            "--no-sync",
        )  # fmt: skip

    def stop(self) -> None:
        """Stop the server, closing botmon's sessions; the data stays."""
        self._run(
            "pg_ctl", "stop", "--wait", "--mode", "fast",
            "--pgdata", str(self.data_dir),
        )  # fmt: skip

    def destroy(self) -> None:
        """Stop the server if it runs, and delete its files."""
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", scheme: str = "postgresql") -> str:
        return f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres", **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.url(database), **kwargs)

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"botmon_{os.getpid()}_{next(self._names)}"
        with self.connect(autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _run(self, program: str, *arguments: str) -> None:
        command = [*self._as_postgres, str(self.bin_dir / program), *arguments]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({result.returncode}):\n{result.stdout}"
                f"{result.stderr}\n{self.log()}"
            )


def read_postgresql(url: str, query: str, *args) -> list[tuple]:
    """Rows read straight from a botmon's PostgreSQL database."""
    with psycopg.connect(url) as connection:
        return connection.execute(query, args or None).fetchall()
