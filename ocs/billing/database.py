"""Open the billing database from a URL and migrate it (SQLAlchemy 2 Core, Alembic).

Two databases are supported (docs/invoicing.md, "Database"):

* **SQLite** (``sqlite:///./data/billing.db``, the embedded default): one file beside
  the private Redis. Every connection runs in WAL mode (readers do not block the
  writer), with foreign keys on, ``synchronous=FULL`` (a committed transaction survives
  a power cut) and a busy timeout (a writer waits for the lock instead of failing).
  Transactions start with ``BEGIN IMMEDIATE``: the database's one write lock is taken
  at the start, so two finalising transactions queue instead of both reading and one
  failing at its first write. :func:`reading` gives an engine whose transactions are
  plain ``BEGIN`` (deferred), for read-only work beside a bill run.
* **PostgreSQL** (``postgresql://user@host/db``), for production, through psycopg 3
  (``postgresql://`` means ``postgresql+psycopg://`` here, not SQLAlchemy's psycopg2
  default).

The engine is synchronous: bill runs, audits and migrations are batch work on their own
processes, and the API's few reads can run in a thread (``asyncio.to_thread``), so the
async engine would add a second code path for no gain.

:func:`migrate` brings a database to the newest revision of the migrations packaged in
``ocs/billing/migrations/versions/``; :func:`open_database` opens one and refuses it
unless it is at that revision. A database at a revision this code does not know (a newer
``ocs`` migrated it) is refused by both, with :class:`UnknownRevision`.

A password in the URL never reaches a log or an error message: they show
:func:`shown_url`.
"""

from __future__ import annotations

import dataclasses
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from ocs.billing.schema import metadata

#: Milliseconds a SQLite connection waits for the write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Key of the PostgreSQL advisory lock that serialises concurrent migrations.
_MIGRATION_LOCK = 0x6F63_7362  # "ocsb"
_READ_ONLY = "ocs_billing_read_only"

_DRIVERS = {
    "sqlite": "sqlite+pysqlite",
    "sqlite+pysqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}


class BillingDatabaseError(Exception):
    """The billing database cannot be used; the message says why and what to do."""


class UnknownRevision(BillingDatabaseError):
    """The database was migrated by a newer ocs: this one does not know its revision."""


class NotMigrated(BillingDatabaseError):
    """The database is empty or behind the migrations: run ``ocs billing migrate``."""


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    """What :func:`migrate` did: the revision before (None: empty) and after."""

    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def shown_url(url: str | URL) -> str:
    """The URL as it may be displayed: its password (if any) masked."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "<invalid URL>"
    if "password" in parsed.query:  # libpq takes it in the query too
        parsed = parsed.update_query_dict({"password": "***"})
    return parsed.render_as_string(hide_password=True)


def parse_url(url: str | URL) -> URL:
    """``url`` with the driver this package uses; :class:`BillingDatabaseError` when it
    is not a SQLite file or a PostgreSQL database."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        raise BillingDatabaseError(
            "billing.database_url: not a database URL (sqlite:///path/billing.db or "
            "postgresql://user@host/database)"
        ) from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise BillingDatabaseError(
            f"billing.database_url: {parsed.drivername}:// is not supported, only "
            f"sqlite:///path and postgresql:// (psycopg 3): {shown_url(parsed)}"
        )
    parsed = parsed.set(drivername=driver)
    if driver.startswith("sqlite") and parsed.database in (None, "", ":memory:"):
        raise BillingDatabaseError(
            "billing.database_url: an in-memory SQLite database loses every invoice; "
            "name a file (sqlite:///./data/billing.db)"
        )
    return parsed


def create_billing_engine(url: str | URL) -> Engine:
    """An engine for ``url`` configured as described above; nothing is checked or
    created in the database yet (SQLite: the file's directory is created)."""
    parsed = parse_url(url)
    if parsed.drivername.startswith("sqlite"):
        assert parsed.database is not None
        if not parsed.database.startswith("file:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # pysqlite's own transaction handling would BEGIN late (at the first write) and
    # commit around DDL; off, so that SQLAlchemy's begin event emits the BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise BillingDatabaseError(f"SQLite refused WAL mode (journal_mode is {mode})")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    if connection.get_execution_options().get(_READ_ONLY):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def reading(engine: Engine) -> Engine:
    """``engine`` for read-only work: on SQLite its transactions do not take the write
    lock (they see one snapshot and never wait for a bill run); the same elsewhere."""
    return engine.execution_options(**{_READ_ONLY: True})


# --- migrations -------------------------------------------------------------------------


def _scripts() -> ScriptDirectory:
    location = resources.files("ocs.billing") / "migrations"
    return ScriptDirectory(str(location))


def head_revision() -> str:
    """The newest revision of the packaged migrations."""
    head = _scripts().get_current_head()
    assert head is not None, "no billing migrations packaged"
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    heads = MigrationContext.configure(connection).get_current_heads()
    if len(heads) > 1:
        raise BillingDatabaseError(f"billing database has several revisions: {heads}")
    return heads[0] if heads else None


def _check_known(revision: str | None, url: str) -> None:
    if revision is None:
        return
    try:
        known = _scripts().get_revision(revision)
    except CommandError:
        known = None
    if known is None:
        raise UnknownRevision(
            f"billing database {url} is at revision {revision!r}, which this version of "
            f"ocs does not know (its newest is {head_revision()!r}): it was migrated by a "
            "newer ocs. Run that version, or restore a backup taken before the upgrade."
        )


def migrate(url: str | URL | Engine, *, to: str | None = None) -> Migration:
    """Bring the database to :func:`head_revision` (or the earlier revision ``to``: the
    tests of a migration start from the one before it), in one transaction; running it
    again does nothing. Concurrent runs are serialised (SQLite's write lock, a
    PostgreSQL advisory lock), so two processes starting at once are safe."""
    engine = url if isinstance(url, Engine) else create_billing_engine(url)
    try:
        return _migrate(engine, head_revision() if to is None else to)
    finally:
        if not isinstance(url, Engine):
            engine.dispose()


def _migrate(engine: Engine, head: str) -> Migration:
    shown = shown_url(engine.url)
    scripts = _scripts()
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
            before = current_revision(connection)
            _check_known(before, shown)
            if before == head:
                return Migration(before, head)
            environment = EnvironmentContext(
                Config(),
                scripts,
                fn=lambda rev, _context: scripts._upgrade_revs(head, rev),
                destination_rev=head,
            )
            with environment:
                environment.configure(
                    connection=connection,
                    target_metadata=metadata,
                    render_as_batch=connection.dialect.name == "sqlite",
                )
                environment.run_migrations()
            after = current_revision(connection)
    except SQLAlchemyError as exc:
        raise BillingDatabaseError(f"billing database {shown}: {error_reason(exc)}") from None
    assert after == head, (after, head)
    return Migration(before, after)


def error_reason(exc: SQLAlchemyError) -> str:
    """The driver's message without the statement and parameters SQLAlchemy appends."""
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc).strip().splitlines()[0]


def open_database(url: str | URL, *, upgrade: bool = False) -> Engine:
    """An engine for the billing database at ``url``, checked to be at the head revision.

    ``upgrade=True`` migrates it first (the embedded SQLite default can be created on
    first use). Raises :class:`NotMigrated` when it is empty or behind, and
    :class:`UnknownRevision` when a newer ocs migrated it.
    """
    engine = create_billing_engine(url)
    try:
        if upgrade:
            _migrate(engine, head_revision())
        check_revision(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


@dataclasses.dataclass(frozen=True, slots=True)
class RevisionStatus:
    """Where a database stands: its revision (None: empty), this code's head, and
    whether this code knows the revision at all."""

    revision: str | None
    head: str
    known: bool

    @property
    def current(self) -> bool:
        return self.revision == self.head


def open_for_command(command: str, url: str | URL) -> Engine | None:
    """:func:`open_database` for the command line ``command``; None after saying on
    stderr why the database cannot be used (the command exits 2)."""
    try:
        return open_database(url)
    except BillingDatabaseError as error:
        print(f"{command}: billing database {shown_url(url)}: {error}", file=sys.stderr)
        return None


def revision_status(engine: Engine) -> RevisionStatus:
    """Read the database's revision (a read-only transaction)."""
    try:
        with reading(engine).connect() as connection:
            revision = current_revision(connection)
    except SQLAlchemyError as exc:
        raise BillingDatabaseError(
            f"billing database {shown_url(engine.url)}: {error_reason(exc)}"
        ) from None
    try:
        known = revision is None or _scripts().get_revision(revision) is not None
    except CommandError:
        known = False
    return RevisionStatus(revision, head_revision(), known)


def check_revision(engine: Engine) -> str:
    """The database's revision, which must be the head; raise otherwise."""
    shown = shown_url(engine.url)
    status = revision_status(engine)
    _check_known(status.revision, shown)
    if not status.current:
        state = "empty" if status.revision is None else f"at revision {status.revision!r}"
        raise NotMigrated(
            f"billing database {shown} is {state}, this ocs needs {status.head!r}: "
            "run `ocs billing migrate`"
        )
    return status.head
