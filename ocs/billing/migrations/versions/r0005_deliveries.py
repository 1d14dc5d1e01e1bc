"""Invoice deliveries: each final invoice sent by e-mail or put in a print batch, with
its attempts, the next retry, the last error and what was sent to whom
(docs/invoicing.md, "Delivery").

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None

SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "invoice_deliveries",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.Integer(), server_default="0", nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("recipient", sa.String(length=320), nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("batch", sa.String(length=128), nullable=True),
        sa.Column("sent_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "channel IN ('email', 'paper')", name=op.f("ck_invoice_deliveries_channel")
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'sending', 'sent', 'failed', 'printed')",
            name=op.f("ck_invoice_deliveries_state"),
        ),
        sa.CheckConstraint(
            "(state <> 'sent' OR channel = 'email') AND (state <> 'printed' OR channel = 'paper')",
            name=op.f("ck_invoice_deliveries_state_channel"),
        ),
        sa.CheckConstraint(
            "(state IN ('sent', 'printed')) = (sent_at IS NOT NULL)",
            name=op.f("ck_invoice_deliveries_sent_at"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_invoice_deliveries_attempts")),
        sa.CheckConstraint("sequence >= 0", name=op.f("ck_invoice_deliveries_sequence")),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_deliveries_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_deliveries")),
        sa.UniqueConstraint(
            "invoice_id", "sequence", name=op.f("uq_invoice_deliveries_invoice_id_sequence")
        ),
        sa.UniqueConstraint("message_id", name=op.f("uq_invoice_deliveries_message_id")),
    )
    op.create_index(
        "ix_invoice_deliveries_state_next_attempt_at",
        "invoice_deliveries",
        ["state", "next_attempt_at"],
        unique=False,
    )
