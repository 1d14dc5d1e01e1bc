"""Payments and reconciliation: the accounts that pay (their lock, currency, open credit
and dunning state), payments received, refunds of credit, and the allocations of money
to final invoices (docs/invoicing.md, "Payments").

Revision ID: 0004
Revises: 0003
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None

SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: The message (and, on PostgreSQL, SQLSTATE 23000) of a refused change, as 0001's.
IMMUTABLE = "ocs_billing_immutable"

#: What releasing an allocation may not change (SQLite's trigger; PostgreSQL's compares
#: rows).
ALLOCATION_COLUMNS = ("id", "account", "invoice_id", "payment_id", "amount_minor", "allocated_at")

METHODS = "method IN ('bank_transfer', 'card', 'cash', 'direct_debit', 'cheque', 'wallet', 'other')"


def _money(table: str) -> list[Any]:
    """The columns and checks of an amount received or paid back (whole minor units)."""
    return [
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("minor_digits", sa.Integer(), nullable=False),
        sa.Column("amount_micro", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount_micro > 0", name=op.f(f"ck_{table}_amount_micro")),
        sa.CheckConstraint("amount_minor = amount_micro", name=op.f(f"ck_{table}_amount_minor")),
        sa.CheckConstraint("length(currency) = 3", name=op.f(f"ck_{table}_currency")),
        sa.CheckConstraint("minor_digits BETWEEN 0 AND 6", name=op.f(f"ck_{table}_minor_digits")),
        sa.CheckConstraint(METHODS, name=op.f(f"ck_{table}_method")),
        sa.ForeignKeyConstraint(
            ["account"],
            ["payment_accounts.account"],
            name=op.f(f"fk_{table}_account_payment_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint(
            "account", "idempotency_key", name=op.f(f"uq_{table}_account_idempotency_key")
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "payment_accounts",
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("minor_digits", sa.Integer(), nullable=False),
        sa.Column("credit_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("dunning", sa.String(length=16), server_default="none", nullable=False),
        sa.Column("dunning_since", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "dunning IN ('none', 'reminder', 'barring', 'barred')",
            name=op.f("ck_payment_accounts_dunning"),
        ),
        sa.CheckConstraint(
            "(dunning = 'none') = (dunning_since IS NULL)",
            name=op.f("ck_payment_accounts_dunning_since"),
        ),
        sa.CheckConstraint("credit_minor >= 0", name=op.f("ck_payment_accounts_credit_minor")),
        sa.CheckConstraint("length(currency) = 3", name=op.f("ck_payment_accounts_currency")),
        sa.CheckConstraint(
            "minor_digits BETWEEN 0 AND 6", name=op.f("ck_payment_accounts_minor_digits")
        ),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_payment_accounts")),
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        *_money("payments"),
        sa.CheckConstraint("source IN ('api', 'cli', 'import')", name=op.f("ck_payments_source")),
        sa.UniqueConstraint("external_id", name=op.f("uq_payments_external_id")),
    )
    op.create_index(
        "ix_payments_account_received_at", "payments", ["account", "received_at"], unique=False
    )
    op.create_table(
        "refunds",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("refunded_at", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        *_money("refunds"),
    )
    op.create_index("ix_refunds_account", "refunds", ["account"], unique=False)
    op.create_table(
        "payment_allocations",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("allocated_at", sa.BigInteger(), nullable=False),
        sa.Column("released_at", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_payment_allocations_amount_minor")),
        sa.ForeignKeyConstraint(
            ["account"],
            ["payment_accounts.account"],
            name=op.f("fk_payment_allocations_account_payment_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_payment_allocations_invoice_id_invoices")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_allocations_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_allocations")),
    )
    for column in ("invoice_id", "account", "payment_id"):
        op.create_index(
            f"ix_payment_allocations_{column}", "payment_allocations", [column], unique=False
        )
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_triggers()
    else:
        _sqlite_triggers()


# Payments and refunds are records of money that moved: never changed, never deleted
# (a wrong one is corrected by a refund or another payment). An allocation is only ever
# released (``released_at`` NULL -> a time, nothing else); a release in part inserts the
# part that stays.


def _sqlite_trigger(name: str, when: str, condition: str = "1") -> None:
    op.execute(
        f"CREATE TRIGGER {name} {when} FOR EACH ROW WHEN {condition} "
        f"BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}'); END"
    )


def _sqlite_triggers() -> None:
    for table in ("payments", "refunds"):
        _sqlite_trigger(f"{table}_immutable_update", f"BEFORE UPDATE ON {table}")
        _sqlite_trigger(f"{table}_immutable_delete", f"BEFORE DELETE ON {table}")
    same = " AND ".join(f"NEW.{column} IS OLD.{column}" for column in ALLOCATION_COLUMNS)
    _sqlite_trigger(
        "payment_allocations_immutable_update",
        "BEFORE UPDATE ON payment_allocations",
        f"NOT (OLD.released_at IS NULL AND NEW.released_at IS NOT NULL AND {same})",
    )
    _sqlite_trigger("payment_allocations_immutable_delete", "BEFORE DELETE ON payment_allocations")


_PG_REFUSE = f"RAISE EXCEPTION '{IMMUTABLE}: % %', TG_TABLE_NAME, TG_OP USING ERRCODE = '23000'"

_PG_FUNCTIONS = {
    "ocs_billing_money_immutable": f"""
BEGIN
  {_PG_REFUSE};
END""",
    "ocs_billing_allocations_immutable": f"""
BEGIN
  -- nested: PL/pgSQL does not promise to stop at the first false condition
  IF TG_OP = 'UPDATE' AND OLD.released_at IS NULL AND NEW.released_at IS NOT NULL THEN
    IF to_jsonb(NEW) - 'released_at' = to_jsonb(OLD) - 'released_at' THEN
      RETURN NEW;
    END IF;
  END IF;
  {_PG_REFUSE};
END""",
}

_PG_TRIGGERS = (
    ("payments", "ocs_billing_money_immutable"),
    ("refunds", "ocs_billing_money_immutable"),
    ("payment_allocations", "ocs_billing_allocations_immutable"),
)


def _postgresql_triggers() -> None:
    for name, body in _PG_FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body${body}\n$body$"
        )
    for table, function in _PG_TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )
