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
