"""``ocs invoice deliver``: the delivery step run by hand, the contacts read from a real
Redis (accounts as the store writes them), e-mail to a real SMTP server (aiosmtpd),
paper into a print batch; ``--invoice``, ``--resend``, ``--print-dir`` and the exits."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import select, update

from ocs.billing.schema import invoice_deliveries
from ocs.cli import main
from quota_engine.accounts.model import Account
from quota_engine.store import keys
from tests.helpers import get_free_port
from tests.ocs.billing.delivery.smtp_server import smtp_server
from tests.ocs.billing.documents.builders import ERIKA, bill, usage
from tests.ocs.billing.factory import account

# the test server takes AUTH over plain TCP (aiosmtpd warns: a real one must not)
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture
def billed(tmp_path: Path, redis_url: str):
    """Erika (e-mail) and Hans (paper) in Redis, their November invoices final."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    for stored in (
        Account(id="erika", kind="postpaid", currency="EUR", plan="postpaid-standard",
                name=ERIKA.name, address=ERIKA.address, locale="de_DE", email=ERIKA.email),
        Account(id="hans", kind="postpaid", currency="EUR", plan="postpaid-standard",
                name="Hans Meier", address="Lindenweg 3\n80331 München", delivery="paper"),
    ):  # fmt: skip
        client.hset(keys.account(stored.id), mapping=stored.to_hash())
    made = bill(
        tmp_path,
        [account(a, partition=keys.partition_of(a)) for a in ("erika", "hans")],
        usage("erika", 3) + usage("hans", 3),
        finalize=True,
    )
    yield made, redis_url
    client.flushall()
    made.engine.dispose()


def run(capsys, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    code = main(list(argv), env=env or {})
    out, err = capsys.readouterr()
    return code, out, err


def flags(made, redis_url: str, server=None) -> list[str]:
    given = [
        "--billing-database-url", str(made.engine.url), "--redis-url", redis_url,
        "--records-directory", str(made.records),
    ]  # fmt: skip
    if server is not None:
        given += ["--smtp-host", server.host, "--smtp-port", str(server.port),
                  "--smtp-security", "none", "--smtp-from", "billing@beispiel.example"]  # fmt: skip
    return given


def test_deliver_mails_and_prints_then_has_nothing_left(billed, capsys, tmp_path):
    made, redis_url = billed
    prints = tmp_path / "print"
    with smtp_server() as server:
        code, out, err = run(capsys, "invoice", "deliver", "--print-dir", str(prints),
                             *flags(made, redis_url, server))  # fmt: skip
        assert (code, err) == (0, ""), err
        assert "2 planned, 1 e-mailed, 1 printed, 0 to retry, 0 failed" in out
        [received] = server.sink.received
        assert received.recipients == ["erika@example.de"]
        [batch] = prints.iterdir()
        assert f"print batch: {batch}" in out
        manifest = json.loads((batch / "manifest.json").read_text())
        assert [d["account"] for d in manifest["documents"]] == ["hans"]
        code, out, _ = run(capsys, "invoice", "deliver", "--print-dir", str(prints),
                           *flags(made, redis_url, server))  # fmt: skip
        assert code == 0 and "0 planned, 0 e-mailed, 0 printed" in out
        assert len(server.sink.received) == 1 and len(list(prints.iterdir())) == 1
        # --resend of one invoice, by its number
        code, out, _ = run(capsys, "invoice", "deliver", "--invoice", "INV-000001",
                           "--resend", *flags(made, redis_url, server))  # fmt: skip
        assert code == 0 and "1 e-mailed" in out
        assert f"invoice {made.invoice_id('erika')}: email sent to erika@example.de" in out
        assert "(attempts 1, resend 1)" in out
        assert len(server.sink.received) == 2
        code, out, _ = run(capsys, "invoice", "show", "INV-000002", *flags(made, redis_url)[:2])
        assert code == 0 and "  delivery paper printed to Hans Meier " in out
        assert f" in batch {batch.name} (attempts 1)" in out


def test_without_settings_nothing_is_sent_and_it_says_why(billed, capsys):
    made, redis_url = billed
    code, out, _ = run(capsys, "invoice", "deliver", *flags(made, redis_url))
    assert code == 0 and "2 planned" in out and "2 waiting" in out
    assert "e-mail is off: set smtp.host" in out and "printing is off" in out


def test_an_interrupted_print_batch_without_a_print_dir_is_left_and_said(billed, capsys, tmp_path):
    made, redis_url = billed
    code, _, _ = run(capsys, "invoice", "deliver", *flags(made, redis_url))  # planned
    hans = made.invoice_id("hans")
    with made.engine.begin() as connection:  # as a run that died two hours ago left it
        connection.execute(
            update(invoice_deliveries)
            .where(invoice_deliveries.c.invoice_id == hans)
            .values(state="sending", batch="print-20261201T020000Z-abcdef", attempts=1,
                    updated_at=int(time.time()) - 7200)
        )  # fmt: skip
    code, out, _ = run(capsys, "invoice", "deliver", *flags(made, redis_url))
    assert code == 0 and "0 interrupted" in out
    assert "1 paper deliveries of interrupted print batches left sending" in out
    with made.engine.connect() as connection:
        row = connection.execute(
            select(invoice_deliveries).where(invoice_deliveries.c.invoice_id == hans)
        ).one()
    assert (row.state, row.batch) == ("sending", "print-20261201T020000Z-abcdef")


def test_an_unreachable_server_is_exit_1_and_the_invoice_waits(billed, capsys):
    made, redis_url = billed
    port = get_free_port()
    code, _, err = run(capsys, "invoice", "deliver", *flags(made, redis_url),
                       "--smtp-host", "127.0.0.1", "--smtp-port", str(port),
                       "--smtp-security", "none")  # fmt: skip
    assert code == 1
    assert f"error: SMTP server 127.0.0.1:{port} unreachable" in err and "1 to retry" in err


def test_a_refused_recipient_is_exit_1_with_the_reason(billed, capsys):
    made, redis_url = billed
    with smtp_server() as server:
        server.sink.replies = ["550 5.1.1 no such user"]
        code, _, err = run(capsys, "invoice", "deliver", "--invoice", "INV-000001",
                           *flags(made, redis_url, server))  # fmt: skip
    assert code == 1 and "1 failed" in err
    assert (
        "email failed to erika@example.de (attempts 1): recipient refused: 550 5.1.1 no such user"
        in err
    )
    code, out, _ = run(capsys, "invoice", "show", "INV-000001", *flags(made, redis_url)[:2])
    assert code == 0
    assert "  delivery email failed to erika@example.de (attempts 1): recipient refused" in out


def test_the_smtp_password_comes_from_the_environment_only(billed, capsys):
    made, redis_url = billed
    with smtp_server(password="env-secret-1") as server:
        env = {"OCS_SMTP_USER": "ocs", "OCS_SMTP_PASSWORD": "env-secret-1"}
        code, out, err = run(capsys, "invoice", "deliver", "--invoice", "INV-000001",
                             *flags(made, redis_url, server), env=env)  # fmt: skip
        assert code == 0, err
        assert server.sink.logins == [("ocs", "env-secret-1")]
        assert "env-secret-1" not in out + err
    code, usage, _ = run(capsys, "invoice", "deliver", "--help")
    assert code == 0
    assert "--smtp-secret-file" in usage and "--smtp-password" not in usage  # no flag


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--resend"], "--resend needs --invoice"),
        (["--invoice", "INV-999"], "no invoice 'INV-999'"),
    ],
)
def test_usage_errors(billed, capsys, argv, message):
    made, redis_url = billed
    code, _, err = run(capsys, "invoice", "deliver", *argv, *flags(made, redis_url))
    assert code in (1, 2) and message in err


def test_a_resend_of_a_delivery_under_way_is_exit_1(billed, capsys):
    made, redis_url = billed
    run(capsys, "invoice", "deliver", *flags(made, redis_url))  # planned, pending
    code, _, err = run(capsys, "invoice", "deliver", "--invoice", "INV-000001", "--resend",
                       *flags(made, redis_url))  # fmt: skip
    assert code == 1 and "has a delivery pending already" in err


def test_redis_that_cannot_be_reached_is_exit_2(billed, capsys):
    made, _ = billed
    dead = f"redis://127.0.0.1:{get_free_port()}/0"
    code, _, err = run(capsys, "invoice", "deliver", *flags(made, dead))
    assert code == 2 and "cannot read the customer's contact from Redis" in err
