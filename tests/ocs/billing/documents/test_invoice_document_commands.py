"""``ocs invoice pdf|html``: the document of an invoice made by a real bill run, the
customer contact read from a real Redis (the account as the store writes it)."""

from __future__ import annotations

import io
from pathlib import Path

import pypdf
import pytest
import redis

from ocs.cli import main
from quota_engine.accounts.model import Account
from quota_engine.store import keys
from tests.ocs.billing.documents.builders import ERIKA, bill, usage
from tests.ocs.billing.factory import account


@pytest.fixture
def billed(tmp_path: Path, redis_url: str):
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    stored = Account(
        id="erika", kind="postpaid", currency="EUR", plan="postpaid-standard",
        name=ERIKA.name, address=ERIKA.address, locale="de_DE",
    )  # fmt: skip
    client.hset(keys.account("erika"), mapping=stored.to_hash())
    erika = account("erika", partition=keys.partition_of("erika"))
    made = bill(tmp_path, [erika], usage("erika", 6), finalize=True)
    yield made, redis_url
    client.flushall()
    made.engine.dispose()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), env={})
    out, err = capsys.readouterr()
    return code, out, err


def flags(made, redis_url: str) -> list[str]:
    return [
        "--billing-database-url", str(made.engine.url), "--redis-url", redis_url,
        "--records-directory", str(made.records),
    ]  # fmt: skip


def test_pdf_and_html_written_to_files(billed, capsys, tmp_path):
    made, redis_url = billed
    out = tmp_path / "invoice.pdf"
    code, printed, err = run(
        capsys, "invoice", "pdf", "INV-000001", "-o", str(out), *flags(made, redis_url)
    )
    assert (code, err) == (0, "")
    assert "INV-000001" in printed and str(out) in printed
    text = "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(out.read_bytes())).pages)
    assert "Erika Mustermann" in text and "Musterstraße 12" in text
    assert text.count("+4917012345") == 6  # every record itemised
    html = tmp_path / "invoice.html"
    invoice = made.invoice_id("erika")
    code, _, err = run(
        capsys, "invoice", "html", invoice, "--output", str(html), *flags(made, redis_url)
    )
    assert (code, err) == (0, "")
    assert "Erika Mustermann" in html.read_text()


def test_unknown_invoice_is_exit_1(billed, capsys, tmp_path):
    made, redis_url = billed
    code, _, err = run(
        capsys, "invoice", "pdf", "INV-999", "-o", str(tmp_path / "x.pdf"), *flags(made, redis_url)
    )
    assert code == 1 and "no invoice 'INV-999'" in err
    assert not (tmp_path / "x.pdf").exists()


def test_unwritable_output_is_exit_2(billed, capsys, tmp_path):
    made, redis_url = billed
    target = tmp_path / "missing-dir" / "x.pdf"
    code, _, err = run(
        capsys, "invoice", "pdf", "INV-000001", "-o", str(target), *flags(made, redis_url)
    )
    assert code == 2 and "--output" in err


def test_unreachable_redis_is_exit_2(billed, capsys, tmp_path, free_port):
    made, _ = billed
    dead = f"redis://127.0.0.1:{free_port()}/0"
    code, _, err = run(
        capsys, "invoice", "html", "INV-000001", "-o", str(tmp_path / "x.html"), *flags(made, dead)
    )
    assert code == 2 and "cannot read the customer's contact" in err


def test_an_account_gone_from_redis_still_gets_its_document(billed, capsys, tmp_path):
    """An account closed and removed since: the document names its id, has no address,
    and says its records could not be listed (their partition is the account's)."""
    made, redis_url = billed
    redis.Redis.from_url(redis_url).delete(keys.account("erika"))
    out = tmp_path / "gone.pdf"
    code, _, err = run(
        capsys, "invoice", "pdf", "INV-000001", "-o", str(out), *flags(made, redis_url)
    )
    assert (code, err) == (0, "")
    text = "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(out.read_bytes())).pages)
    assert "Erika Mustermann" not in text and "erika" in text
    assert "6 records of this invoice could not be read from the record files" in text
