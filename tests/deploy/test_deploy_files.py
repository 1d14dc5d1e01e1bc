"""The deployment files checked without Docker or systemd running (neither works on the
build machines: no Docker daemon, no image registry, systemd not PID 1):

* deploy/compose.yaml: valid against the Compose Specification's JSON schema
  (tests/deploy/compose-spec.json: schema/compose-spec.json of github.com/compose-spec/
  compose-spec at 170098ba07d9f53c383a41bfd4c5166b0a4529a6, Apache-2.0, the schema
  ``docker compose`` validates with), every host path it mounts exists, ports and health-check URLs
  are those the OCS serves by default (each health check's command is run against a
  real server), Prometheus scrapes the compose services by their names, Grafana's
  mounts are where its provisioning files say, no secret is written in the file;
* deploy/Dockerfile: non-root, a state volume, a HEALTHCHECK on a route the app
  serves, metadata labels; its .dockerignore keeps the venv, caches and env files out;
* deploy/systemd/: ``systemd-analyze verify`` and ``security --offline`` (exposure
  below 3, it was 9.2) and ``systemd-sysusers --dry-run`` when those binaries exist.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from ocs.api.app import create_app
from ocs.config import Settings
from ocs.metrics import Metrics
from tests.helpers import ROOT

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
DEFAULTS = tomllib.loads((ROOT / "ocs" / "default.toml").read_text())
HTTP_PORT = DEFAULTS["http"]["port"]
DIAMETER_PORT = DEFAULTS["diameter"]["port"]
_URL = re.compile(r"http://127\.0\.0\.1:(?P<port>[0-9]+|%s)(?P<path>/[a-z/-]*)")
_SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY$", re.IGNORECASE)
#: Exposure ``systemd-analyze security`` must stay below (0 safe .. 10 unsafe).
MAX_EXPOSURE = 3.0


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume entry (short syntax)."""
    found = []
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        found.append((source, target))
    return found


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    return [(DEPLOY / s, t) for s, t in mounts(service) if s.startswith((".", "/"))]


def health_command(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL"), test
    return test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]


def test_the_compose_file_is_valid_against_the_compose_specification(compose):
    # jsonschema-rs comes with schemathesis (the dev extra)
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    schema = json.loads((ROOT / "tests" / "deploy" / "compose-spec.json").read_text())
    validator = jsonschema_rs.validator_for(schema)
    problems = [f"{list(e.instance_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert not problems, problems
    misspelt = {**compose, "services": {**compose["services"], "ocs": {"restartt": "no"}}}
    assert not validator.is_valid(misspelt)  # the schema refuses unknown keys


def test_the_stack_has_its_services_with_health_checks_and_restart_policies(compose):
    found = services(compose)
    assert {"ocs", "redis", "prometheus", "grafana", "ocs-export"} <= found.keys()
    for name, service in found.items():
        assert "restart" in service, name
        if service["restart"] == "no":  # a one-shot job
            continue
        assert service["restart"] in ("unless-stopped", "always", "on-failure"), name
        assert health_command(service), name


def test_every_mounted_host_path_exists_and_named_volumes_are_declared(compose):
    declared = set(compose.get("volumes", {}))
    for name, service in services(compose).items():
        for source, target in mounts(service):
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name}: {source} is not in the repository"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
            assert target.startswith("/"), (name, target)
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert context == ROOT
            assert (context / build["dockerfile"]).resolve() == DOCKERFILE


def test_redis_keeps_an_append_only_file_on_a_named_volume(compose):
    redis = services(compose)["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert ("redis-data", "/data") in mounts(redis)
    assert services(compose)["ocs"]["environment"]["OCS_REDIS_URL"].startswith("redis://redis:")


def test_the_node_publishes_the_default_ports_and_keeps_its_state_on_a_volume(compose):
    ocs = services(compose)["ocs"]
    targets = {int(str(port).rsplit(":", 1)[1].split("/")[0]) for port in ocs["ports"]}
    assert targets == {DIAMETER_PORT, HTTP_PORT}
    volume = re.search(r'^VOLUME \["?([^"\]]+)', DOCKERFILE.read_text(), re.M)
    assert volume is not None
    assert ("ocs-state", volume.group(1)) in mounts(ocs)
    assert ("ocs-state", volume.group(1)) in mounts(services(compose)["ocs-export"])


def test_no_secret_is_written_in_the_compose_file(compose):
    for name, service in services(compose).items():
        environment = service.get("environment", {})
        for key, value in environment.items():
            if _SECRET_NAME.search(key):
                raise AssertionError(f"{name}: {key}={value!r} belongs in an env file")
        for env_file in service.get("env_file", []):
            path = env_file["path"] if isinstance(env_file, dict) else env_file
            assert path.endswith(".env"), (name, path)
            # an example to copy, and the copy ignored by git and by the image build
            assert (DEPLOY / f"{path}.example").is_file(), (name, path)
            ignored = subprocess.run(
                ["git", "check-ignore", "-q", str(DEPLOY / path)], cwd=ROOT, check=False
            )
            assert ignored.returncode == 0, f"{path} is not ignored by git"
    assert "**/*.env" in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()


def test_prometheus_loads_the_rules_and_scrapes_the_services_by_name(compose):
    prometheus = services(compose)["prometheus"]
    binds = dict((t, s) for s, t in bind_mounts(prometheus))
    config_path = binds["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_path.read_text())
    # every rule file pattern, relative to the config file, finds files through a mount
    for pattern in config["rule_files"]:
        container = os.path.normpath(os.path.join("/etc/prometheus", pattern))
        base = next(t for t in binds if container.startswith(t + "/"))
        host = str(binds[base]) + container[len(base) :]
        assert glob.glob(host), f"rule_files {pattern} matches nothing in {binds[base]}"

    def names(service_name: str) -> set[str]:
        service = services(compose)[service_name]
        aliases = service.get("networks", {}).get("default", {}) or {}
        return {service_name, *aliases.get("aliases", [])}

    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    expected = {"ocs": HTTP_PORT, "ocs-export": Settings().records_export_metrics_port}
    for job_name, port in expected.items():
        targets = [t for c in jobs[job_name]["static_configs"] for t in c["targets"]]
        assert any(
            target.rsplit(":", 1)[0] in names(job_name) and int(target.rsplit(":", 1)[1]) == port
            for target in targets
        ), f"job {job_name}: none of {targets} is the compose service {names(job_name)}:{port}"


def test_grafana_mounts_are_where_its_provisioning_files_look(compose):
    grafana = services(compose)["grafana"]
    binds = {t: s for s, t in bind_mounts(grafana)}
    provisioning = binds["/etc/grafana/provisioning"]
    assert list((provisioning / "datasources").glob("*.yaml"))
    for provider_file in (provisioning / "dashboards").glob("*.yaml"):
        for provider in yaml.safe_load(provider_file.read_text())["providers"]:
            path = provider["options"]["path"]
            assert path in binds, f"{provider_file.name}: {path} is not mounted"
            assert list(binds[path].glob("*.json")), f"no dashboard in {binds[path]}"
    for datasource_file in (provisioning / "datasources").glob("*.yaml"):
        for datasource in yaml.safe_load(datasource_file.read_text())["datasources"]:
            host_port = datasource["url"].split("://", 1)[1].rstrip("/")
            host, port = host_port.split(":")
            assert host in services(compose), datasource["url"]
            assert port == "9090"  # Prometheus's port in the prometheus service


def test_the_provision_job_finds_the_demo_document(compose):
    """The one-shot job's shell command (compose's ``$$`` is a ``$``), run with ``echo``
    for ``ocs``: it names the demo document the wheel ships."""
    command = services(compose)["provision"]["command"][0].replace("$$", "$")
    assert command.startswith("exec ocs provision ")
    bin_dir = Path(sys.executable).parent
    out = subprocess.run(
        ["sh", "-c", command.replace("exec ocs provision", "exec echo", 1)],
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(out).is_file() and out.endswith("demo_data.toml"), out


# -- the Dockerfile --------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return [tuple(line.split(None, 1)) for line in lines[last_from:]]  # type: ignore[misc]


def test_the_image_runs_as_a_non_root_user_with_a_volume_and_labels():
    instructions = dockerfile_instructions()
    kinds = [kind for kind, _ in instructions]
    users = [args for kind, args in instructions if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "VOLUME" in kinds and "HEALTHCHECK" in kinds
    labels = " ".join(args for kind, args in instructions if kind == "LABEL")
    for key in ("title", "description", "licenses", "version"):
        assert f"org.opencontainers.image.{key}=" in labels
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for entry in (".git", ".venv", "**/*.so", "build"):
        assert entry in ignore


def dockerfile_health_command() -> list[str]:
    args = next(args for kind, args in dockerfile_instructions() if kind == "HEALTHCHECK")
    command = args.split(" CMD ", 1)[1].strip()
    parsed = yaml.safe_load(command)  # the exec form is a JSON array
    assert isinstance(parsed, list)
    return parsed


async def run_health_check(command: list[str], env: dict[str, str]) -> int:
    executable = sys.executable if command[0] == "python" else command[0]
    process = await asyncio.create_subprocess_exec(
        executable, *command[1:], env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return await process.wait()


async def test_the_health_checks_pass_against_the_app_and_fail_without_it(compose):
    """The image's HEALTHCHECK (port from OCS_HTTP_PORT) and the compose service's (the
    default port, moved here to the test server's) exit 0 against the real app's
    /livez and non-zero when nothing answers."""
    image = dockerfile_health_command()
    service = health_command(services(compose)["ocs"])
    for command in (image, service):
        match = _URL.search(" ".join(command))
        assert match is not None, command
        assert match["path"] == "/livez"
        assert match["port"] in (str(HTTP_PORT), "%s")

    async def ready() -> dict[str, bool]:
        return {"redis": True}

    app = create_app(Settings(), Metrics(process=False), ready)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        moved = [part.replace(f":{HTTP_PORT}/", f":{port}/") for part in service]
        assert await run_health_check(image, {"OCS_HTTP_PORT": str(port)}) == 0
        assert await run_health_check(moved, {}) == 0
    finally:
        await runner.cleanup()
    assert await run_health_check(image, {"OCS_HTTP_PORT": str(port)}) != 0
    assert await run_health_check(moved, {}) != 0


def test_the_exporter_health_check_names_its_port_and_route(compose):
    command = " ".join(health_command(services(compose)["ocs-export"]))
    match = _URL.search(command)
    assert match is not None
    assert int(match["port"]) == Settings().records_export_metrics_port
    assert f'add_get("{match["path"]}"' in (ROOT / "ocs" / "records" / "service.py").read_text()


# -- systemd ---------------------------------------------------------------------------

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (Debian package systemd): units not verified",
)


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_verifies_clean(unit: Path, tmp_path: Path):
    """``systemd-analyze verify`` prints nothing (an unknown or misspelt directive is a
    warning on stderr); ExecStart points at /opt/ocs, which this machine lacks, so the
    copy verified runs /bin/true instead."""
    text = unit.read_text()
    exec_start = re.search(r"^ExecStart=(\S+)", text, re.M)
    assert exec_start is not None and exec_start.group(1) == "/opt/ocs/.venv/bin/ocs"
    copy = tmp_path / unit.name
    copy.write_text(text.replace(exec_start.group(1), shutil.which("true") or "/bin/true"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_exposure_is_low(unit: Path):
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match.group(1)) < MAX_EXPOSURE, result.stdout


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_runs_as_the_system_user_in_its_state_directory(unit: Path):
    settings = dict(
        line.split("=", 1) for line in unit.read_text().splitlines() if "=" in line
        and not line.startswith("#")
    )  # fmt: skip
    assert settings["User"] == "ocs"
    assert settings["StateDirectory"] == "ocs"
    assert settings["WorkingDirectory"] == "/var/lib/ocs"
    assert settings["CapabilityBoundingSet"] == ""
    sysusers = (DEPLOY / "systemd" / "ocs.sysusers").read_text()
    assert re.search(r"^u ocs - .* /var/lib/ocs", sysusers, re.M)


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers missing")
def test_sysusers_file_creates_the_user(tmp_path: Path):
    (tmp_path / "etc").mkdir()
    result = subprocess.run(
        ["systemd-sysusers", "--dry-run", f"--root={tmp_path}",
         str(DEPLOY / "systemd" / "ocs.sysusers")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Creating user 'ocs'" in result.stdout + result.stderr
