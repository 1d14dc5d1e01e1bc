"""The [smtp] and [delivery] settings: every layer, each bad value named, the password
a secret (never shown, never a flag), and the step's options made from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocs.billing.delivery.run import options_of
from ocs.config import HIDDEN, ConfigError, Settings, load_settings


def test_defaults_send_no_e_mail_and_print_nothing():
    settings = load_settings(env={})
    options = options_of(settings)
    assert options.smtp is None and options.print_directory is None
    assert (options.max_attempts, options.retry_delay) == (8, 300)


def test_every_smtp_setting_from_the_file_and_the_password_from_the_environment(tmp_path):
    path = tmp_path / "ocs.toml"
    path.write_text(
        '[smtp]\nhost = "smtp.example.net"\nport = 465\nsecurity = "ssl"\nuser = "billing"\n'
        'from = "invoices@example.net"\ntimeout = 5\n'
        '[delivery]\nprint_directory = "/var/lib/ocs/print"\nmax_attempts = 3\nretry_delay = 60\n'
    )
    settings = load_settings(path, {"OCS_SMTP_PASSWORD": "pa55word-secret"})
    smtp = options_of(settings).smtp
    assert smtp is not None
    assert (smtp.host, smtp.port, smtp.security, smtp.user, smtp.sender, smtp.timeout) == (
        "smtp.example.net", 465, "ssl", "billing", "invoices@example.net", 5.0,
    )  # fmt: skip
    assert smtp.secret() == "pa55word-secret"
    assert "pa55word" not in repr(settings) and "pa55word" not in repr(smtp)
    assert settings.redacted()["smtp_password"] == HIDDEN
    options = options_of(settings, print_directory="/tmp/elsewhere")
    assert options.print_directory == Path("/tmp/elsewhere") and options.max_attempts == 3


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OCS_SMTP_SECURITY": "tls"}, "OCS_SMTP_SECURITY: must be starttls, ssl or none"),
        ({"OCS_SMTP_FROM": "billing"}, "OCS_SMTP_FROM: must be an e-mail address"),
        ({"OCS_SMTP_PORT": "0"}, "OCS_SMTP_PORT: must be an integer from 1 to 65535"),
        ({"OCS_SMTP_HOST": "not a host"}, "OCS_SMTP_HOST: must be an IP address or a host name"),
        ({"OCS_DELIVERY_MAX_ATTEMPTS": "0"}, "OCS_DELIVERY_MAX_ATTEMPTS: must be an integer"),
        ({"OCS_DELIVERY_RETRY_DELAY": "0.5"}, "OCS_DELIVERY_RETRY_DELAY: must be a number"),
        ({"OCS_SMTP_PASSWORD": "x", "OCS_SMTP_SECRET_FILE": "/f", "OCS_SMTP_USER": "u"},
         "OCS_SMTP_SECRET_FILE: give smtp.password or smtp.secret_file, not both"),
        ({"OCS_SMTP_PASSWORD": "x"}, "smtp.user: must be set when a password is given"),
    ],
)  # fmt: skip
def test_each_bad_value_is_named(env, message):
    with pytest.raises(ConfigError) as caught:
        load_settings(env=env)
    assert any(error.startswith(message) for error in caught.value.errors), caught.value.errors
    assert "x," not in str(caught.value)  # the secret's value is never shown


def test_the_password_has_no_flag():
    with pytest.raises(ConfigError, match="smtp_password: is a secret and cannot be given"):
        load_settings(env={}, overrides={"smtp_password": "on-the-command-line"})
    assert Settings().smtp_password is None
