"""Paper delivery: the invoices of accounts with ``delivery = paper`` go into one print
batch per run (their PDFs and a manifest for the print house), marked ``printed``;
a batch is complete or absent, whatever stops the step."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pypdf
import pytest
from sqlalchemy import select

from ocs.billing.accounts import Contact
from ocs.billing.delivery import paper, store
from ocs.billing.delivery.run import deliver
from ocs.billing.documents import render
from ocs.billing.schema import invoice_deliveries, invoices
from tests.ocs.billing.delivery.smtp_server import smtp_server
from tests.ocs.billing.delivery.test_email_delivery import NOW, accounts_of, options
from tests.ocs.billing.documents.builders import BERLIN, ERIKA, OPERATOR, bill, business, usage
from tests.ocs.billing.factory import account

HANS = Contact(
    name="Hans Meier", address="Lindenweg 3\n80331 München", locale="de_DE", delivery="paper"
)
GRETA = Contact(name="Greta Paper", address="1 Print Row\nLeeds LS1 1AA", delivery="paper")


@pytest.fixture
def mixed(tmp_path):
    """Erika by e-mail, Hans and Greta on paper."""
    return bill(
        tmp_path,
        [account("erika", contact=ERIKA), account("hans", contact=HANS),
         account("greta", contact=GRETA)],
        usage("erika", 2) + usage("hans", 3) + usage("greta", 90),
        finalize=True,
    )  # fmt: skip


def states(billed) -> dict[str, tuple[str, str | None]]:
    with billed.engine.connect() as connection:
        return {
            row.account: (row.state, row.batch)
            for row in connection.execute(
                select(
                    invoices.c.account, invoice_deliveries.c.state, invoice_deliveries.c.batch
                ).join(invoices, invoices.c.id == invoice_deliveries.c.invoice_id)
            )
        }


def numbers(billed) -> dict[str, str]:
    with billed.engine.connect() as connection:
        return dict(connection.execute(select(invoices.c.account, invoices.c.number)).all())


def test_paper_accounts_go_into_one_print_batch_with_a_manifest(mixed, tmp_path):
    prints = tmp_path / "print"
    with smtp_server() as server:
        summary = deliver(
            mixed.engine, options(server, print_directory=prints, records_directory=mixed.records),
            accounts_of(mixed), now=NOW,
        )  # fmt: skip
        assert [r.recipients for r in server.sink.received] == [["erika@example.de"]]
    assert (summary.sent, summary.printed, summary.errors) == (1, 2, [])
    [batch] = list(prints.iterdir())  # no temporary directory left beside it
    assert summary.batch == batch and batch.name.startswith("print-20261210T")
    manifest = json.loads((batch / "manifest.json").read_text())
    number = numbers(mixed)
    by_account = {entry["account"]: entry for entry in manifest["documents"]}
    assert set(by_account) == {"hans", "greta"} and manifest["count"] == 2
    hans, greta = by_account["hans"], by_account["greta"]
    assert hans["invoice"] == number["hans"] and hans["file"] == f"{number['hans']}.pdf"
    assert (hans["name"], hans["address"]) == ("Hans Meier", ["Lindenweg 3", "80331 München"])
    assert (greta["name"], greta["address"]) == ("Greta Paper", ["1 Print Row", "Leeds LS1 1AA"])
    for entry in (hans, greta):
        pdf = pypdf.PdfReader(io.BytesIO((batch / entry["file"]).read_bytes()))
        assert entry["pages"] == len(pdf.pages)
        assert entry["invoice"] in pdf.pages[0].extract_text()
    assert greta["pages"] > 1  # 90 itemised records: the page count is the PDF's own
    assert manifest["pages"] == hans["pages"] + greta["pages"]
    assert sorted(p.name for p in batch.iterdir()) == sorted(
        ["manifest.json", hans["file"], greta["file"]]
    )
    assert states(mixed) == {
        "erika": ("sent", None), "hans": ("printed", batch.name), "greta": ("printed", batch.name),
    }  # fmt: skip
    again = deliver(mixed.engine, options(print_directory=prints), accounts_of(mixed), now=NOW)
    assert again.printed == 0 and len(list(prints.iterdir())) == 1


def test_without_a_print_directory_paper_deliveries_wait(mixed):
    summary = deliver(mixed.engine, options(), accounts_of(mixed), now=NOW)
    assert summary.waiting == 3  # erika: no SMTP either
    assert states(mixed)["hans"] == ("pending", None)


def test_a_print_directory_that_cannot_be_written_leaves_them_pending(mixed, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    summary = deliver(mixed.engine, options(print_directory=blocked / "print"),
                      accounts_of(mixed), now=NOW)  # fmt: skip
    [reason] = summary.errors
    assert reason.startswith(f"print directory {blocked / 'print'}:")
    assert states(mixed)["hans"] == ("pending", None)
    with mixed.engine.connect() as connection:
        assert {row.attempts for row in connection.execute(select(invoice_deliveries))} == {0}


def test_a_batch_that_fails_while_written_is_removed_and_retried(mixed, tmp_path, monkeypatch):
    prints = tmp_path / "print"

    def full(self, created):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(paper.BatchWriter, "complete", full)
    summary = deliver(mixed.engine, options(print_directory=prints), accounts_of(mixed), now=NOW)
    assert "No space left on device" in summary.errors[0] and summary.retrying == 2
    assert list(prints.iterdir()) == []  # nothing half-written
    assert states(mixed)["hans"][0] == "pending"
    monkeypatch.undo()
    later = deliver(mixed.engine, options(print_directory=prints), accounts_of(mixed),
                    now=NOW + 60)  # fmt: skip
    assert later.printed == 2 and len(list(prints.iterdir())) == 1


def test_a_crash_after_the_batch_was_complete_marks_it_printed_once(mixed, tmp_path, monkeypatch):
    prints = tmp_path / "print"
    real = store.finish

    def crash(connection, delivery_id, state, now, **kwargs):
        if state == "printed":
            raise SystemExit("killed after the batch was renamed")
        return real(connection, delivery_id, state, now, **kwargs)

    monkeypatch.setattr(store, "finish", crash)
    with pytest.raises(SystemExit):
        deliver(mixed.engine, options(print_directory=prints), accounts_of(mixed), now=NOW)
    monkeypatch.undo()
    [batch] = list(prints.iterdir())
    assert states(mixed)["hans"] == ("sending", batch.name)
    summary = deliver(mixed.engine, options(print_directory=prints), accounts_of(mixed),
                      now=NOW + store.LEASE + 1)  # fmt: skip
    assert summary.interrupted == 2 and summary.printed == 0
    assert list(prints.iterdir()) == [batch]  # not printed twice
    assert states(mixed)["hans"] == ("printed", batch.name)


def test_a_crash_before_the_batch_was_complete_puts_them_in_the_next(mixed, tmp_path, monkeypatch):
    prints = tmp_path / "print"

    def killed(self, created):
        raise SystemExit("killed while writing the batch")

    monkeypatch.setattr(paper.BatchWriter, "complete", killed)
    with pytest.raises(SystemExit):
        deliver(mixed.engine, options(print_directory=prints), accounts_of(mixed), now=NOW)
    monkeypatch.undo()
    assert [p.name.startswith(".") for p in prints.iterdir()] == [True]  # only the temporary
    assert states(mixed)["hans"][0] == "sending"
    summary = deliver(mixed.engine, options(print_directory=prints), accounts_of(mixed),
                      now=NOW + store.LEASE + 1)  # fmt: skip
    assert summary.interrupted == 2 and summary.printed == 2
    done = [p for p in prints.iterdir() if not p.name.startswith(".")]
    assert len(done) == 1 and states(mixed)["hans"] == ("printed", done[0].name)


def test_without_a_print_directory_an_interrupted_batch_is_left_as_it_is(
    mixed, tmp_path, monkeypatch
):
    prints = tmp_path / "print"
    real = store.finish

    def crash(connection, delivery_id, state, now, **kwargs):
        if state == "printed":
            raise SystemExit("killed after the batch was renamed")
        return real(connection, delivery_id, state, now, **kwargs)

    monkeypatch.setattr(store, "finish", crash)
    with pytest.raises(SystemExit):
        deliver(mixed.engine, options(print_directory=prints), accounts_of(mixed), now=NOW)
    monkeypatch.undo()
    [batch] = list(prints.iterdir())
    # a later run without the print directory cannot see that the batch is complete
    for later in (NOW + store.LEASE + 1, NOW + 86_400):
        summary = deliver(mixed.engine, options(), accounts_of(mixed), now=later)
        # waiting: those two and Erika's e-mail (no SMTP server either)
        assert (summary.unsettled, summary.waiting, summary.interrupted) == (2, 3, 0)
        assert states(mixed)["hans"] == ("sending", batch.name)  # not pending: not reprinted
        assert states(mixed)["greta"] == ("sending", batch.name)
    # the run with the directory settles them: printed, not printed again
    summary = deliver(mixed.engine, options(print_directory=prints), accounts_of(mixed),
                      now=NOW + 2 * 86_400)  # fmt: skip
    assert (summary.interrupted, summary.printed, summary.unsettled) == (2, 0, 0)
    assert list(prints.iterdir()) == [batch]
    assert states(mixed)["hans"] == ("printed", batch.name)


def test_documents_that_cannot_be_made_fail_and_no_empty_batch_is_left(mixed, tmp_path):
    prints = tmp_path / "print"
    broken = replace(OPERATOR, logo=tmp_path / "missing.png")
    summary = deliver(mixed.engine, options(print_directory=prints, operator=broken),
                      accounts_of(mixed), now=NOW)  # fmt: skip
    assert summary.failed == 2 and summary.batch is None
    assert list(prints.iterdir()) == []
    assert states(mixed)["greta"][0] == "failed"


def test_page_count_is_the_pdfs_own(tmp_path):
    billed = business(tmp_path, finalize=True)
    pdf = render(billed.document("acme"), "pdf", BERLIN)
    assert paper.page_count(pdf) == len(pypdf.PdfReader(io.BytesIO(pdf)).pages) > 3
    with pytest.raises(ValueError, match="no page tree"):
        paper.page_count(b"%PDF-1.7 nothing here")
