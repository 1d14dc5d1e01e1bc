"""The billing database's tables (SQLAlchemy Core), as the migrations leave them.

This module is the model the code queries; ``ocs/billing/migrations/versions/`` holds the
DDL that builds it, step by step, frozen (a migration never imports this module: it must
build the same tables in a year, whatever this file says then). A test migrates an empty
database to head and compares it with :data:`metadata` (Alembic's ``compare_metadata``):
a table changed here without a migration fails it.

Conventions (docs/invoicing.md, "Database"):

* Money is ``BigInteger``: ``*_micro`` in micro-units (1e-6 of the currency), exact, as
  rating and the records have it; ``*_minor`` the same amount rounded to the currency's
  minor unit (``minor_digits`` of the invoice: 2 for EUR, 0 for JPY). Never Float or
  Numeric (a test introspects every column).
* Instants are ``BigInteger`` Unix seconds (UTC), like the records' ``start``/``end``;
  a bill period is ``[period_start, period_end)``.
* Rates are integers in parts per million (19 % = ``190000``).
* States and kinds are strings checked by CHECK constraints; every constraint is named
  (:data:`NAMING`), so an ``IntegrityError`` names the rule it broke.
* Ids of documents are strings chosen by the code (deterministic where it helps
  idempotency); lines, links and events have integer ids from the database.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

#: Database-generated integer ids: BIGINT on PostgreSQL; on SQLite only a column declared
#: INTEGER PRIMARY KEY is the rowid that numbers itself.
SERIAL = BigInteger().with_variant(Integer(), "sqlite")

INVOICE_STATES = ("draft", "final", "void")
CREDIT_NOTE_STATES = ("draft", "final")
ITEM_KINDS = ("recurring", "usage", "allowance", "one_off", "discount", "tax", "late_usage")
SERIES = ("invoice", "credit_note")
BILL_RUN_STATES = ("running", "completed", "failed")
BILL_RUN_KINDS = ("cycle", "off_cycle")
ITEMISATIONS = ("detailed", "summary")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


bill_runs = Table(
    "bill_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    # the period as the operator named it (2026-11) and the run's instants
    Column("period", String(32), nullable=False),
    Column("kind", String(16), nullable=False, server_default="cycle"),
    Column("state", String(16), nullable=False, server_default="running"),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger),
    Column("accounts_total", BigInteger, nullable=False, server_default="0"),
    Column("accounts_done", BigInteger, nullable=False, server_default="0"),
    Column("invoices_created", BigInteger, nullable=False, server_default="0"),
    Column("errors", BigInteger, nullable=False, server_default="0"),
    CheckConstraint(_one_of("kind", BILL_RUN_KINDS), name="kind"),
    CheckConstraint(_one_of("state", BILL_RUN_STATES), name="state"),
    CheckConstraint("(state = 'running') = (finished_at IS NULL)", name="finished"),
)

number_sequences = Table(
    "number_sequences",
    metadata,
    Column("entity", String(64), nullable=False),
    Column("series", String(16), nullable=False),
    # how a number is written: {seq} (with a format spec, {seq:06d}) and {entity}
    Column("format", String(64), nullable=False),
    Column("next_value", BigInteger, nullable=False, server_default="1"),
    PrimaryKeyConstraint("entity", "series"),
    CheckConstraint(_one_of("series", SERIES), name="series"),
    CheckConstraint("next_value >= 1", name="next_value"),
)

invoices = Table(
    "invoices",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account", String(128), nullable=False),
    # the seller (legal entity) that issues the invoice and numbers it
    Column("entity", String(64), nullable=False),
    Column("bill_run_id", String(64), ForeignKey("bill_runs.id")),
    Column("off_cycle", Boolean, nullable=False, server_default=false()),
    Column("period_start", BigInteger, nullable=False),
    Column("period_end", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("minor_digits", Integer, nullable=False),
    Column("state", String(16), nullable=False, server_default="draft"),
    Column("number", String(64)),
    Column("subtotal_micro", BigInteger, nullable=False, server_default="0"),
    Column("tax_micro", BigInteger, nullable=False, server_default="0"),
    Column("total_micro", BigInteger, nullable=False, server_default="0"),
    Column("subtotal_minor", BigInteger, nullable=False, server_default="0"),
    Column("tax_minor", BigInteger, nullable=False, server_default="0"),
    Column("total_minor", BigInteger, nullable=False, server_default="0"),
    Column("created_at", BigInteger, nullable=False),
    Column("finalized_at", BigInteger),
    Column("voided_at", BigInteger),
    Column("void_reason", Text),
    # how the documents present it, as the account wanted when it was billed (0002)
    Column("itemisation", String(16), nullable=False, server_default="detailed"),
    Column("tax_exempt", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("entity", "number"),
    CheckConstraint(_one_of("state", INVOICE_STATES), name="state"),
    CheckConstraint(_one_of("itemisation", ITEMISATIONS), name="itemisation"),
    CheckConstraint(
        "(state = 'draft' AND number IS NULL AND finalized_at IS NULL)"
        " OR (state <> 'draft' AND number IS NOT NULL AND finalized_at IS NOT NULL)",
        name="numbered_when_final",
    ),
    CheckConstraint("(state = 'void') = (voided_at IS NOT NULL)", name="voided"),
    CheckConstraint("period_end > period_start", name="period"),
    CheckConstraint("length(currency) = 3", name="currency"),
    CheckConstraint("minor_digits BETWEEN 0 AND 6", name="minor_digits"),
    CheckConstraint("total_micro = subtotal_micro + tax_micro", name="total_micro"),
    CheckConstraint("total_minor = subtotal_minor + tax_minor", name="total_minor"),
)

#: One live cycle invoice per account and period: a bill run that runs again (after a
#: crash, or twice) cannot make a second one. Off-cycle invoices (account close, on
#: demand) are outside it; a voided invoice leaves the period to its replacement.
Index(
    "uq_invoices_account_period",
    invoices.c.account,
    invoices.c.period_start,
    unique=True,
    sqlite_where=text("off_cycle = 0 AND state <> 'void'"),
    postgresql_where=text("NOT off_cycle AND state <> 'void'"),
)
Index("ix_invoices_bill_run_id", invoices.c.bill_run_id)

invoice_items = Table(
    "invoice_items",
    metadata,
    Column("id", SERIAL, primary_key=True, autoincrement=True),
    Column("invoice_id", String(64), ForeignKey("invoices.id"), nullable=False),
    # order of the lines on the invoice
    Column("position", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    # a line of a hierarchy's subtotal section belongs to the child account's section;
    # a discount or tax line may point at the line it applies to
    Column("child_account", String(128)),
    Column("parent_item_id", BigInteger, ForeignKey("invoice_items.id")),
    Column("subscription", String(128)),
    Column("plan", String(128)),
    Column("service", String(128)),
    # usage category: destination, roaming zone, time band (national, eu, peak, ...)
    Column("category", String(128)),
    Column("quantity", BigInteger),
    # octets, seconds, events, days, ...
    Column("unit", String(16)),
    # the span a recurring fee or a proration covers
    Column("period_start", BigInteger),
    Column("period_end", BigInteger),
    Column("amount_micro", BigInteger, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("tax_category", String(64)),
    Column("tax_rate_ppm", Integer),
    UniqueConstraint("invoice_id", "position"),
    CheckConstraint(_one_of("kind", ITEM_KINDS), name="kind"),
    CheckConstraint("tax_rate_ppm BETWEEN 0 AND 1000000", name="tax_rate_ppm"),
    CheckConstraint("quantity >= 0", name="quantity"),
)

#: The rated records a line sums (0003). ``record_id`` is the record's deterministic id
#: and ``account`` the account the record charged (the record's own, also on a parent's
#: invoice): a record is on at most one live line, enforced by the unique index below.
#: It leads with the account because a bill run writes its invoices in account order, so
#: the index grows at its end instead of at two million random places (docs/invoicing.md,
#: "Database"); a record's id with its account is as unique as the id alone, since the
#: account is a field of the record. The lines of an invoice find their links through
#: ``item_id``, the leading column of the primary key (SQLite: the table is that key,
#: WITHOUT ROWID). Voiding an invoice releases its records (``released``) so that its
#: replacement can bill them.
invoice_item_records = Table(
    "invoice_item_records",
    metadata,
    Column("item_id", BigInteger, ForeignKey("invoice_items.id"), nullable=False),
    Column("account", String(128), nullable=False),
    Column("record_id", String(512), nullable=False),
    Column("released", Boolean, nullable=False, server_default=false()),
    PrimaryKeyConstraint("item_id", "record_id"),
    sqlite_with_rowid=False,
)
Index(
    "uq_invoice_item_records_account_record_id",
    invoice_item_records.c.account,
    invoice_item_records.c.record_id,
    unique=True,
    sqlite_where=text("released = 0"),
    postgresql_where=text("NOT released"),
)

credit_notes = Table(
    "credit_notes",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("invoice_id", String(64), ForeignKey("invoices.id"), nullable=False),
    Column("account", String(128), nullable=False),
    Column("entity", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("minor_digits", Integer, nullable=False),
    Column("state", String(16), nullable=False, server_default="draft"),
    Column("number", String(64)),
    Column("reason", Text, nullable=False, server_default=""),
    # credited to the customer: positive
    Column("subtotal_micro", BigInteger, nullable=False, server_default="0"),
    Column("tax_micro", BigInteger, nullable=False, server_default="0"),
    Column("total_micro", BigInteger, nullable=False, server_default="0"),
    Column("subtotal_minor", BigInteger, nullable=False, server_default="0"),
    Column("tax_minor", BigInteger, nullable=False, server_default="0"),
    Column("total_minor", BigInteger, nullable=False, server_default="0"),
    Column("created_at", BigInteger, nullable=False),
    Column("finalized_at", BigInteger),
    UniqueConstraint("entity", "number"),
    CheckConstraint(_one_of("state", CREDIT_NOTE_STATES), name="state"),
    CheckConstraint(
        "(state = 'draft' AND number IS NULL AND finalized_at IS NULL)"
        " OR (state = 'final' AND number IS NOT NULL AND finalized_at IS NOT NULL)",
        name="numbered_when_final",
    ),
    CheckConstraint("length(currency) = 3", name="currency"),
    CheckConstraint("minor_digits BETWEEN 0 AND 6", name="minor_digits"),
    CheckConstraint("total_micro = subtotal_micro + tax_micro", name="total_micro"),
    CheckConstraint("total_minor = subtotal_minor + tax_minor", name="total_minor"),
)
Index("ix_credit_notes_invoice_id", credit_notes.c.invoice_id)

credit_note_items = Table(
    "credit_note_items",
    metadata,
    Column("id", SERIAL, primary_key=True, autoincrement=True),
    Column("credit_note_id", String(64), ForeignKey("credit_notes.id"), nullable=False),
    Column("position", Integer, nullable=False),
    # the invoice line corrected
    Column("invoice_item_id", BigInteger, ForeignKey("invoice_items.id"), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("quantity", BigInteger),
    Column("amount_micro", BigInteger, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("tax_micro", BigInteger, nullable=False, server_default="0"),
    Column("tax_minor", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("credit_note_id", "position"),
    CheckConstraint("quantity >= 0", name="quantity"),
)

#: Append-only history: who did what to which document when (finalise, void, credit
#: note, bill run start/end). ``details`` is a JSON object as text.
billing_events = Table(
    "billing_events",
    metadata,
    Column("id", SERIAL, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("actor", String(128)),
    Column("bill_run_id", String(64)),
    Column("invoice_id", String(64)),
    Column("credit_note_id", String(64)),
    Column("details", Text, nullable=False, server_default="{}"),
    ForeignKeyConstraint(["bill_run_id"], ["bill_runs.id"]),
    ForeignKeyConstraint(["invoice_id"], ["invoices.id"]),
    ForeignKeyConstraint(["credit_note_id"], ["credit_notes.id"]),
)
Index("ix_billing_events_invoice_id", billing_events.c.invoice_id)

# --- payments (0004) --------------------------------------------------------------------

PAYMENT_METHODS = ("bank_transfer", "card", "cash", "direct_debit", "cheque", "wallet", "other")
PAYMENT_SOURCES = ("api", "cli", "import")
DUNNING_STATES = ("none", "reminder", "barring", "barred")

#: One row per account that has paid (or been refunded): the lock that serialises its
#: payment work (``SELECT ... FOR UPDATE``), its currency, the open **credit** (payments
#: less refunds less the live allocations: what over-payments left, carried to the next
#: invoice) and its dunning state. ``barred`` means dunning barred it (the account's
#: status in Redis), so only dunning lifts it again; ``barring`` that dunning is barring
#: it (the intent, committed before the status change: a crash is completed or lifted
#: by the next step).
payment_accounts = Table(
    "payment_accounts",
    metadata,
    Column("account", String(128), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("minor_digits", Integer, nullable=False),
    Column("credit_minor", BigInteger, nullable=False, server_default="0"),
    Column("dunning", String(16), nullable=False, server_default="none"),
    Column("dunning_since", BigInteger),
    Column("updated_at", BigInteger, nullable=False),
    CheckConstraint(_one_of("dunning", DUNNING_STATES), name="dunning"),
    CheckConstraint("(dunning = 'none') = (dunning_since IS NULL)", name="dunning_since"),
    CheckConstraint("credit_minor >= 0", name="credit_minor"),
    CheckConstraint("length(currency) = 3", name="currency"),
    CheckConstraint("minor_digits BETWEEN 0 AND 6", name="minor_digits"),
)

#: Money received from a customer. A payment is a whole number of minor units, so its
#: ``amount_micro`` and ``amount_minor`` are the same number (both kept, as on invoices,
#: so that sums over documents use one column name). ``fingerprint`` is a hash of the
#: request as given: the same ``idempotency_key`` with another request is refused.
#: ``external_id`` is the bank's or gateway's id of the transfer (unique: an import of
#: the same file twice records nothing new); ``reference`` what the payer wrote.
payments = Table(
    "payments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account", String(128), ForeignKey("payment_accounts.account"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("minor_digits", Integer, nullable=False),
    Column("amount_micro", BigInteger, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("method", String(32), nullable=False),
    Column("reference", String(200)),
    Column("external_id", String(200)),
    Column("idempotency_key", String(200)),
    Column("fingerprint", String(64), nullable=False),
    Column("source", String(16), nullable=False),
    Column("actor", String(128)),
    Column("description", Text, nullable=False, server_default=""),
    Column("received_at", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("external_id"),
    UniqueConstraint("account", "idempotency_key"),
    CheckConstraint(_one_of("method", PAYMENT_METHODS), name="method"),
    CheckConstraint(_one_of("source", PAYMENT_SOURCES), name="source"),
    CheckConstraint("amount_micro > 0", name="amount_micro"),
    CheckConstraint("amount_minor = amount_micro", name="amount_minor"),
    CheckConstraint("length(currency) = 3", name="currency"),
    CheckConstraint("minor_digits BETWEEN 0 AND 6", name="minor_digits"),
)
Index("ix_payments_account_received_at", payments.c.account, payments.c.received_at)

#: Credit given back to the customer (never more than the account's open credit).
refunds = Table(
    "refunds",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account", String(128), ForeignKey("payment_accounts.account"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("minor_digits", Integer, nullable=False),
    Column("amount_micro", BigInteger, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("method", String(32), nullable=False),
    Column("reference", String(200)),
    Column("idempotency_key", String(200)),
    Column("fingerprint", String(64), nullable=False),
    Column("actor", String(128)),
    Column("reason", Text, nullable=False, server_default=""),
    Column("refunded_at", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("account", "idempotency_key"),
    CheckConstraint(_one_of("method", PAYMENT_METHODS), name="method"),
    CheckConstraint("amount_micro > 0", name="amount_micro"),
    CheckConstraint("amount_minor = amount_micro", name="amount_minor"),
    CheckConstraint("length(currency) = 3", name="currency"),
    CheckConstraint("minor_digits BETWEEN 0 AND 6", name="minor_digits"),
)
Index("ix_refunds_account", refunds.c.account)

#: Money of an account put on one of its final invoices. ``payment_id`` is the payment
#: being allocated (None: credit carried from earlier payments, put on an invoice when
#: it was finalised). A live allocation has no ``released_at``; voiding the invoice (or
#: a credit note that leaves it owing less than was allocated) releases it: the money
#: is the account's credit again. Rows are never deleted.
payment_allocations = Table(
    "payment_allocations",
    metadata,
    Column("id", SERIAL, primary_key=True, autoincrement=True),
    Column("account", String(128), ForeignKey("payment_accounts.account"), nullable=False),
    Column("invoice_id", String(64), ForeignKey("invoices.id"), nullable=False),
    Column("payment_id", String(64), ForeignKey("payments.id")),
    Column("amount_minor", BigInteger, nullable=False),
    Column("allocated_at", BigInteger, nullable=False),
    Column("released_at", BigInteger),
    CheckConstraint("amount_minor > 0", name="amount_minor"),
)
Index("ix_payment_allocations_invoice_id", payment_allocations.c.invoice_id)
Index("ix_payment_allocations_account", payment_allocations.c.account)
Index("ix_payment_allocations_payment_id", payment_allocations.c.payment_id)

# --- deliveries (0005) ------------------------------------------------------------------

DELIVERY_CHANNELS = ("email", "paper")
DELIVERY_STATES = ("pending", "sending", "sent", "failed", "printed")

#: How a final invoice reached its customer (docs/invoicing.md, "Delivery"): one row per
#: delivery of an invoice, ``sequence`` 0 the delivery made when it was issued and 1, 2,
#: ... each resend. ``pending`` waits for ``next_attempt_at``; ``sending`` is an attempt
#: recorded (``attempts`` counted, ``message_id`` chosen) before the message leaves, so a
#: crash never sends twice; ``sent`` (e-mail accepted by the SMTP server) and ``printed``
#: (in the print ``batch``) are delivered, at ``sent_at``; ``failed`` gave up with
#: ``last_error``. ``recipient`` is the e-mail address, or the name on the envelope.
invoice_deliveries = Table(
    "invoice_deliveries",
    metadata,
    Column("id", SERIAL, primary_key=True, autoincrement=True),
    Column("invoice_id", String(64), ForeignKey("invoices.id"), nullable=False),
    Column("sequence", Integer, nullable=False, server_default="0"),
    Column("channel", String(16), nullable=False),
    Column("state", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("last_error", Text),
    Column("recipient", String(320)),
    Column("message_id", String(255)),
    Column("batch", String(128)),
    Column("sent_at", BigInteger),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("invoice_id", "sequence"),
    UniqueConstraint("message_id"),
    CheckConstraint(_one_of("channel", DELIVERY_CHANNELS), name="channel"),
    CheckConstraint(_one_of("state", DELIVERY_STATES), name="state"),
    CheckConstraint(
        "(state <> 'sent' OR channel = 'email') AND (state <> 'printed' OR channel = 'paper')",
        name="state_channel",
    ),
    CheckConstraint("(state IN ('sent', 'printed')) = (sent_at IS NOT NULL)", name="sent_at"),
    CheckConstraint("attempts >= 0", name="attempts"),
    CheckConstraint("sequence >= 0", name="sequence"),
)
Index(
    "ix_invoice_deliveries_state_next_attempt_at",
    invoice_deliveries.c.state,
    invoice_deliveries.c.next_attempt_at,
)

# --- resellers (0006) -------------------------------------------------------------------

#: The issuers of invoices other than the operator (whose documents header comes from the
#: ``[documents]`` settings): each reseller's billing entity with the legal name, address
#: (lines joined by ``\n``), VAT id, support contact and logo its subscribers' documents
#: show, as the catalog had them at the last bill run (docs/invoicing.md, "Resellers").
#: The documents and the TMF678 representation read the issuer from here, so they need
#: no catalog.
billing_entities = Table(
    "billing_entities",
    metadata,
    Column("entity", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("address", Text, nullable=False, server_default=""),
    Column("vat_id", Text, nullable=False, server_default=""),
    Column("support", Text, nullable=False, server_default=""),
    Column("logo", Text),
    Column("reseller", String(64)),
    Column("updated_at", BigInteger, nullable=False),
)

#: A wholesale invoice: an ``invoices`` row of the operator's entity, addressed to the
#: reseller's operator-side account, whose ``usage`` lines price the reseller's
#: subscribers' billed usage at the wholesale price list. Its lines link no record (the
#: records stay on their retail invoices' lines); this row tells it apart.
wholesale_invoices = Table(
    "wholesale_invoices",
    metadata,
    Column("invoice_id", String(64), ForeignKey("invoices.id"), primary_key=True),
    Column("reseller", String(64), nullable=False),
)
Index("ix_wholesale_invoices_reseller", wholesale_invoices.c.reseller)

#: The retail invoices a wholesale invoice sums: each live one on at most one wholesale
#: invoice (the partial unique index); a voided wholesale invoice's are ``released`` by
#: the next bill run, for its replacement.
wholesale_sources = Table(
    "wholesale_sources",
    metadata,
    Column(
        "wholesale_invoice_id",
        String(64),
        ForeignKey("wholesale_invoices.invoice_id"),
        nullable=False,
    ),
    Column("retail_invoice_id", String(64), ForeignKey("invoices.id"), nullable=False),
    Column("released", Boolean, nullable=False, server_default=false()),
    PrimaryKeyConstraint("wholesale_invoice_id", "retail_invoice_id"),
)
Index(
    "uq_wholesale_sources_retail_invoice_id",
    wholesale_sources.c.retail_invoice_id,
    unique=True,
    sqlite_where=text("released = 0"),
    postgresql_where=text("NOT released"),
)

#: The wholesale price of a wholesale line: ``price_micro`` per ``per_units`` units
#: (``amount = round(quantity * price_micro / per_units)`` to the minor unit, once), so
#: the audit checks the amount without the catalog.
wholesale_items = Table(
    "wholesale_items",
    metadata,
    Column("item_id", BigInteger, ForeignKey("invoice_items.id"), primary_key=True),
    Column("price_micro", BigInteger, nullable=False),
    Column("per_units", BigInteger, nullable=False),
    CheckConstraint("price_micro >= 0", name="price_micro"),
    CheckConstraint("per_units >= 1", name="per_units"),
)
