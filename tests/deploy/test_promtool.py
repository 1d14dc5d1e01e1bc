"""``promtool check rules`` and ``promtool test rules`` on deploy/prometheus: the rule
files are valid, and each alert fires on the series of one unit test and stays silent
on another's (deploy/prometheus/tests/*.test.yml). promtool comes with Debian's
``prometheus`` package, which .ci/run installs."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.helpers import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus; .ci/run does)"
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )


def test_promtool_checks_the_rule_files():
    files = sorted(str(p.relative_to(PROMETHEUS)) for p in (PROMETHEUS / "rules").glob("*.yml"))
    result = promtool("check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files)


def test_promtool_checks_the_prometheus_config():
    result = promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass():
    files = sorted(
        str(p.relative_to(PROMETHEUS)) for p in (PROMETHEUS / "tests").glob("*.test.yml")
    )
    assert len(files) == 5
    result = promtool("test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_would_see_a_wrong_threshold(tmp_path):
    """The unit tests are not vacuous: with the error-ratio threshold raised above the
    test's 10 %, the test expecting the alert fails."""
    rules = (PROMETHEUS / "rules" / "ocs-diameter.yml").read_text()
    assert "ratio_rate5m > 0.05\n" in rules
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "rules" / "ocs-diameter.yml").write_text(
        rules.replace("ratio_rate5m > 0.05\n", "ratio_rate5m > 0.2\n", 1)
    )
    test = (PROMETHEUS / "tests" / "ocs-diameter.test.yml").read_text()
    (tmp_path / "tests" / "ocs-diameter.test.yml").write_text(test)
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "test", "rules", "tests/ocs-diameter.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "OCSDiameterErrorRatioHigh" in result.stdout + result.stderr
