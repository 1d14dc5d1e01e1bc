"""ocs-loadtest's command line: options, exit codes, the JSON report."""

from __future__ import annotations

import json

import pytest

from loadtest.cli import _checked_accounts, build_parser, main
from loadtest.scenario import DEFAULT_SCENARIO
from tests.loadtest.echo_server import EchoApplication, ThreadedServer


def test_help_and_usage_errors_exit_with_argparse_codes(capsys):
    assert main(["--help"]) == 0
    assert main(["run", "--rate", "-5"]) == 2
    assert main([]) == 2
    assert "a command is required" in capsys.readouterr().err


def test_target_parses_host_and_port():
    args = build_parser().parse_args(["run", "--target", "10.0.0.1:3870"])
    assert args.target == ("10.0.0.1", 3870)
    args = build_parser().parse_args(
        ["capture", "--listen", "3869", "--forward", "ocs:3868", "--out", "x"]
    )
    assert args.listen == ("127.0.0.1", 3869) and args.forward == ("ocs", 3868)


def test_a_bad_scenario_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[mix]\nfax = 1\n")
    assert main(["run", "--scenario", str(path)]) == 2
    assert "mix.fax: unknown service" in capsys.readouterr().err


def test_checked_accounts_spread_over_the_subscribers():
    assert _checked_accounts(DEFAULT_SCENARIO, "none") == []
    four = _checked_accounts(DEFAULT_SCENARIO, "4")
    assert four == ["loadtest-000000", "loadtest-000250", "loadtest-000500", "loadtest-000750"]
    assert len(_checked_accounts(DEFAULT_SCENARIO, "all")) == 1000
    with pytest.raises(ValueError):
        _checked_accounts(DEFAULT_SCENARIO, "some")


def run_args(port: int, *extra: str) -> list[str]:
    return [
        "run", "--target", f"127.0.0.1:{port}", "--rate", "40", "--duration", "1",
        "--no-provision", "--money-check", "none", "--quiet", "--subscribers", "5", *extra,
    ]  # fmt: skip


def test_run_writes_the_report_and_passes(tmp_path, capsys):
    out = tmp_path / "report.json"
    with ThreadedServer(EchoApplication(grant=10**9)) as server:
        assert main(run_args(server.port, "--json", str(out))) == 0
    text = capsys.readouterr().out
    assert "latency from the scheduled send time" in text and "verdict: PASS" in text
    report = json.loads(out.read_text())
    assert report["requests"] == 40 and report["errors"] == 0
    assert report["config"]["scenario"]["mix"] == {"data": 70, "voice": 20, "sms": 10}
    assert {"p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms"} <= set(report["latency"])
    assert report["series"][0]["second"] == 0


def test_other_result_codes_fail_the_run_unless_accepted(capsys):
    with ThreadedServer(EchoApplication(result_code=5012)) as server:
        assert main(run_args(server.port)) == 1
        assert "verdict: FAIL" in capsys.readouterr().out
        assert main(run_args(server.port, "--accept-result-code", "5012")) == 0


def test_find_max_runs_steps_and_reports_the_best(tmp_path, capsys):
    out = tmp_path / "search.json"
    with ThreadedServer(EchoApplication(grant=10**9)) as server:
        code = main(
            run_args(server.port, "--find-max", "--start-rate", "20", "--max-rate", "40",
                     "--step-duration", "1", "--steps", "2", "--pause", "0",
                     "--p99-ms", "1000", "--json", str(out))
        )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "find-max: highest rate holding p99 <= 1000 ms with no errors: 40 CCR/s" in text
    report = json.loads(out.read_text())
    assert [s["rate"] for s in report["find_max"]["steps"]] == [20, 40]
    assert len(report["steps"]) == 2
