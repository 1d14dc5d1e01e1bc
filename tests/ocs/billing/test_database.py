"""The billing database on SQLite and on a real PostgreSQL: migrations, the schema they
build, and the rules the database itself enforces (a record billed once, one cycle
invoice per account and period, a final invoice never changes)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError, OperationalError

from ocs.billing import database, schema
from ocs.billing.database import (
    BillingDatabaseError,
    Migration,
    NotMigrated,
    UnknownRevision,
    create_billing_engine,
    head_revision,
    migrate,
    open_database,
    parse_url,
    reading,
    revision_status,
    shown_url,
)
from ocs.billing.numbering import ensure_sequence, finalize_invoice
from ocs.billing.schema import invoice_item_records, invoice_items, invoices

PERIOD = 1_793_491_200  # 2026-11-01T00:00:00Z
NEXT = 1_796_083_200  # 2026-12-01T00:00:00Z


@pytest.fixture
def engine(database_url):
    migrate(database_url)
    engine = open_database(database_url)
    yield engine
    engine.dispose()


def add_invoice(connection, invoice_id, account="acct-1", *, start=PERIOD, off_cycle=False):
    connection.execute(
        invoices.insert().values(
            id=invoice_id, account=account, entity="ocs-de", off_cycle=off_cycle,
            period_start=start, period_end=start + 30 * 86400, currency="EUR",
            minor_digits=2, created_at=start,
        )
    )  # fmt: skip


def add_item(connection, invoice_id, position, *, amount=1_230_000, kind="usage"):
    result = connection.execute(
        invoice_items.insert().values(
            invoice_id=invoice_id, position=position, kind=kind, service="data",
            quantity=1000, unit="octets", amount_micro=amount, amount_minor=amount // 10_000,
        )
    )  # fmt: skip
    return result.inserted_primary_key[0]


def bill(connection, item_id, account, *record_ids):
    """Link records of ``account`` (the account they charged) to the line ``item_id``."""
    connection.execute(
        invoice_item_records.insert(),
        [{"item_id": item_id, "account": account, "record_id": r} for r in record_ids],
    )


# --- migrations ---------------------------------------------------------------------------


def test_migrate_builds_the_schema_from_empty_and_a_second_run_does_nothing(database_url):
    assert migrate(database_url) == Migration(None, head_revision())
    assert migrate(database_url) == Migration(head_revision(), head_revision())
    engine = open_database(database_url)
    try:
        names = set(sa.inspect(engine).get_table_names())
        assert {table.name for table in schema.metadata.sorted_tables} <= names
        assert revision_status(engine).current
    finally:
        engine.dispose()


def test_migrate_builds_the_schema_in_a_new_postgresql_database(postgres_server):
    """The other tests run in a schema of their own; this one in a database's public."""
    url = postgres_server.create_database()
    assert migrate(url) == Migration(None, head_revision())
    engine = open_database(url)
    try:
        assert "invoices" in sa.inspect(engine).get_table_names(schema="public")
    finally:
        engine.dispose()


def test_the_migrated_database_is_exactly_the_schema_module(engine):
    """A table or column changed in schema.py without a migration (or the reverse)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, schema.metadata)
    assert differences == []


def test_no_float_or_numeric_column_anywhere_and_money_is_bigint(engine):
    inspector = sa.inspect(engine)
    money = []
    for table in inspector.get_table_names():
        for column in inspector.get_columns(table):
            kind = column["type"]
            assert not isinstance(kind, sa.Float | sa.Numeric), (table, column["name"], kind)
            assert not any(
                word in str(kind).upper() for word in ("REAL", "FLOAT", "DOUBLE", "NUMERIC")
            ), (table, column["name"], kind)
            if column["name"].endswith(("_micro", "_minor")):
                assert isinstance(kind, sa.BigInteger), (table, column["name"], kind)
                money.append((table, column["name"]))
    declared = {
        (table.name, column.name)
        for table in schema.metadata.sorted_tables
        for column in table.columns
        if column.name.endswith(("_micro", "_minor"))
    }
    assert set(money) == declared  # the check saw every money column
    assert ("invoice_items", "amount_micro") in declared and len(declared) == 25
    # 0006: the wholesale price of a wholesale line
    assert ("wholesale_items", "price_micro") in declared
    # 0004: payments, refunds (micro and minor), allocations and the accounts' credit
    assert {("payments", "amount_minor"), ("payment_accounts", "credit_minor")} <= declared


def test_an_empty_database_is_refused_until_migrated(database_url):
    with pytest.raises(NotMigrated, match="empty.*run `ocs billing migrate`"):
        open_database(database_url)
    open_database(database_url, upgrade=True).dispose()
    open_database(database_url).dispose()


def test_a_database_at_an_unknown_newer_revision_is_refused(engine, database_url):
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(UnknownRevision, match="'9999'.*does not know.*newer ocs"):
        open_database(database_url)
    with pytest.raises(UnknownRevision):
        migrate(database_url)
    with engine.connect() as connection:  # migrate changed nothing
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
            ("9999",)
        ]


def test_concurrent_migrations_serialise_and_both_succeed(database_url):
    results: list[object] = []

    def run() -> None:
        try:
            results.append(migrate(database_url))
        except Exception as exc:  # pragma: no cover - the failure is the assertion below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    head = head_revision()
    assert sorted(results, key=str) == sorted(
        [Migration(None, head), Migration(head, head), Migration(head, head)], key=str
    )


# --- connections -----------------------------------------------------------------------------


def test_sqlite_connections_use_wal_foreign_keys_full_sync_and_a_busy_timeout(sqlite_url):
    engine = create_billing_engine(sqlite_url)
    try:
        with engine.connect() as connection:

            def pragma(name: str) -> object:
                return connection.exec_driver_sql(f"PRAGMA {name}").scalar()

            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("synchronous") == 2  # FULL
            assert pragma("busy_timeout") == 30_000
    finally:
        engine.dispose()


def test_sqlite_writes_take_the_lock_at_begin_and_readers_never_wait(sqlite_url, monkeypatch):
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 200)
    migrate(sqlite_url)
    engine = open_database(sqlite_url)
    try:
        with engine.begin() as writer:
            add_invoice(writer, "inv-1")  # holds the write lock, not committed
            # BEGIN IMMEDIATE: refused at the start, before any statement of its own
            with pytest.raises(OperationalError, match="locked"), engine.begin():
                pass
            with reading(engine).connect() as reader:  # a snapshot, no lock needed
                assert (
                    reader.execute(sa.select(sa.func.count()).select_from(invoices)).scalar() == 0
                )
        with reading(engine).connect() as reader:
            assert reader.execute(sa.select(sa.func.count()).select_from(invoices)).scalar() == 1
    finally:
        engine.dispose()


def test_foreign_keys_are_enforced(engine):
    with pytest.raises(IntegrityError), engine.begin() as connection:
        add_item(connection, "no-such-invoice", 1)


def test_postgresql_urls_use_psycopg_3_and_other_databases_are_refused(tmp_path):
    assert parse_url("postgresql://u@db/billing").drivername == "postgresql+psycopg"
    assert parse_url("postgres://u@db/billing").drivername == "postgresql+psycopg"
    assert parse_url(f"sqlite:///{tmp_path}/b.db").drivername == "sqlite+pysqlite"
    with pytest.raises(BillingDatabaseError, match="mysql:// is not supported"):
        parse_url("mysql://u:pw@db/billing")
    with pytest.raises(BillingDatabaseError, match="in-memory"):
        parse_url("sqlite://")
    with pytest.raises(BillingDatabaseError, match="not a database URL"):
        parse_url("no url")


def test_a_password_in_the_url_is_never_shown(free_port):
    url = f"postgresql://billing:s3cret-pw@127.0.0.1:{free_port()}/billing"
    assert "s3cret-pw" not in shown_url(url)
    assert "***" in shown_url(url)
    with pytest.raises(BillingDatabaseError) as refused:  # nothing listens on that port
        migrate(url)
    assert "s3cret-pw" not in str(refused.value)
    assert "127.0.0.1" in str(refused.value)
    # libpq also takes the password as a query parameter
    in_query = f"postgresql://billing@127.0.0.1:{free_port()}/billing?password=s3cret-pw"
    assert "s3cret-pw" not in shown_url(in_query) and "password=" in shown_url(in_query)
    with pytest.raises(BillingDatabaseError) as refused:
        migrate(in_query)
    assert "s3cret-pw" not in str(refused.value)
    with pytest.raises(BillingDatabaseError) as refused:
        parse_url("mysql://u:s3cret-pw@db/billing")
    assert "s3cret-pw" not in str(refused.value)


def test_the_sqlite_file_directory_is_created(tmp_path):
    url = f"sqlite:///{tmp_path}/a/b/billing.db"
    migrate(url)
    assert (tmp_path / "a" / "b" / "billing.db").is_file()


# --- the database's rules -----------------------------------------------------------------


def test_a_rated_record_cannot_be_billed_twice(engine):
    with engine.begin() as connection:
        add_invoice(connection, "inv-1", "acct-1")
        add_invoice(connection, "inv-2", "acct-2")
        first = add_item(connection, "inv-1", 1)
        second = add_item(connection, "inv-1", 2)
        other = add_item(connection, "inv-2", 1)
        bill(connection, first, "acct-1", "s1;1;10", "s1;2;10")
    # on another line of the invoice, on another account's invoice, on the same line
    for item in (second, other, first):
        with pytest.raises(IntegrityError), engine.begin() as connection:
            bill(connection, item, "acct-1", "s1;2;10")
    with engine.connect() as connection:
        assert (
            connection.execute(
                sa.select(sa.func.count()).select_from(invoice_item_records)
            ).scalar()
            == 2
        )


def test_a_second_cycle_invoice_for_an_account_and_period_is_refused(engine):
    with engine.begin() as connection:
        add_invoice(connection, "inv-1", "acct-1")
    with pytest.raises(IntegrityError), engine.begin() as connection:
        add_invoice(connection, "inv-1-again", "acct-1")
    with engine.begin() as connection:
        add_invoice(connection, "inv-next", "acct-1", start=NEXT)  # the next period
        add_invoice(connection, "inv-other", "acct-2")  # another account
        add_invoice(connection, "inv-close", "acct-1", off_cycle=True)  # off-cycle
        add_invoice(connection, "inv-close-2", "acct-1", off_cycle=True)


def test_voiding_frees_the_period_and_the_records_for_the_replacement(engine):
    with engine.begin() as connection:
        ensure_sequence(connection, "ocs-de", "invoice", "INV-{seq:06d}")
        add_invoice(connection, "inv-1", "acct-1")
        item = add_item(connection, "inv-1", 1)
        bill(connection, item, "acct-1", "s1;1;10")
        finalize_invoice(connection, "inv-1", PERIOD + 100)
    with engine.begin() as connection:
        connection.execute(
            invoices.update()
            .where(invoices.c.id == "inv-1")
            .values(state="void", voided_at=PERIOD + 200, void_reason="wrong plan")
        )
        connection.execute(
            invoice_item_records.update()
            .where(invoice_item_records.c.item_id == item)
            .values(released=True)
        )
        add_invoice(connection, "inv-1b", "acct-1")
        replacement = add_item(connection, "inv-1b", 1)
        bill(connection, replacement, "acct-1", "s1;1;10")
    with pytest.raises(IntegrityError), engine.begin() as connection:
        add_invoice(connection, "inv-1c", "acct-1")  # the replacement is live


@pytest.mark.parametrize(
    "values",
    [
        {"state": "paid"},
        {"state": "final"},  # final without a number
        {"number": "INV-1"},  # a draft with a number
        {"total_micro": 5},  # total != subtotal + tax
        {"currency": "EU"},
        {"period_end": PERIOD},
    ],
)
def test_check_constraints_refuse_inconsistent_invoices(engine, values):
    with engine.begin() as connection:
        add_invoice(connection, "inv-1")
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(invoices.update().where(invoices.c.id == "inv-1").values(**values))


def test_check_constraints_refuse_an_unknown_line_kind(engine):
    with engine.begin() as connection:
        add_invoice(connection, "inv-1")
    with pytest.raises(IntegrityError), engine.begin() as connection:
        add_item(connection, "inv-1", 1, kind="gift")


def test_a_final_invoice_never_changes_but_can_be_voided_once(engine):
    with engine.begin() as connection:
        ensure_sequence(connection, "ocs-de", "invoice", "INV-{seq:06d}")
        add_invoice(connection, "inv-1")
        item = add_item(connection, "inv-1", 1)
        bill(connection, item, "acct-1", "s1;1;10")
        finalize_invoice(connection, "inv-1", PERIOD + 100)
    where = invoices.c.id == "inv-1"
    refused = [
        invoices.update().where(where).values(total_micro=0, subtotal_micro=0),
        invoices.update().where(where).values(state="draft", number=None, finalized_at=None),
        invoices.update()
        .where(where)
        .values(state="void", voided_at=1, void_reason="x", subtotal_micro=1, total_micro=1),
        invoices.delete().where(where),
        invoice_items.update().where(invoice_items.c.id == item).values(amount_micro=1),
        invoice_items.delete().where(invoice_items.c.id == item),
        invoice_items.insert().values(
            invoice_id="inv-1", position=2, kind="one_off", amount_micro=1, amount_minor=0
        ),
        invoice_item_records.insert().values(item_id=item, account="acct-1", record_id="s2"),
        invoice_item_records.delete(),
        invoice_item_records.update().values(released=True),  # only a void invoice's
    ]
    for statement in refused:
        with pytest.raises(IntegrityError, match="ocs_billing_immutable"), engine.begin() as c:
            c.execute(statement)
    with engine.begin() as connection:
        connection.execute(
            invoices.update().where(where).values(state="void", voided_at=2, void_reason="x")
        )
        connection.execute(invoice_item_records.update().values(released=True))
    with pytest.raises(IntegrityError, match="ocs_billing_immutable"), engine.begin() as c:
        c.execute(invoices.update().where(where).values(void_reason="changed"))
    with engine.connect() as connection:
        row = connection.execute(sa.select(invoices).where(where)).one()
    assert (row.state, row.number, row.voided_at) == ("void", "INV-000001", 2)


def test_the_sqlite_void_trigger_guards_every_invoice_column(sqlite_url):
    """PostgreSQL's trigger compares whole rows; SQLite's lists the columns voiding may
    not change: a column added later without updating the trigger fails here."""
    migrate(sqlite_url)
    engine = open_database(sqlite_url)
    try:
        with engine.connect() as connection:
            trigger = connection.execute(
                sa.text("SELECT sql FROM sqlite_master WHERE name = 'invoices_immutable_update'")
            ).scalar_one()
    finally:
        engine.dispose()
    for column in invoices.columns:
        if column.name not in ("state", "voided_at", "void_reason"):
            assert f"NEW.{column.name} IS OLD.{column.name}" in trigger, column.name


def test_a_draft_can_be_rebuilt_and_deleted(engine):
    with engine.begin() as connection:
        add_invoice(connection, "inv-1")
        item = add_item(connection, "inv-1", 1)
        bill(connection, item, "acct-1", "s1;1;10")
    with engine.begin() as connection:
        connection.execute(invoice_item_records.delete())
        connection.execute(invoice_items.update().values(amount_micro=7, amount_minor=0))
        connection.execute(invoice_items.delete())
        connection.execute(invoices.delete())


def test_migration_0003_keys_the_existing_links_by_the_account_of_their_section(database_url):
    # a database billed under 0002: links carried the invoice id, not the account
    migrate(database_url, to="0002")
    engine = create_billing_engine(database_url)  # open_database refuses a database behind
    try:
        with engine.begin() as connection:
            add_invoice(connection, "inv-1", "corp")
            own = add_item(connection, "inv-1", 1)
            child_line = add_item(connection, "inv-1", 2)
            connection.execute(
                invoice_items.update()
                .where(invoice_items.c.id == child_line)
                .values(child_account="line-2")
            )
            add_invoice(connection, "inv-0", "corp", start=PERIOD - 30 * 86400)
            voided = add_item(connection, "inv-0", 1)
            connection.execute(
                sa.text(
                    "INSERT INTO invoice_item_records (item_id, record_id, invoice_id, released)"
                    " VALUES (:item, :record, :invoice, :released)"
                ),
                [
                    {"item": own, "record": "c;1;10", "invoice": "inv-1", "released": False},
                    {
                        "item": child_line,
                        "record": "l2;1;10",
                        "invoice": "inv-1",
                        "released": False,
                    },
                    {"item": voided, "record": "c;0;10", "invoice": "inv-0", "released": True},
                ],
            )
    finally:
        engine.dispose()
    assert migrate(database_url) == Migration("0002", head_revision())
    engine = open_database(database_url)
    try:
        with engine.begin() as connection:
            links = connection.execute(
                sa.select(
                    invoice_item_records.c.item_id,
                    invoice_item_records.c.account,
                    invoice_item_records.c.record_id,
                    invoice_item_records.c.released,
                ).order_by(invoice_item_records.c.record_id)
            ).all()
            assert [tuple(link) for link in links] == [
                (voided, "corp", "c;0;10", True),
                (own, "corp", "c;1;10", False),
                (child_line, "line-2", "l2;1;10", False),
            ]
            # the rules hold on the copied links: a live one is unique per account
            bill(connection, own, "corp", "c;0;10")  # released: billable again
        with pytest.raises(IntegrityError, match="account"), engine.begin() as connection:
            bill(connection, voided, "line-2", "l2;1;10")
    finally:
        engine.dispose()


def test_links_to_a_final_invoice_are_refused_however_many_are_inserted(engine):
    """One row, many rows, and (PostgreSQL) COPY, whose check runs once per statement."""
    with engine.begin() as connection:
        ensure_sequence(connection, "ocs-de", "invoice", "INV-{seq:06d}")
        add_invoice(connection, "inv-1")
        add_invoice(connection, "inv-2", "acct-2")
        item = add_item(connection, "inv-1", 1)
        draft_item = add_item(connection, "inv-2", 1)
        finalize_invoice(connection, "inv-1", PERIOD + 100)
    rows = [(draft_item, "acct-2", f"d;{n};10") for n in range(3)] + [(item, "acct-1", "s;1;10")]
    for insert in ("one", "many", "copy"):
        with pytest.raises(IntegrityError, match="ocs_billing_immutable"), engine.begin() as c:
            if insert == "one":
                bill(c, item, "acct-1", "s;1;10")
            elif insert == "many" or c.dialect.name != "postgresql":
                c.execute(
                    invoice_item_records.insert(),
                    [{"item_id": i, "account": a, "record_id": r} for i, a, r in rows],
                )
            else:
                _copy_links(c, rows)
    with engine.connect() as connection:
        count = sa.select(sa.func.count()).select_from(invoice_item_records)
        assert connection.execute(count).scalar() == 0
    with engine.begin() as connection:  # the draft's links alone go in
        if connection.dialect.name == "postgresql":
            _copy_links(connection, rows[:-1])
        else:
            bill(connection, draft_item, "acct-2", "d;0;10", "d;1;10", "d;2;10")
    with engine.connect() as connection:
        assert connection.execute(count).scalar() == 3


def _copy_links(connection, rows):
    statement = "COPY invoice_item_records (item_id, account, record_id) FROM STDIN"
    driver = connection.connection.driver_connection
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except connection.dialect.loaded_dbapi.Error as error:
        raise IntegrityError(statement, None, error) from error
