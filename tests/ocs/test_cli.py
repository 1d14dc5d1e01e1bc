"""ocs.cli: serve (with a recording runner) and check-config, in-process and as `python -m ocs`."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ocs.cli import main
from ocs.config import SPECS, Settings
from tests.helpers import ROOT

TOKEN = "metrics-token-0123456789"


class Recorder:
    """Stands in for ocs.service.run: records the settings, returns an exit code."""

    def __init__(self, exit_code: int = 0) -> None:
        self.exit_code = exit_code
        self.calls: list[Settings] = []

    def __call__(self, settings: Settings) -> int:
        self.calls.append(settings)
        return self.exit_code


@pytest.fixture(autouse=True)
def _restore_logging():
    """serve configures the root logger; undo it after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ocs.toml"
    path.write_text(text)
    return path


# --- serve -------------------------------------------------------------------------------


def test_serve_passes_the_merged_settings_to_the_runner(tmp_path):
    path = write(tmp_path, "[diameter]\nport = 3001\norigin_host = 'file.example.net'\n")
    runner = Recorder(exit_code=7)
    code = main(
        ["serve", "--config", str(path), "--diameter-port", "3003", "--log-format", "text"],
        env={"OCS_DIAMETER_ORIGIN_HOST": "env.example.net", "OCS_HTTP_PORT": "9000"},
        runner=runner,
    )
    assert code == 7
    [settings] = runner.calls
    assert settings.diameter_port == 3003
    assert settings.diameter_origin_host == "env.example.net"
    assert settings.http_port == 9000
    assert settings.log_format == "text"


def test_serve_reads_the_config_file_named_by_ocs_config(tmp_path):
    path = write(tmp_path, "[http]\nport = 9100\n")
    runner = Recorder()
    assert main(["serve"], env={"OCS_CONFIG": str(path)}, runner=runner) == 0
    assert runner.calls[0].http_port == 9100


def test_serve_config_flag_beats_ocs_config(tmp_path):
    flag_file = write(tmp_path, "[http]\nport = 9100\n")
    runner = Recorder()
    main(
        ["serve", "--config", str(flag_file)],
        env={"OCS_CONFIG": str(tmp_path / "absent.toml")},
        runner=runner,
    )
    assert runner.calls[0].http_port == 9100


def test_serve_without_any_config_uses_defaults():
    runner = Recorder()
    assert main(["serve"], env={}, runner=runner) == 0
    assert runner.calls == [Settings()]


def test_serve_flags_cover_every_non_secret_setting_and_parse_like_env():
    runner = Recorder()
    argv = [
        "serve",
        "--diameter-allowed-peers",
        "a.example.net,b.example.net",
        "--diameter-watchdog-interval",
        "12.5",
        "--redis-url",
        "redis://db.example.net/1",
    ]
    assert main(argv, env={}, runner=runner) == 0
    settings = runner.calls[0]
    assert settings.diameter_allowed_peers == ("a.example.net", "b.example.net")
    assert settings.diameter_watchdog_interval == 12.5
    assert settings.redis_url == "redis://db.example.net/1"


def test_serve_has_one_flag_per_non_secret_setting(capsys):
    assert main(["serve", "--help"]) == 0
    help_text = capsys.readouterr().out
    for spec in SPECS:
        flag = "--" + spec.name.replace("_", "-")
        assert (flag in help_text) is not spec.secret, flag
        assert spec.flag == (None if spec.secret else flag)


def test_serve_has_no_flag_for_secrets(capsys):
    runner = Recorder()
    assert main(["serve", "--http-metrics-token", TOKEN], env={}, runner=runner) == 2
    assert "unrecognized arguments: --http-metrics-token" in capsys.readouterr().err
    assert runner.calls == []


def test_serve_takes_secrets_from_env_and_never_logs_them(capsys):
    runner = Recorder()
    assert main(["serve"], env={"OCS_HTTP_METRICS_TOKEN": TOKEN}, runner=runner) == 0
    assert runner.calls[0].http_metrics_token == TOKEN
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if '"config_loaded"' in line]
    event = json.loads(line)
    assert event["settings"]["http_metrics_token"] == "<hidden>"
    assert TOKEN not in err


def test_serve_warns_once_about_kubernetes_service_links_and_starts(capsys):
    env = {"OCS_PORT": "tcp://10.96.0.12:3868", "OCS_SERVICE_HOST": "10.96.0.12"}
    runner = Recorder()
    assert main(["serve"], env={**env, "OCS_HTTP_PORT": "9090"}, runner=runner) == 0
    assert runner.calls[0].http_port == 9090
    [line] = [line for line in capsys.readouterr().err.splitlines() if '"env_ignored"' in line]
    event = json.loads(line)
    assert event["level"] == "WARNING"
    assert event["variables"] == ["OCS_PORT", "OCS_SERVICE_HOST"]


def test_serve_without_service_links_does_not_warn(capsys):
    assert main(["serve"], env={"OCS_HTTP_PORT": "9090"}, runner=Recorder()) == 0
    assert "env_ignored" not in capsys.readouterr().err


def test_serve_logs_in_the_configured_format(capsys):
    main(["serve", "--log-format", "text", "--log-level", "warning"], env={}, runner=Recorder())
    assert "config_loaded" not in capsys.readouterr().err  # INFO filtered at WARNING


def test_serve_bad_config_prints_every_problem_and_exits_2(tmp_path, capsys):
    path = write(tmp_path, "[diameter]\nport = 'abc'\n[diameterr]\n")
    runner = Recorder()
    code = main(
        ["serve", "--config", str(path), "--http-port", "0"],
        env={"OCS_LOG_LEVEL": "LOUD"},
        runner=runner,
    )
    assert code == 2
    assert runner.calls == []
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "ocs serve: invalid configuration (4 problems):",
        "  diameter.port: must be an integer from 1 to 65535, got 'abc'",
        "  unknown section [diameterr], did you mean [diameter]?",
        "  OCS_LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'",
        "  --http-port: must be an integer from 1 to 65535, got 0",
    ]


def test_serve_missing_config_file_exits_2(tmp_path, capsys):
    path = tmp_path / "absent.toml"
    assert main(["serve", "--config", str(path)], env={}, runner=Recorder()) == 2
    assert f"{path}: no such file" in capsys.readouterr().err


def test_serve_interrupted_exits_130():
    def interrupted(settings: Settings) -> int:
        raise KeyboardInterrupt

    assert main(["serve"], env={}, runner=interrupted) == 130


# --- check-config ------------------------------------------------------------------------


def test_check_config_ok(tmp_path, capsys):
    path = write(tmp_path, "[diameter]\nport = 3868\n")
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out == f"OK: {path}\n"


def test_check_config_ignores_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OCS_HTTP_PORT", "not-a-port")
    path = write(tmp_path, "")
    assert main(["check-config", str(path)]) == 0


def test_check_config_problems_exit_1_one_per_line(tmp_path, capsys):
    path = write(tmp_path, "[diameter]\nport = 0\nportt = 1\n[log]\nformat = 'xml'\n")
    assert main(["check-config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}: diameter.port: must be an integer from 1 to 65535, got 0",
        f"{path}: diameter.portt: unknown key, did you mean diameter.port?",
        f"{path}: log.format: must be 'json' or 'text', got 'xml'",
    ]


def test_check_config_missing_file_exits_2(tmp_path, capsys):
    path = tmp_path / "absent.toml"
    assert main(["check-config", str(path)]) == 2
    assert capsys.readouterr().err == f"{path}: no such file\n"


def test_check_config_not_toml_exits_2_with_the_line(tmp_path, capsys):
    path = write(tmp_path, "[diameter]\nport = = 1\n")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: not valid TOML: ")
    assert "line 2" in err


# --- usage --------------------------------------------------------------------------------


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "a command is required" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["launch"]) == 2
    assert "invalid choice: 'launch'" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--diameter-port N" in out and "OCS_DIAMETER_PORT" in out
    assert "--http-metrics-token" not in out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("ocs ")


# --- as a real process ----------------------------------------------------------------------


def run_module(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OCS_")}
    return subprocess.run(
        [sys.executable, "-m", "ocs", *args],
        env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_python_m_ocs_check_config(tmp_path):
    good = write(tmp_path, "[http]\nport = 9000\n")
    result = run_module("check-config", str(good))
    assert (result.returncode, result.stdout) == (0, f"OK: {good}\n")
    good.write_text("[http]\nport = 'x'\n")
    result = run_module("check-config", str(good))
    assert result.returncode == 1
    assert result.stderr == f"{good}: http.port: must be an integer from 1 to 65535, got 'x'\n"


def test_python_m_ocs_serve_with_bad_env_exits_2_before_starting():
    result = run_module("serve", env={"OCS_DIAMETER_PORT": "x"})
    assert result.returncode == 2
    assert "OCS_DIAMETER_PORT: must be an integer from 1 to 65535, got 'x'" in result.stderr
