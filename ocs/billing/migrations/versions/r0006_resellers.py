"""Resellers: the issuers of invoices (billing entities with the name, address and
logo their documents show), wholesale invoices (the reseller each is for), the retail
invoices each sums, and the wholesale price of each of its lines (docs/invoicing.md,
"Resellers"). No existing table changes: a wholesale invoice is an ``invoices`` row
with ``usage`` lines, told apart by its ``wholesale_invoices`` row.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "billing_entities",
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), server_default="", nullable=False),
        sa.Column("vat_id", sa.Text(), server_default="", nullable=False),
        sa.Column("support", sa.Text(), server_default="", nullable=False),
        sa.Column("logo", sa.Text(), nullable=True),
        sa.Column("reseller", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("entity", name=op.f("pk_billing_entities")),
    )
    op.create_table(
        "wholesale_invoices",
        sa.Column("invoice_id", sa.String(length=64), nullable=False),
        sa.Column("reseller", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_wholesale_invoices_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("invoice_id", name=op.f("pk_wholesale_invoices")),
    )
    op.create_index(
        "ix_wholesale_invoices_reseller", "wholesale_invoices", ["reseller"], unique=False
    )
    op.create_table(
        "wholesale_sources",
        sa.Column("wholesale_invoice_id", sa.String(length=64), nullable=False),
        sa.Column("retail_invoice_id", sa.String(length=64), nullable=False),
        sa.Column("released", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(
            ["wholesale_invoice_id"],
            ["wholesale_invoices.invoice_id"],
            name=op.f("fk_wholesale_sources_wholesale_invoice_id_wholesale_invoices"),
        ),
        sa.ForeignKeyConstraint(
            ["retail_invoice_id"],
            ["invoices.id"],
            name=op.f("fk_wholesale_sources_retail_invoice_id_invoices"),
        ),
        sa.PrimaryKeyConstraint(
            "wholesale_invoice_id", "retail_invoice_id", name=op.f("pk_wholesale_sources")
        ),
    )
    op.create_index(
        "uq_wholesale_sources_retail_invoice_id",
        "wholesale_sources",
        ["retail_invoice_id"],
        unique=True,
        sqlite_where=sa.text("released = 0"),
        postgresql_where=sa.text("NOT released"),
    )
    op.create_table(
        "wholesale_items",
        sa.Column("item_id", sa.BigInteger(), nullable=False),
        sa.Column("price_micro", sa.BigInteger(), nullable=False),
        sa.Column("per_units", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("price_micro >= 0", name=op.f("ck_wholesale_items_price_micro")),
        sa.CheckConstraint("per_units >= 1", name=op.f("ck_wholesale_items_per_units")),
        sa.ForeignKeyConstraint(
            ["item_id"], ["invoice_items.id"], name=op.f("fk_wholesale_items_item_id_invoice_items")
        ),
        sa.PrimaryKeyConstraint("item_id", name=op.f("pk_wholesale_items")),
    )
