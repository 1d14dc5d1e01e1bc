"""A small run of the delivery benchmark (``delivery_scale.py``), to check that what it
measures is what it says: every invoice delivered once, the e-mails counted by the
sink, the paper ones in the batch. The numbers come from the script at 10,000 accounts
(docs/benchmarks.md, "A bill run with documents")."""

from __future__ import annotations

import argparse

from tests.benchmarks import delivery_scale


def test_every_invoice_is_delivered_once_by_e_mail_or_in_the_batch(tmp_path):
    args = argparse.Namespace(
        accounts=60, records=600, workdir=str(tmp_path), period="2026-11", seed=3,
        paper=0.25, profile=None,
    )  # fmt: skip
    result = delivery_scale.run(args)
    assert result["errors"] == [] and result["failed"] == 0
    assert result["emailed"] + result["printed"] == result["invoices"] > 0
    assert result["printed"] > 0 and result["sink_messages"] == result["emailed"]
    assert result["states"] == {"sent": result["emailed"], "printed": result["printed"]}
    assert result["print_pages"] >= result["printed"]
