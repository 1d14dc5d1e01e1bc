"""The first billing schema: bill runs, invoices and their lines, the records each line
sums, number sequences, credit notes, the event history; and the triggers that keep a
final invoice or credit note as it was finalised.

Revision ID: 0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: The message (and, on PostgreSQL, SQLSTATE 23000) of a refused change.
IMMUTABLE = "ocs_billing_immutable"

INVOICE_COLUMNS = (
    "id",
    "account",
    "entity",
    "bill_run_id",
    "off_cycle",
    "period_start",
    "period_end",
    "currency",
    "minor_digits",
    "number",
    "subtotal_micro",
    "tax_micro",
    "total_micro",
    "subtotal_minor",
    "tax_minor",
    "total_minor",
    "created_at",
    "finalized_at",
)
"""Every column of ``invoices`` but state, voided_at and void_reason: what voiding may
not change either. (PostgreSQL's trigger compares whole rows; this list is SQLite's.)"""
LINK_COLUMNS = ("item_id", "record_id", "invoice_id")


def upgrade() -> None:
    create_tables()
    if op.get_bind().dialect.name == "sqlite":
        sqlite_triggers()
    else:
        postgresql_triggers()


def create_tables() -> None:
    op.create_table(
        "bill_runs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), server_default="cycle", nullable=False),
        sa.Column("state", sa.String(length=16), server_default="running", nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("accounts_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("accounts_done", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("invoices_created", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("errors", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "(state = 'running') = (finished_at IS NULL)", name=op.f("ck_bill_runs_finished")
        ),
        sa.CheckConstraint("kind IN ('cycle', 'off_cycle')", name=op.f("ck_bill_runs_kind")),
        sa.CheckConstraint(
            "state IN ('running', 'completed', 'failed')", name=op.f("ck_bill_runs_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bill_runs")),
    )
    op.create_table(
        "number_sequences",
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("series", sa.String(length=16), nullable=False),
        sa.Column("format", sa.String(length=64), nullable=False),
        sa.Column("next_value", sa.BigInteger(), server_default="1", nullable=False),
        sa.CheckConstraint(
            "series IN ('invoice', 'credit_note')", name=op.f("ck_number_sequences_series")
        ),
        sa.CheckConstraint("next_value >= 1", name=op.f("ck_number_sequences_next_value")),
        sa.PrimaryKeyConstraint("entity", "series", name=op.f("pk_number_sequences")),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("bill_run_id", sa.String(length=64), nullable=True),
        sa.Column("off_cycle", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("period_start", sa.BigInteger(), nullable=False),
        sa.Column("period_end", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("minor_digits", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="draft", nullable=False),
        sa.Column("number", sa.String(length=64), nullable=True),
        sa.Column("subtotal_micro", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("tax_micro", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("total_micro", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("subtotal_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("tax_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("total_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("finalized_at", sa.BigInteger(), nullable=True),
        sa.Column("voided_at", sa.BigInteger(), nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "(state = 'draft' AND number IS NULL AND finalized_at IS NULL) OR (state <> 'draft' AND number IS NOT NULL AND finalized_at IS NOT NULL)",
            name=op.f("ck_invoices_numbered_when_final"),
        ),
        sa.CheckConstraint(
            "(state = 'void') = (voided_at IS NOT NULL)", name=op.f("ck_invoices_voided")
        ),
        sa.CheckConstraint("state IN ('draft', 'final', 'void')", name=op.f("ck_invoices_state")),
        sa.CheckConstraint("length(currency) = 3", name=op.f("ck_invoices_currency")),
        sa.CheckConstraint("minor_digits BETWEEN 0 AND 6", name=op.f("ck_invoices_minor_digits")),
        sa.CheckConstraint("period_end > period_start", name=op.f("ck_invoices_period")),
        sa.CheckConstraint(
            "total_micro = subtotal_micro + tax_micro", name=op.f("ck_invoices_total_micro")
        ),
        sa.CheckConstraint(
            "total_minor = subtotal_minor + tax_minor", name=op.f("ck_invoices_total_minor")
        ),
        sa.ForeignKeyConstraint(
            ["bill_run_id"], ["bill_runs.id"], name=op.f("fk_invoices_bill_run_id_bill_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("entity", "number", name=op.f("uq_invoices_entity_number")),
    )
    op.create_index("ix_invoices_bill_run_id", "invoices", ["bill_run_id"], unique=False)
    op.create_index(
        "uq_invoices_account_period",
        "invoices",
        ["account", "period_start"],
        unique=True,
        sqlite_where=sa.text("off_cycle = 0 AND state <> 'void'"),
        postgresql_where=sa.text("NOT off_cycle AND state <> 'void'"),
    )
    op.create_table(
        "credit_notes",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("minor_digits", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="draft", nullable=False),
        sa.Column("number", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("subtotal_micro", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("tax_micro", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("total_micro", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("subtotal_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("tax_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("total_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("finalized_at", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "(state = 'draft' AND number IS NULL AND finalized_at IS NULL) OR (state = 'final' AND number IS NOT NULL AND finalized_at IS NOT NULL)",
            name=op.f("ck_credit_notes_numbered_when_final"),
        ),
        sa.CheckConstraint("state IN ('draft', 'final')", name=op.f("ck_credit_notes_state")),
        sa.CheckConstraint("length(currency) = 3", name=op.f("ck_credit_notes_currency")),
        sa.CheckConstraint(
            "minor_digits BETWEEN 0 AND 6", name=op.f("ck_credit_notes_minor_digits")
        ),
        sa.CheckConstraint(
            "total_micro = subtotal_micro + tax_micro", name=op.f("ck_credit_notes_total_micro")
        ),
        sa.CheckConstraint(
            "total_minor = subtotal_minor + tax_minor", name=op.f("ck_credit_notes_total_minor")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_credit_notes_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_notes")),
        sa.UniqueConstraint("entity", "number", name=op.f("uq_credit_notes_entity_number")),
    )
    op.create_index("ix_credit_notes_invoice_id", "credit_notes", ["invoice_id"], unique=False)
    op.create_table(
        "invoice_items",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("child_account", sa.String(length=128), nullable=True),
        sa.Column("parent_item_id", sa.BigInteger(), nullable=True),
        sa.Column("subscription", sa.String(length=128), nullable=True),
        sa.Column("plan", sa.String(length=128), nullable=True),
        sa.Column("service", sa.String(length=128), nullable=True),
        sa.Column("category", sa.String(length=128), nullable=True),
        sa.Column("quantity", sa.BigInteger(), nullable=True),
        sa.Column("unit", sa.String(length=16), nullable=True),
        sa.Column("period_start", sa.BigInteger(), nullable=True),
        sa.Column("period_end", sa.BigInteger(), nullable=True),
        sa.Column("amount_micro", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("tax_category", sa.String(length=64), nullable=True),
        sa.Column("tax_rate_ppm", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('recurring', 'usage', 'allowance', 'one_off', 'discount', 'tax', 'late_usage')",
            name=op.f("ck_invoice_items_kind"),
        ),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_invoice_items_quantity")),
        sa.CheckConstraint(
            "tax_rate_ppm BETWEEN 0 AND 1000000", name=op.f("ck_invoice_items_tax_rate_ppm")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_items_invoice_id_invoices")
        ),
        sa.ForeignKeyConstraint(
            ["parent_item_id"],
            ["invoice_items.id"],
            name=op.f("fk_invoice_items_parent_item_id_invoice_items"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_items")),
        sa.UniqueConstraint(
            "invoice_id", "position", name=op.f("uq_invoice_items_invoice_id_position")
        ),
    )
    op.create_table(
        "billing_events",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column("bill_run_id", sa.String(length=64), nullable=True),
        sa.Column("invoice_id", sa.String(length=64), nullable=True),
        sa.Column("credit_note_id", sa.String(length=64), nullable=True),
        sa.Column("details", sa.Text(), server_default="{}", nullable=False),
        sa.ForeignKeyConstraint(
            ["bill_run_id"], ["bill_runs.id"], name=op.f("fk_billing_events_bill_run_id_bill_runs")
        ),
        sa.ForeignKeyConstraint(
            ["credit_note_id"],
            ["credit_notes.id"],
            name=op.f("fk_billing_events_credit_note_id_credit_notes"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_billing_events_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_events")),
    )
    op.create_index("ix_billing_events_invoice_id", "billing_events", ["invoice_id"], unique=False)
    op.create_table(
        "credit_note_items",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("credit_note_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("invoice_item_id", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=True),
        sa.Column("amount_micro", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("tax_micro", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("tax_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_credit_note_items_quantity")),
        sa.ForeignKeyConstraint(
            ["credit_note_id"],
            ["credit_notes.id"],
            name=op.f("fk_credit_note_items_credit_note_id_credit_notes"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_item_id"],
            ["invoice_items.id"],
            name=op.f("fk_credit_note_items_invoice_item_id_invoice_items"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_note_items")),
        sa.UniqueConstraint(
            "credit_note_id", "position", name=op.f("uq_credit_note_items_credit_note_id_position")
        ),
    )
    op.create_table(
        "invoice_item_records",
        sa.Column("item_id", sa.BigInteger(), nullable=False),
        sa.Column("record_id", sa.String(length=512), nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=False),
        sa.Column("released", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_invoice_item_records_invoice_id_invoices"),
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["invoice_items.id"],
            name=op.f("fk_invoice_item_records_item_id_invoice_items"),
        ),
        sa.PrimaryKeyConstraint("item_id", "record_id", name=op.f("pk_invoice_item_records")),
    )
    op.create_index(
        "ix_invoice_item_records_invoice_id", "invoice_item_records", ["invoice_id"], unique=False
    )
    op.create_index(
        "uq_invoice_item_records_record_id",
        "invoice_item_records",
        ["record_id"],
        unique=True,
        sqlite_where=sa.text("released = 0"),
        postgresql_where=sa.text("NOT released"),
    )


def _same(columns: tuple[str, ...]) -> str:
    return " AND ".join(f"NEW.{column} IS OLD.{column}" for column in columns)


def _sqlite_trigger(name: str, when: str, condition: str) -> None:
    op.execute(
        f"CREATE TRIGGER {name} {when} FOR EACH ROW WHEN {condition} "
        f"BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}'); END"
    )


def sqlite_triggers() -> None:
    invoice_state = "(SELECT state FROM invoices WHERE id = {}.invoice_id)"
    note_state = "(SELECT state FROM credit_notes WHERE id = {}.credit_note_id)"
    # a final invoice changes only to void, and then only its state and void fields
    _sqlite_trigger(
        "invoices_immutable_update",
        "BEFORE UPDATE ON invoices",
        f"OLD.state <> 'draft' AND NOT (OLD.state = 'final' AND NEW.state = 'void'"
        f" AND {_same(INVOICE_COLUMNS)})",
    )
    _sqlite_trigger(
        "invoices_immutable_delete", "BEFORE DELETE ON invoices", "OLD.state <> 'draft'"
    )
    for table in ("invoice_items", "invoice_item_records"):
        new, old = invoice_state.format("NEW"), invoice_state.format("OLD")
        _sqlite_trigger(
            f"{table}_immutable_insert", f"BEFORE INSERT ON {table}", f"{new} <> 'draft'"
        )
        _sqlite_trigger(
            f"{table}_immutable_delete", f"BEFORE DELETE ON {table}", f"{old} <> 'draft'"
        )
    new, old = invoice_state.format("NEW"), invoice_state.format("OLD")
    _sqlite_trigger(
        "invoice_items_immutable_update",
        "BEFORE UPDATE ON invoice_items",
        f"{old} <> 'draft' OR {new} <> 'draft'",
    )
    # voiding releases the invoice's records: released false -> true, nothing else
    _sqlite_trigger(
        "invoice_item_records_immutable_update",
        "BEFORE UPDATE ON invoice_item_records",
        f"({old} <> 'draft' OR {new} <> 'draft') AND NOT ({old} = 'void'"
        f" AND NOT OLD.released AND NEW.released AND {_same(LINK_COLUMNS)})",
    )
    _sqlite_trigger(
        "credit_notes_immutable_update",
        "BEFORE UPDATE ON credit_notes",
        "OLD.state <> 'draft'",
    )
    _sqlite_trigger(
        "credit_notes_immutable_delete", "BEFORE DELETE ON credit_notes", "OLD.state <> 'draft'"
    )
    new, old = note_state.format("NEW"), note_state.format("OLD")
    for operation, condition in (
        ("insert", f"{new} <> 'draft'"),
        ("update", f"{old} <> 'draft' OR {new} <> 'draft'"),
        ("delete", f"{old} <> 'draft'"),
    ):
        _sqlite_trigger(
            f"credit_note_items_immutable_{operation}",
            f"BEFORE {operation.upper()} ON credit_note_items",
            condition,
        )


_PG_REFUSE = f"RAISE EXCEPTION '{IMMUTABLE}: % %', TG_TABLE_NAME, TG_OP USING ERRCODE = '23000'"

_PG_FUNCTIONS = {
    "ocs_billing_invoices_immutable": f"""
BEGIN
  IF OLD.state = 'draft' THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  IF TG_OP = 'UPDATE' AND OLD.state = 'final' AND NEW.state = 'void'
     AND to_jsonb(NEW) - 'state' - 'voided_at' - 'void_reason'
       = to_jsonb(OLD) - 'state' - 'voided_at' - 'void_reason' THEN
    RETURN NEW;
  END IF;
  {_PG_REFUSE};
END""",
    "ocs_billing_invoice_lines_immutable": f"""
DECLARE
  old_state text;
  new_state text;
BEGIN
  IF TG_OP <> 'INSERT' THEN
    SELECT state INTO old_state FROM invoices WHERE id = OLD.invoice_id;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    SELECT state INTO new_state FROM invoices WHERE id = NEW.invoice_id;
  END IF;
  IF coalesce(old_state, 'draft') = 'draft' AND coalesce(new_state, 'draft') = 'draft' THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  -- voiding releases the invoice's records: released false -> true, nothing else
  -- (nested: PL/pgSQL does not promise to stop at the first false condition)
  IF TG_TABLE_NAME = 'invoice_item_records' AND TG_OP = 'UPDATE' AND old_state = 'void' THEN
    IF NOT OLD.released AND NEW.released
       AND to_jsonb(NEW) - 'released' = to_jsonb(OLD) - 'released' THEN
      RETURN NEW;
    END IF;
  END IF;
  {_PG_REFUSE};
END""",
    "ocs_billing_credit_notes_immutable": f"""
BEGIN
  IF OLD.state = 'draft' THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  {_PG_REFUSE};
END""",
    "ocs_billing_credit_note_items_immutable": f"""
DECLARE
  old_state text;
  new_state text;
BEGIN
  IF TG_OP <> 'INSERT' THEN
    SELECT state INTO old_state FROM credit_notes WHERE id = OLD.credit_note_id;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    SELECT state INTO new_state FROM credit_notes WHERE id = NEW.credit_note_id;
  END IF;
  IF coalesce(old_state, 'draft') = 'draft' AND coalesce(new_state, 'draft') = 'draft' THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  {_PG_REFUSE};
END""",
}

_PG_TRIGGERS = (
    ("invoices", "UPDATE OR DELETE", "ocs_billing_invoices_immutable"),
    ("invoice_items", "INSERT OR UPDATE OR DELETE", "ocs_billing_invoice_lines_immutable"),
    ("invoice_item_records", "INSERT OR UPDATE OR DELETE", "ocs_billing_invoice_lines_immutable"),
    ("credit_notes", "UPDATE OR DELETE", "ocs_billing_credit_notes_immutable"),
    ("credit_note_items", "INSERT OR UPDATE OR DELETE", "ocs_billing_credit_note_items_immutable"),
)


def postgresql_triggers() -> None:
    for name, body in _PG_FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body${body}\n$body$"
        )
    for table, events, function in _PG_TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {table}_immutable BEFORE {events} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )
