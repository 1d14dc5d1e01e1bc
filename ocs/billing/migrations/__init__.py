"""Alembic migrations of the billing database, run by ``ocs billing migrate``
(:func:`ocs.billing.database.migrate`); there is no ``alembic.ini`` or ``env.py``.

A new revision is a new module in ``versions/``: copy the newest, give it a new
``revision`` (the next number, ``0002``) with ``down_revision`` the previous one, and
write its ``upgrade()`` with ``alembic.op``, frozen: never import ``ocs.billing.schema``
(a migration must build the same tables whatever the schema module says later), and
change ``ocs/billing/schema.py`` to match (tests/ocs/billing compare the two on SQLite
and PostgreSQL). On SQLite the migrations run in batch mode (``op.batch_alter_table``
rebuilds a table to alter it). There are no downgrades: restore a backup instead
(docs/invoicing.md, "Backup and restore").
"""
