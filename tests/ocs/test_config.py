"""ocs.config: layers, precedence, whole validation, secrets."""

import dataclasses
import math
import os
from importlib import resources
from pathlib import Path

import pytest

from ocs.config import (
    HIDDEN,
    SERVICE_LINK_ENV,
    SPECS,
    ConfigError,
    ConfigFileError,
    Settings,
    check_config,
    load_settings,
    redact_url,
)
from tests.helpers import ROOT

TOKEN = "s3cr3t-token-0123456789"


def write(tmp_path: Path, text: str, name: str = "ocs.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def errors_of(**kwargs) -> list[str]:
    kwargs.setdefault("env", {})
    with pytest.raises(ConfigError) as info:
        load_settings(**kwargs)
    return info.value.errors


# --- defaults and the shipped example -------------------------------------------------


def test_no_layers_gives_the_declared_defaults():
    settings = load_settings(env={})
    assert settings == Settings()
    assert settings.diameter_port == 3868
    assert settings.redis_url is None
    assert settings.diameter_allowed_peers == ()


def test_shipped_default_toml_is_valid_and_equals_the_defaults():
    text = resources.files("ocs").joinpath("default.toml").read_text()
    path = resources.files("ocs").joinpath("default.toml")
    assert check_config(str(path)) == []
    assert load_settings(str(path), env={}) == Settings()
    # every setting is documented in it, set or (for unset-by-default ones) commented
    for spec in SPECS:
        assert f"\n{spec.key} = " in text or f"\n# {spec.key} = " in text, spec.toml_name


def test_configuration_doc_names_every_key_env_var_and_flag():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for spec in SPECS:
        assert f"`{spec.toml_name}`" in doc, spec.toml_name
        assert f"`{spec.env}`" in doc, spec.env
        if spec.flag:
            assert f"`{spec.flag}`" in doc, spec.flag


def test_settings_are_frozen_and_slotted():
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.diameter_port = 1  # type: ignore[misc]
    assert not hasattr(settings, "__dict__")


def test_every_setting_is_named_consistently_in_each_layer():
    for spec in SPECS:
        assert spec.name == f"{spec.section}_{spec.key}"
        assert spec.env == "OCS_" + spec.name.upper()
        assert spec.flag == (None if spec.secret else "--" + spec.name.replace("_", "-"))


# --- precedence ------------------------------------------------------------------------


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path):
    path = write(
        tmp_path,
        '[diameter]\nport = 3001\norigin_host = "file.example.net"\n'
        'origin_realm = "file.net"\n[http]\nport = 9001\n',
    )
    env = {"OCS_DIAMETER_PORT": "3002", "OCS_DIAMETER_ORIGIN_HOST": "env.example.net"}
    settings = load_settings(path, env, {"diameter_port": "3003", "http_host": None})
    assert settings.diameter_port == 3003  # flag beats env and file
    assert settings.diameter_origin_host == "env.example.net"  # env beats file
    assert settings.diameter_origin_realm == "file.net"  # file beats default
    assert settings.http_port == 9001
    assert settings.http_host == "0.0.0.0"  # None override = not given
    assert settings.log_level == "INFO"  # default


def test_env_none_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("OCS_HTTP_PORT", "9100")
    assert load_settings().http_port == 9100


def test_env_ignores_other_variables_and_ocs_config():
    settings = load_settings(env={"PATH": "/bin", "OCS_CONFIG": "/nope.toml", "ocs_http_port": "1"})
    assert settings == Settings()


# --- parsing per type ------------------------------------------------------------------


def test_kubernetes_service_links_for_a_service_named_ocs_are_ignored():
    """A pod in a namespace with a Service named ``ocs`` gets these from Kubernetes
    (``enableServiceLinks``, on by default); the node must still start."""
    links = {
        "OCS_SERVICE_HOST": "10.96.0.12",
        "OCS_SERVICE_PORT": "3868",
        "OCS_SERVICE_PORT_DIAMETER": "3868",
        "OCS_SERVICE_PORT_HTTP_API": "8080",
        "OCS_PORT": "tcp://10.96.0.12:3868",
        "OCS_PORT_3868_TCP": "tcp://10.96.0.12:3868",
        "OCS_PORT_3868_TCP_PROTO": "tcp",
        "OCS_PORT_3868_TCP_PORT": "3868",
        "OCS_PORT_3868_TCP_ADDR": "10.96.0.12",
        "OCS_PORT_3868_SCTP": "sctp://10.96.0.12:3868",
    }
    settings = load_settings(env={**links, "OCS_HTTP_PORT": "9090"})
    assert settings.http_port == 9090
    assert settings == load_settings(env={"OCS_HTTP_PORT": "9090"})
    # near misses are still unknown settings, named
    for var in ("OCS_PORTS", "OCS_PORT_3868", "OCS_PORT_3868_TCP_HOST", "OCS_SERVICE"):
        with pytest.raises(ConfigError) as exc:
            load_settings(env={var: "x"})
        assert exc.value.errors[0].startswith(f"{var}: unknown setting")


def test_no_setting_is_named_like_a_service_link():
    """So ignoring the service-link variables never ignores a setting."""
    assert not [spec.env for spec in SPECS if SERVICE_LINK_ENV.fullmatch(spec.env)]


def test_env_values_are_parsed_to_the_field_types():
    settings = load_settings(
        env={
            "OCS_DIAMETER_PORT": " 3900 ",
            "OCS_DIAMETER_WATCHDOG_INTERVAL": "6",
            "OCS_DIAMETER_ALLOWED_PEERS": "pgw1.example.net, pgw2.example.net,",
            "OCS_DIAMETER_ALLOWED_NETWORKS": "10.0.0.0/8,2001:db8::/32",
            "OCS_REDIS_URL": "",
            "OCS_LOG_LEVEL": "debug",
            "OCS_LOG_FORMAT": "TEXT",
        }
    )
    assert settings.diameter_port == 3900
    assert settings.diameter_watchdog_interval == 6.0
    assert isinstance(settings.diameter_watchdog_interval, float)
    assert settings.diameter_allowed_peers == ("pgw1.example.net", "pgw2.example.net")
    assert settings.diameter_allowed_networks == ("10.0.0.0/8", "2001:db8::/32")
    assert settings.redis_url is None
    assert settings.log_level == "DEBUG"
    assert settings.log_format == "text"


def test_empty_env_list_means_empty_tuple():
    settings = load_settings(env={"OCS_DIAMETER_ALLOWED_PEERS": ""})
    assert settings.diameter_allowed_peers == ()


def test_toml_values_are_typed(tmp_path):
    path = write(
        tmp_path,
        "[diameter]\nwatchdog_interval = 12\nallowed_peers = ['a.example.net']\n"
        "[redis]\nurl = 'redis://db.example.net:6380/2'\n",
    )
    settings = load_settings(path, env={})
    assert settings.diameter_watchdog_interval == 12.0
    assert isinstance(settings.diameter_watchdog_interval, float)
    assert settings.diameter_allowed_peers == ("a.example.net",)
    assert settings.redis_url == "redis://db.example.net:6380/2"


def test_typed_overrides_are_checked_like_toml_values():
    settings = load_settings(
        env={}, overrides={"http_port": 9200, "diameter_allowed_peers": ["x.net"]}
    )
    assert settings.http_port == 9200
    assert settings.diameter_allowed_peers == ("x.net",)
    assert errors_of(overrides={"http_port": 9.5}) == [
        "--http-port: must be an integer from 1 to 65535, got 9.5"
    ]


def test_empty_toml_string_unsets_an_optional_setting(tmp_path):
    path = write(tmp_path, "[redis]\nurl = ''\n")
    assert load_settings(path, env={"OCS_REDIS_URL": ""}).redis_url is None


# --- one rule per setting ----------------------------------------------------------------


BAD_TOML = [
    ("[diameter]\nport = 'abc'", "diameter.port: must be an integer from 1 to 65535, got 'abc'"),
    ("[diameter]\nport = 0", "diameter.port: must be an integer from 1 to 65535, got 0"),
    ("[diameter]\nport = 65536", "diameter.port: must be an integer from 1 to 65535, got 65536"),
    ("[diameter]\nport = true", "diameter.port: must be an integer from 1 to 65535, got True"),
    ("[diameter]\nport = 3868.0", "diameter.port: must be an integer from 1 to 65535, got 3868.0"),
    ("[http]\nport = -1", "http.port: must be an integer from 1 to 65535, got -1"),
    (
        "[diameter]\nhost = 'not a host'",
        "diameter.host: must be an IP address or a host name, got 'not a host'",
    ),
    ("[http]\nhost = ''", "http.host: must be an IP address or a host name, got ''"),
    (
        "[diameter]\norigin_host = 'ocs_1.example'",
        "diameter.origin_host: must be a DiameterIdentity (an FQDN such as ocs.example.net), got 'ocs_1.example'",
    ),
    (
        "[diameter]\norigin_realm = 5",
        "diameter.origin_realm: must be a DiameterIdentity (an FQDN such as ocs.example.net), got 5",
    ),
    (
        "[diameter]\nproduct_name = '  '",
        "diameter.product_name: must be a non-empty string, got '  '",
    ),
    (
        "[diameter]\nvendor_id = 4294967296",
        "diameter.vendor_id: must be an integer from 0 to 4294967295, got 4294967296",
    ),
    (
        "[diameter]\nfirmware_revision = -1",
        "diameter.firmware_revision: must be an integer from 0 to 4294967295, got -1",
    ),
    (
        "[diameter]\nwatchdog_interval = 5.9",
        "diameter.watchdog_interval: must be a number of seconds, at least 6 (RFC 3539 Tw), got 5.9",
    ),
    (
        "[diameter]\nwatchdog_interval = nan",
        "diameter.watchdog_interval: must be a number of seconds, at least 6 (RFC 3539 Tw), got nan",
    ),
    (
        "[diameter]\nmax_message_size = 4095",
        "diameter.max_message_size: must be an integer from 4096 to 16777215, got 4095",
    ),
    (
        "[diameter]\nmax_message_size = 16777216",
        "diameter.max_message_size: must be an integer from 4096 to 16777215, got 16777216",
    ),
    (
        "[diameter]\nallowed_peers = 'a.net'",
        "diameter.allowed_peers: must be a list of DiameterIdentity names (FQDNs), got 'a.net'",
    ),
    (
        "[diameter]\nallowed_peers = ['a.net', 'b c']",
        "diameter.allowed_peers: must be a list of DiameterIdentity names (FQDNs), got 'b c'",
    ),
    (
        "[diameter]\nallowed_peers = ['a.net', 1]",
        "diameter.allowed_peers: must be a list of DiameterIdentity names (FQDNs), got ['a.net', 1]",
    ),
    (
        "[diameter]\nallowed_networks = ['10.0.0.1/8']",
        "diameter.allowed_networks: must be a list of IP networks in CIDR notation such as 10.0.0.0/8, got '10.0.0.1/8'",
    ),
    (
        "[diameter]\nallowed_networks = ['10.0.0.0/33']",
        "diameter.allowed_networks: must be a list of IP networks in CIDR notation such as 10.0.0.0/8, got '10.0.0.0/33'",
    ),
    (
        "[diameter]\ncer_timeout = 0",
        "diameter.cer_timeout: must be a number of seconds, greater than 0, got 0.0",
    ),
    (
        "[diameter]\ndpa_timeout = -1.5",
        "diameter.dpa_timeout: must be a number of seconds, greater than 0, got -1.5",
    ),
    (
        "[diameter]\ndpa_timeout = inf",
        "diameter.dpa_timeout: must be a number of seconds, greater than 0, got inf",
    ),
    (
        "[diameter]\nduplicate_cache_size = 0",
        "diameter.duplicate_cache_size: must be an integer from 1 to 100000000, got 0",
    ),
    (
        "[diameter]\nduplicate_ttl = 0",
        "diameter.duplicate_ttl: must be a number of seconds, greater than 0, got 0.0",
    ),
    (
        "[redis]\nurl = 'http://db:6379'",
        "redis.url: must be a redis://, rediss:// or unix:// URL, got 'http://db:6379'",
    ),
    (
        "[redis]\nurl = 'redis://db:notaport/0'",
        "redis.url: must be a redis://, rediss:// or unix:// URL, got 'redis://db:notaport/0'",
    ),
    (
        "[redis]\nurl = 'redis:///0'",
        "redis.url: must be a redis://, rediss:// or unix:// URL, got 'redis:///0'",
    ),
    (
        "[redis]\nurl = 'unix://'",
        "redis.url: must be a redis://, rediss:// or unix:// URL, got 'unix://'",
    ),
    ("[redis]\nurl = 7", "redis.url: must be a redis://, rediss:// or unix:// URL, got 7"),
    ("[redis]\ndata_dir = ''", "redis.data_dir: must be a non-empty path, got ''"),
    (
        "[log]\nlevel = 'TRACE'",
        "log.level: must be one of DEBUG, INFO, WARNING, ERROR, got 'TRACE'",
    ),
    ("[log]\nformat = 'xml'", "log.format: must be 'json' or 'text', got 'xml'"),
    ("[diameter]\nportt = 1", "diameter.portt: unknown key, did you mean diameter.port?"),
    ("[diameter]\nzzz = 1", "diameter.zzz: unknown key"),
    ("[diameterr]\nport = 1", "unknown section [diameterr], did you mean [diameter]?"),
    ("[zzz]\nport = 1", "unknown section [zzz]"),
    (
        "port = 1",
        "port: unknown top-level key; settings belong in sections ([diameter], [http], [redis], [charging], [records], [billing], [documents], [smtp], [delivery], [numbering], [api], [log], [metrics])",
    ),
    ("diameter = 1", "diameter: must be a table [diameter], got 1"),
    ("[diameter.peers]\nx = 1", "diameter.peers: unknown key"),
    ("[http]\nport = 3868", "http.port: must differ from diameter.port (both 3868)"),
    (
        "[numbering]\ncountry_code = '+49'",
        'numbering.country_code: must be a country code of 1 to 3 digits (such as "49"), '
        "or \"\", got '+49'",
    ),
    (
        "[numbering]\ncountry_code = '049'",
        'numbering.country_code: must be a country code of 1 to 3 digits (such as "49"), '
        "or \"\", got '049'",
    ),
    (
        "[numbering]\nnational_prefix = 'x'",
        "numbering.national_prefix: must be up to 4 digits, got 'x'",
    ),
    (
        "[numbering]\ninternational_prefix = '00000'",
        "numbering.international_prefix: must be up to 4 digits, got '00000'",
    ),
    (
        "[numbering]\nnational_prefix = '00'",
        "numbering.national_prefix: must differ from numbering.international_prefix (both '00')",
    ),
]


@pytest.mark.parametrize(("toml", "message"), BAD_TOML)
def test_each_bad_file_value_is_named_as_written(tmp_path, toml, message):
    path = write(tmp_path, toml + "\n")
    assert check_config(path) == [message]
    assert errors_of(config_file=path) == [message]


def test_valid_values_at_the_limits_are_accepted(tmp_path):
    path = write(
        tmp_path,
        "[diameter]\nport = 1\nwatchdog_interval = 6\nmax_message_size = 4096\n"
        "vendor_id = 4294967295\nhost = '::'\norigin_host = 'a'\n"
        "allowed_networks = ['192.0.2.0/24', '::1/128']\n"
        "[http]\nport = 65535\nhost = 'localhost'\n"
        "[redis]\nurl = 'unix:///run/redis.sock'\n",
    )
    assert check_config(path) == []
    settings = load_settings(path, env={})
    assert (settings.diameter_port, settings.http_port) == (1, 65535)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OCS_HTTP_PORT": "abc"}, "OCS_HTTP_PORT: must be an integer from 1 to 65535, got 'abc'"),
        ({"OCS_HTTP_PORT": ""}, "OCS_HTTP_PORT: must be an integer from 1 to 65535, got ''"),
        (
            {"OCS_HTTP_PORT": "1_000"},
            "OCS_HTTP_PORT: must be an integer from 1 to 65535, got '1_000'",
        ),
        (
            {"OCS_DIAMETER_CER_TIMEOUT": "soon"},
            "OCS_DIAMETER_CER_TIMEOUT: must be a number of seconds, greater than 0, got 'soon'",
        ),
        (
            {"OCS_DIAMETER_CER_TIMEOUT": "nan"},
            "OCS_DIAMETER_CER_TIMEOUT: must be a number of seconds, greater than 0, got nan",
        ),
        (
            {"OCS_DIAMETER_ALLOWED_NETWORKS": "10.0.0.0/8,bogus"},
            "OCS_DIAMETER_ALLOWED_NETWORKS: must be a list of IP networks in CIDR notation such as 10.0.0.0/8, got 'bogus'",
        ),
        ({"OCS_HTTP_PROT": "1"}, "OCS_HTTP_PROT: unknown setting, did you mean OCS_HTTP_PORT?"),
        ({"OCS_NOTHING_LIKE_IT": "1"}, "OCS_NOTHING_LIKE_IT: unknown setting"),
    ],
)
def test_each_bad_env_value_is_named_by_its_variable(env, message):
    assert errors_of(env=env) == [message]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"diameter_port": "70000"},
            "--diameter-port: must be an integer from 1 to 65535, got 70000",
        ),
        (
            {"log_level": "loud"},
            "--log-level: must be one of DEBUG, INFO, WARNING, ERROR, got 'loud'",
        ),
        ({"no_such_field": "1"}, "no_such_field: unknown setting"),
        ({"http_port": "3868"}, "--http-port: must differ from diameter.port (both 3868)"),
    ],
)
def test_each_bad_flag_value_is_named_by_its_flag(overrides, message):
    assert errors_of(overrides=overrides) == [message]


def test_cross_check_names_the_layers_that_set_the_values():
    errors = errors_of(env={"OCS_DIAMETER_PORT": "9000"}, overrides={"http_port": "9000"})
    assert errors == ["--http-port: must differ from OCS_DIAMETER_PORT (both 9000)"]


def test_all_problems_of_all_layers_are_reported_together(tmp_path):
    path = write(tmp_path, "[diameter]\nport = 'x'\nportt = 1\n[log]\nlevel = 'LOUD'\n")
    errors = errors_of(
        config_file=path,
        env={"OCS_HTTP_PORT": "x", "OCS_BOGUS": "1", "OCS_DIAMETER_PORT": "3868"},
        overrides={"diameter_cer_timeout": "-1"},
    )
    assert errors == [
        "diameter.port: must be an integer from 1 to 65535, got 'x'",
        "diameter.portt: unknown key, did you mean diameter.port?",
        "log.level: must be one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'",
        "OCS_BOGUS: unknown setting",
        "OCS_HTTP_PORT: must be an integer from 1 to 65535, got 'x'",
        "--diameter-cer-timeout: must be a number of seconds, greater than 0, got -1.0",
    ]


def test_bad_file_value_is_reported_even_when_env_overrides_it(tmp_path):
    path = write(tmp_path, "[diameter]\nport = 'x'\n")
    errors = errors_of(config_file=path, env={"OCS_DIAMETER_PORT": "3868"})
    assert errors == ["diameter.port: must be an integer from 1 to 65535, got 'x'"]


def test_config_error_message_lists_every_problem():
    error = ConfigError(["a: one", "b: two"])
    assert str(error) == "a: one\nb: two"
    assert error.errors == ["a: one", "b: two"]


# --- the file itself -----------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigFileError) as info:
        check_config(path)
    assert info.value.errors == [f"{path}: no such file"]
    assert errors_of(config_file=path) == [f"{path}: no such file"]


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigFileError) as info:
        check_config(tmp_path)
    assert info.value.errors == [f"{tmp_path}: is a directory, not a config file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path):
    path = write(tmp_path, "[http]\n")
    path.chmod(0)
    try:
        with pytest.raises(ConfigFileError) as info:
            check_config(path)
        assert info.value.errors == [f"{path}: cannot read: Permission denied"]
    finally:
        path.chmod(0o600)


def test_unopenable_path(tmp_path):
    path = tmp_path / ("x" * 300)  # longer than a file name may be
    with pytest.raises(ConfigFileError) as info:
        check_config(path)
    assert info.value.errors == [f"{path}: cannot read: File name too long"]


def test_not_toml_reports_the_line(tmp_path):
    path = write(tmp_path, "[diameter]\nport = 3868\nthis is not toml\n")
    with pytest.raises(ConfigFileError) as info:
        check_config(path)
    [message] = info.value.errors
    assert message.startswith(f"{path}: not valid TOML: ")
    assert "line 3" in message


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"[diameter]\norigin_host = '\xe9'\n")
    with pytest.raises(ConfigFileError) as info:
        check_config(path)
    [message] = info.value.errors
    assert message.startswith(f"{path}: not valid TOML: ")


def test_unusable_file_is_reported_with_the_env_problems(tmp_path):
    path = tmp_path / "absent.toml"
    errors = errors_of(config_file=path, env={"OCS_HTTP_PORT": "x"})
    assert errors == [
        f"{path}: no such file",
        "OCS_HTTP_PORT: must be an integer from 1 to 65535, got 'x'",
    ]


# --- secrets -----------------------------------------------------------------------------


def test_secret_is_read_from_env_and_file_but_never_shown(tmp_path):
    from_env = load_settings(env={"OCS_HTTP_METRICS_TOKEN": TOKEN})
    path = write(tmp_path, f"[http]\nmetrics_token = '{TOKEN}'\n")
    from_file = load_settings(path, env={})
    for settings in (from_env, from_file):
        assert settings.http_metrics_token == TOKEN
        assert TOKEN not in repr(settings)
        assert TOKEN not in str(settings)
        assert f"http_metrics_token={HIDDEN!r}" in repr(settings)
        assert settings.redacted()["http_metrics_token"] == HIDDEN


def test_unset_secret_shows_as_none():
    assert Settings().redacted()["http_metrics_token"] is None
    assert "http_metrics_token=None" in repr(Settings())


def test_redacted_has_every_field_and_hides_only_secrets():
    settings = Settings(http_metrics_token=TOKEN)
    redacted = settings.redacted()
    assert list(redacted) == [spec.name for spec in SPECS]
    for spec in SPECS:
        if spec.name != "http_metrics_token":
            assert redacted[spec.name] == getattr(settings, spec.name)


def test_bad_secret_is_reported_without_its_value(tmp_path):
    path = write(tmp_path, "[http]\nmetrics_token = 'short secret'\n")
    errors = errors_of(config_file=path, env={"OCS_HTTP_METRICS_TOKEN": "tiny"})
    assert errors == [
        f"http.metrics_token: must be at least 16 characters without whitespace, got {HIDDEN}",
        f"OCS_HTTP_METRICS_TOKEN: must be at least 16 characters without whitespace, got {HIDDEN}",
    ]
    assert not any("short secret" in e or "tiny" in e for e in errors)


def test_secret_cannot_be_given_as_a_flag():
    assert errors_of(overrides={"http_metrics_token": TOKEN}) == [
        "http_metrics_token: is a secret and cannot be given on the command line; "
        "set OCS_HTTP_METRICS_TOKEN or http.metrics_token in the config file"
    ]


def test_redis_password_is_masked_in_repr_and_errors(tmp_path):
    settings = load_settings(env={"OCS_REDIS_URL": "redis://app:pw123@db.example.net:6379/0"})
    assert settings.redis_url == "redis://app:pw123@db.example.net:6379/0"
    assert "pw123" not in repr(settings)
    assert settings.redacted()["redis_url"] == f"redis://app:{HIDDEN}@db.example.net:6379/0"
    path = write(tmp_path, "[redis]\nurl = 'http://:pw123@db'\n")
    [error] = check_config(path)
    assert "pw123" not in error and HIDDEN in error


def test_redis_password_refused_on_the_command_line():
    assert errors_of(overrides={"redis_url": "redis://:pw123@db/0"}) == [
        "--redis-url: do not put a password on the command line (visible in ps); "
        "set OCS_REDIS_URL or redis.url in the config file"
    ]
    url = "redis://db.example.net/0"
    assert load_settings(env={}, overrides={"redis_url": url}).redis_url == url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://db:6379/0", "redis://db:6379/0"),
        ("redis://:pw@db:6379/0", f"redis://:{HIDDEN}@db:6379/0"),
        (
            "rediss://user:p%40ss@db/1?ssl_cert_reqs=none",
            f"rediss://user:{HIDDEN}@db/1?ssl_cert_reqs=none",
        ),
        ("redis://user@db", "redis://user@db"),
        ("redis://[::1", "redis://[::1"),  # unparsable: shown as is, nothing to mask
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_float_defaults_are_floats():
    for spec in SPECS:
        if spec.kind == "float":
            assert isinstance(spec.default, float) and math.isfinite(spec.default)


# --- [charging] and the Redis TLS files -------------------------------------------------


def test_charging_defaults_are_the_engines():
    from quota_engine.charging.settings import EngineSettings

    engine = EngineSettings()
    settings = Settings()
    for field in dataclasses.fields(EngineSettings):
        assert getattr(settings, f"charging_{field.name}") == getattr(engine, field.name)


def test_booleans_are_toml_booleans_or_their_words_as_text(tmp_path):
    assert Settings().charging_tariff_time_change is True
    path = write(tmp_path, "[charging]\ntariff_time_change = false\n")
    assert load_settings(path, env={}).charging_tariff_time_change is False
    for text, value in [
        ("true", True),
        ("1", True),
        ("yes", True),
        (" YES ", True),
        ("False", False),
        ("0", False),
        ("no", False),
    ]:
        env = {"OCS_CHARGING_TARIFF_TIME_CHANGE": text}
        assert load_settings(path, env).charging_tariff_time_change is value, text
        overrides = {"charging_tariff_time_change": text}
        assert load_settings(env={}, overrides=overrides).charging_tariff_time_change is value
    overrides = {"charging_tariff_time_change": False}
    assert load_settings(env={}, overrides=overrides).charging_tariff_time_change is False


def test_a_bad_boolean_is_an_error_naming_the_setting(tmp_path):
    rule = "must be true or false (as text also 1/0, yes/no)"
    # TOML has booleans: a string or a number there is a mistake
    for text, got in [('"yes"', "'yes'"), ("1", "1")]:
        path = write(tmp_path, f"[charging]\ntariff_time_change = {text}\n")
        assert check_config(path) == [f"charging.tariff_time_change: {rule}, got {got}"]
    assert errors_of(env={"OCS_CHARGING_TARIFF_TIME_CHANGE": "maybe"}) == [
        f"OCS_CHARGING_TARIFF_TIME_CHANGE: {rule}, got 'maybe'"
    ]
    assert errors_of(overrides={"charging_tariff_time_change": "on"}) == [
        f"--charging-tariff-time-change: {rule}, got 'on'"
    ]
    assert errors_of(overrides={"charging_tariff_time_change": ""}) == [
        f"--charging-tariff-time-change: {rule}, got ''"
    ]


def test_optional_integers_are_unset_with_none_in_every_layer(tmp_path):
    path = write(
        tmp_path, '[charging]\nquota_threshold_percent = "none"\nquota_holding_time = 30\n'
    )
    settings = load_settings(path, env={})
    assert (settings.charging_quota_threshold_percent, settings.charging_quota_holding_time) == (
        None,
        30,
    )
    env = {"OCS_CHARGING_QUOTA_HOLDING_TIME": "none", "OCS_CHARGING_QUOTA_THRESHOLD_PERCENT": "5"}
    settings = load_settings(path, env)
    assert (settings.charging_quota_threshold_percent, settings.charging_quota_holding_time) == (
        5,
        None,
    )
    settings = load_settings(path, env, {"charging_quota_threshold_percent": "None"})
    assert settings.charging_quota_threshold_percent is None


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[charging]\nquota_threshold_percent = 101",
            'charging.quota_threshold_percent: must be an integer from 0 to 100, or "none", got 101',
        ),
        (
            '[charging]\nquota_holding_time = "soon"',
            "charging.quota_holding_time: must be an integer from 0 to 4294967295, "
            "or \"none\", got 'soon'",
        ),
        (
            "[charging]\nquota_threshold_percent = true",
            'charging.quota_threshold_percent: must be an integer from 0 to 100, or "none", '
            "got True",
        ),
        (
            "[charging]\nvalidity_time = 0",
            "charging.validity_time: must be an integer from 1 to 4294967295, got 0",
        ),
        (
            "[charging]\naccount_cache_ttl = -1",
            "charging.account_cache_ttl: must be a number of seconds, at least 0 (0: no cache), got -1.0",
        ),
        (
            "[charging]\nmax_batch = 0",
            "charging.max_batch: must be an integer from 1 to 100000, got 0",
        ),
        (
            "[charging]\nsweep_interval = 0",
            "charging.sweep_interval: must be a number of seconds, greater than 0, got 0.0",
        ),
        (
            "[charging]\nidentity_cache_size = 0",
            "charging.identity_cache_size: must be an integer from 1 to 100000000, got 0",
        ),
        (
            "[diameter]\nmax_inflight_batches = 0",
            "diameter.max_inflight_batches: must be an integer from 1 to 1000000, got 0",
        ),
        ("[charging]\ngrase = 1", "charging.grase: unknown key, did you mean charging.grace?"),
    ],
)
def test_bad_charging_values_are_named_as_written(tmp_path, toml, message):
    assert check_config(write(tmp_path, toml + "\n")) == [message]


def test_the_charging_env_vars_and_flags_are_typed():
    settings = load_settings(
        env={"OCS_CHARGING_IDENTITY_CACHE_TTL": "0", "OCS_CHARGING_DEFAULT_OCTETS": "1000"},
        overrides={"charging_max_batch": "64", "diameter_max_inflight_batches": "8"},
    )
    assert settings.charging_identity_cache_ttl == 0.0
    assert settings.charging_default_octets == 1000
    assert (settings.charging_max_batch, settings.diameter_max_inflight_batches) == (64, 8)


def test_tls_files_need_a_rediss_url_and_come_as_cert_and_key(tmp_path):
    assert errors_of(env={"OCS_REDIS_TLS_CA_FILE": "/etc/ca.pem"}) == [
        "OCS_REDIS_TLS_CA_FILE: needs a rediss:// redis.url (TLS)"
    ]
    path = write(
        tmp_path, '[redis]\nurl = "rediss://redis.example.net:6380/0"\ntls_cert_file = "c.pem"\n'
    )
    assert check_config(path) == ["redis.tls_cert_file: needs redis.tls_key_file too"]
    settings = load_settings(
        path, env={"OCS_REDIS_TLS_KEY_FILE": "k.pem", "OCS_REDIS_TLS_CA_FILE": "ca.pem"}
    )
    assert (
        settings.redis_tls_ca_file,
        settings.redis_tls_cert_file,
        settings.redis_tls_key_file,
    ) == ("ca.pem", "c.pem", "k.pem")


def test_numbering_settings_from_every_layer(tmp_path):
    path = write(tmp_path, "[numbering]\ncountry_code = '49'\nnational_prefix = ''\n")
    settings = load_settings(
        path,
        env={"OCS_NUMBERING_INTERNATIONAL_PREFIX": "011"},
        overrides={"numbering_country_code": "1"},
    )
    assert (
        settings.numbering_country_code,
        settings.numbering_national_prefix,
        settings.numbering_international_prefix,
    ) == ("1", "", "011")
    assert load_settings(env={"OCS_NUMBERING_COUNTRY_CODE": ""}).numbering_country_code == ""
