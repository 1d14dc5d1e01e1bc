"""Delivery of final invoices to their customers (docs/invoicing.md, "Delivery"): by
e-mail with the PDF attached (:mod:`.smtp`), or on paper through a print batch for the
print house (:mod:`.paper`), per the account's ``delivery``; each delivery a row of
``invoice_deliveries`` (:mod:`.store`) with its attempts, retries and status, which
the TMF678 representation shows (:mod:`.status`). :mod:`.run` is the step that the
daily schedule and ``ocs invoice deliver`` run.

This package imports nothing at import time: :mod:`ocs.billing.representation` reads
:mod:`.status`, and :mod:`.run` reads the documents, which read the representation.
"""
