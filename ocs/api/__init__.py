"""The management HTTP API under ``/v1`` (docs/api.md).

Served by ``ocs serve`` on the HTTP port next to ``/healthz`` and ``/metrics``
(:func:`ocs.api.app.create_app` mounts it when given the Redis client). Layout:

* :mod:`~ocs.api.routes`: the route table, the one place routes are declared;
* :mod:`~ocs.api.openapi`: the OpenAPI 3 document, generated from that table;
* :mod:`~ocs.api.schema`: request and response schemas and the body validator;
* :mod:`~ocs.api.auth`: bearer tokens (hashed in the configuration) and roles;
* :mod:`~ocs.api.errors`: the one mapping from exceptions to HTTP statuses;
* :mod:`~ocs.api.pagination`: ``offset``/``limit`` and ``X-Total-Count``;
* handlers per resource: :mod:`~ocs.api.catalog`, :mod:`~ocs.api.accounts`,
  :mod:`~ocs.api.balances`, :mod:`~ocs.api.activity`, :mod:`~ocs.api.bulk`,
  :mod:`~ocs.api.bills` (TMF678 customer bills, from the billing database).

The handlers only translate HTTP: validation and writes are the quota engine's
(``AccountStore``, ``CatalogStore``, ``provision``, ``BalanceActions``), the same
code ``ocs provision`` runs; the bills' are ``ocs.billing``'s (the same functions as
``ocs invoice``).
"""
