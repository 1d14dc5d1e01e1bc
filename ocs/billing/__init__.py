"""Postpaid billing: bill runs, invoices, numbering, credit notes and their audit, kept in
a relational database of their own (docs/invoicing.md).

``ocs.billing.database`` opens and migrates it, ``ocs.billing.schema`` declares its
tables, ``ocs.billing.numbering`` assigns gap-free numbers at finalisation. Billing works
from the exported record segments, never from the charging path: nothing here imports
``protocol`` or ``ocs.gy``.
"""
