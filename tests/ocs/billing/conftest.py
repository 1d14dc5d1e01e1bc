"""The billing database under test: a SQLite file, and a private PostgreSQL cluster.

``postgres_server`` starts one cluster for the session (initdb + pg_ctl in a temporary
directory, on a free port of 127.0.0.1, trust authentication, fsync off: durability is
not what these tests check). initdb refuses to run as root, so as root the cluster runs
as an unprivileged user (``postgres`` when it exists, else ``nobody``). The tests on
PostgreSQL are skipped only when its binaries are absent (.ci/run installs Debian's
``postgresql``).

``database_url`` is parametrised over both: every test that takes it runs once on a
fresh SQLite file and once on a fresh PostgreSQL database (a schema of its own on the
search path: CREATE DATABASE takes 0.4 s, CREATE SCHEMA milliseconds).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import psycopg
import pytest

from tests.helpers import get_free_port


def postgres_bindir() -> Path | None:
    """The directory of the newest PostgreSQL server binaries installed, or None."""
    candidates = sorted(
        (Path(path).parent for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _unprivileged() -> tuple[int, int] | None:
    """uid, gid to run PostgreSQL as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) exists")


@dataclass
class PostgresServer:
    bindir: Path
    base: Path
    port: int
    user: tuple[int, int] | None
    _names: Iterator[int] = count(1)

    @property
    def data(self) -> Path:
        return self.base / "data"

    def run(self, *command: str | Path) -> subprocess.CompletedProcess[str]:
        prefix: list[str] = []
        if self.user is not None:
            uid, gid = self.user
            prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
        return subprocess.run(
            [*prefix, *(str(part) for part in command)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "LC_ALL": "C", "TZ": "UTC"},
        )

    def start(self) -> None:
        if self.user is not None:
            os.chown(self.base, *self.user)
        done = self.run(
            self.bindir / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--no-sync",
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        done = self.run(
            self.bindir / "pg_ctl", "-D", self.data, "-l", self.base / "postgres.log",
            "-o", options, "-w", "-t", "30", "start",
        )  # fmt: skip
        if done.returncode != 0:
            log = (self.base / "postgres.log").read_text(errors="replace")
            raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}\n{done.stderr}\n{log}")

    def stop(self) -> None:
        self.run(self.bindir / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        )

    def create_database(self) -> str:
        """A new empty database (0.4 s); its URL."""
        name = f"billing_{next(self._names)}"
        with self._admin() as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def create_schema(self) -> str:
        """A new empty schema of the ``postgres`` database, first on the search path of
        every connection of the URL returned: to the code, an empty database (tables,
        functions, triggers and ``alembic_version`` all land in it), in milliseconds."""
        name = f"billing_{next(self._names)}"
        with self._admin() as connection:
            connection.execute(f"CREATE SCHEMA {name}")
        return f"{self.url()}?options=-csearch_path%3D{name}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries not installed (no /usr/lib/postgresql/*/bin/initdb, "
            "no initdb on PATH): apt-get install postgresql"
        )
    base = Path(tempfile.mkdtemp(prefix="ocs-billing-pg-"))
    server = PostgresServer(bindir, base, get_free_port(), _unprivileged())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'billing.db'}"


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """An empty PostgreSQL database of its own (a schema, see create_schema)."""
    return postgres_server.create_schema()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty billing database: a SQLite file, then a PostgreSQL database."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url
