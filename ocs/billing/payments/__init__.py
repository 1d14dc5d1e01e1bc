"""Payments and reconciliation: payments and refunds recorded against accounts and
allocated to final invoices (:mod:`.allocation`), the statement of an invoice
(:mod:`.statement`), bank and gateway files (:mod:`.imports`), dunning (:mod:`.dunning`)
and the TMF676 representation (:mod:`.tmf`). docs/invoicing.md, "Payments".

Nothing here knows Redis: barring and lifting accounts is composed at the ocs root
(:mod:`ocs.payment_dunning`)."""
