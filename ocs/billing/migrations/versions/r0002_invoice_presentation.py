"""How an invoice is presented, as its account wanted when it was billed: ``itemisation``
(``detailed``: the documents list every record; ``summary``: the lines only) and
``tax_exempt`` (the documents say why there is no tax).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

IMMUTABLE = "ocs_billing_immutable"

#: 0001's list and the two new columns: what voiding may not change (SQLite's trigger).
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
    "itemisation",
    "tax_exempt",
)


def upgrade() -> None:
    # plain ADD COLUMN on both databases: SQLite's batch mode would copy the table and
    # break the triggers of the tables that name it
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.execute(
        "ALTER TABLE invoices ADD COLUMN itemisation VARCHAR(16) DEFAULT 'detailed' NOT NULL "
        "CONSTRAINT ck_invoices_itemisation CHECK (itemisation IN ('detailed', 'summary'))"
    )
    op.execute(
        "ALTER TABLE invoices ADD COLUMN tax_exempt BOOLEAN DEFAULT "
        f"{'0' if sqlite else 'false'} NOT NULL"
    )
    if sqlite:
        same = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in INVOICE_COLUMNS)
        op.execute("DROP TRIGGER invoices_immutable_update")
        op.execute(
            "CREATE TRIGGER invoices_immutable_update BEFORE UPDATE ON invoices FOR EACH ROW "
            "WHEN OLD.state <> 'draft' AND NOT (OLD.state = 'final' AND NEW.state = 'void'"
            f" AND {same}) BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}'); END"
        )
