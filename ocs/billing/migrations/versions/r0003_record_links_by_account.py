"""Record links keyed by the record's account: ``invoice_item_records`` loses its
``invoice_id`` (the line's invoice is the item's) and gains ``account`` (the account
the record charged), and the one-live-link rule becomes a unique index on
``(account, record_id)`` instead of ``record_id`` alone.

Why: a bill run writes millions of links, and an index on the record id alone (or on
the invoice id, a hash) takes every insert to a random place of a large B-tree: most
of a large run's time, in the inserts and again in each commit, which writes the pages
they touched. A bill run writes its invoices in account order, so an index that leads
with the account grows at its end. The rule is as strict as before: a record's
account is a field of the record, so a record id with its account is unique where the
id is. On SQLite the table is its primary key (WITHOUT ROWID): one B-tree fewer.

On PostgreSQL the check that links go only to draft invoices runs once per insert
statement (a transition table) instead of once per row: a bill run's COPY of two
million rows called a PL/pgSQL function two million times.

The existing links are copied with the account of their line's section (the child
account, else the invoice's): the account whose records the line sums.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None

IMMUTABLE = "ocs_billing_immutable"

#: What releasing a link may not change (SQLite's trigger; PostgreSQL's compares rows).
LINK_COLUMNS = ("item_id", "account", "record_id")

_INVOICE_STATE = (
    "(SELECT v.state FROM invoices v JOIN invoice_items i ON i.invoice_id = v.id"
    " WHERE i.id = {}.item_id)"
)

_PG_REFUSE = f"RAISE EXCEPTION '{IMMUTABLE}: % %', TG_TABLE_NAME, TG_OP USING ERRCODE = '23000'"

_PG_ROW_FUNCTION = f"""
DECLARE
  old_state text;
  new_state text;
BEGIN
  SELECT v.state INTO old_state FROM invoices v JOIN invoice_items i ON i.invoice_id = v.id
   WHERE i.id = OLD.item_id;
  IF TG_OP = 'UPDATE' THEN
    SELECT v.state INTO new_state FROM invoices v JOIN invoice_items i ON i.invoice_id = v.id
     WHERE i.id = NEW.item_id;
  END IF;
  IF coalesce(old_state, 'draft') = 'draft' AND coalesce(new_state, 'draft') = 'draft' THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  -- voiding releases the invoice's records: released false -> true, nothing else
  -- (nested: PL/pgSQL does not promise to stop at the first false condition)
  IF TG_OP = 'UPDATE' AND old_state = 'void' THEN
    IF NOT OLD.released AND NEW.released
       AND to_jsonb(NEW) - 'released' = to_jsonb(OLD) - 'released' THEN
      RETURN NEW;
    END IF;
  END IF;
  {_PG_REFUSE};
END"""

_PG_STATEMENT_FUNCTION = f"""
BEGIN
  IF EXISTS (
    SELECT 1 FROM inserted_links n
      JOIN invoice_items i ON i.id = n.item_id
      JOIN invoices v ON v.id = i.invoice_id
     WHERE v.state <> 'draft'
  ) THEN
    {_PG_REFUSE};
  END IF;
  RETURN NULL;
END"""


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.drop_index("ix_invoice_item_records_invoice_id", "invoice_item_records")
    op.drop_index("uq_invoice_item_records_record_id", "invoice_item_records")
    op.rename_table("invoice_item_records", "invoice_item_records_0002")
    if postgresql:
        # the primary key's index name is the schema's, and the new table takes it
        op.execute(
            "ALTER TABLE invoice_item_records_0002 "
            "RENAME CONSTRAINT pk_invoice_item_records TO pk_invoice_item_records_0002"
        )
    op.create_table(
        "invoice_item_records",
        sa.Column("item_id", sa.BigInteger(), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("record_id", sa.String(length=512), nullable=False),
        sa.Column("released", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["invoice_items.id"],
            name=op.f("fk_invoice_item_records_item_id_invoice_items"),
        ),
        sa.PrimaryKeyConstraint("item_id", "record_id", name=op.f("pk_invoice_item_records")),
        sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO invoice_item_records (item_id, account, record_id, released) "
        "SELECT l.item_id, COALESCE(i.child_account, v.account), l.record_id, l.released "
        "FROM invoice_item_records_0002 l "
        "JOIN invoice_items i ON i.id = l.item_id JOIN invoices v ON v.id = i.invoice_id"
    )
    op.drop_table("invoice_item_records_0002")
    op.create_index(
        "uq_invoice_item_records_account_record_id",
        "invoice_item_records",
        ["account", "record_id"],
        unique=True,
        sqlite_where=sa.text("released = 0"),
        postgresql_where=sa.text("NOT released"),
    )
    if postgresql:
        _postgresql_triggers()
    else:
        _sqlite_triggers()


def _sqlite_trigger(name: str, when: str, condition: str) -> None:
    op.execute(
        f"CREATE TRIGGER {name} {when} FOR EACH ROW WHEN {condition} "
        f"BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}'); END"
    )


def _sqlite_triggers() -> None:
    new, old = _INVOICE_STATE.format("NEW"), _INVOICE_STATE.format("OLD")
    same = " AND ".join(f"NEW.{column} IS OLD.{column}" for column in LINK_COLUMNS)
    table = "invoice_item_records"
    _sqlite_trigger(f"{table}_immutable_insert", f"BEFORE INSERT ON {table}", f"{new} <> 'draft'")
    _sqlite_trigger(f"{table}_immutable_delete", f"BEFORE DELETE ON {table}", f"{old} <> 'draft'")
    # voiding releases the invoice's records: released false -> true, nothing else
    _sqlite_trigger(
        f"{table}_immutable_update",
        f"BEFORE UPDATE ON {table}",
        f"({old} <> 'draft' OR {new} <> 'draft') AND NOT ({old} = 'void'"
        f" AND NOT OLD.released AND NEW.released AND {same})",
    )


def _postgresql_triggers() -> None:
    for name, body in (
        ("ocs_billing_item_records_immutable", _PG_ROW_FUNCTION),
        ("ocs_billing_item_records_inserted", _PG_STATEMENT_FUNCTION),
    ):
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body${body}\n$body$"
        )
    op.execute(
        "CREATE TRIGGER invoice_item_records_immutable BEFORE UPDATE OR DELETE ON "
        "invoice_item_records FOR EACH ROW EXECUTE FUNCTION ocs_billing_item_records_immutable()"
    )
    op.execute(
        "CREATE TRIGGER invoice_item_records_immutable_insert AFTER INSERT ON "
        "invoice_item_records REFERENCING NEW TABLE AS inserted_links FOR EACH STATEMENT "
        "EXECUTE FUNCTION ocs_billing_item_records_inserted()"
    )
