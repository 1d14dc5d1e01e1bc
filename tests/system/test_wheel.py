"""The wheel as a packager ships it: built from the source tree, installed into a fresh
venv, `ocs serve` run from outside the checkout (CER, one CCR-Initial, SIGTERM).

A plain ``python -m venv`` with ``pip install <wheel>`` (dependencies from the index)
is the honest check: nothing of the checkout or of the dev venv's editable install is on
that venv's path, so a module or data file missing from the wheel fails here.
The wheel is built from a copy of the tree so that a stale ``build/`` in the checkout
cannot slip files into it. About 45 s here: 20 s to build (Cython), 15 s for the venv and the install.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.charging import messages as m
from tests.helpers import ROOT, get_free_port, stop_process
from tests.protocol.reference_peer import ReferencePeer

pytestmark = pytest.mark.system

PACKAGES = ("cext", "protocol", "quota_engine", "ocs", "loadtest")
"""The top-level packages the wheel installs."""

NOT_IN_WHEEL = (".pyx", ".c")
"""Sources of the compiled modules: the sdist has the .pyx, the wheel only the .so."""

_BUILD_OUTPUT = shutil.ignore_patterns(".*", "*.egg-info", "__pycache__", "*.pyc", "*.so", "*.c")
_TOP_LEVEL_OUTPUT = {"build", "dist", "data"}
"""What a checkout holds besides its sources: venvs, caches, build output, `make run` data."""

_INSTALL_TIMEOUT = 300


@dataclass(frozen=True)
class InstalledWheel:
    wheel: Path
    expected: frozenset[str]
    """Every file of the packages in the tree the wheel was built from."""
    venv: Path
    workdir: Path
    """A directory outside the checkout, the cwd of every command run in the venv."""

    @property
    def bin(self) -> Path:
        return self.venv / "bin"


def clean_env() -> dict[str, str]:
    """This environment without the variables that could point Python at the checkout."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "OCS_")) and key != "VIRTUAL_ENV"
    }


def run(command: list[str | Path], cwd: Path, timeout: float = _INSTALL_TIMEOUT) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def not_source(directory: str, names: list[str]) -> set[str]:
    """For shutil.copytree: the names in ``directory`` that are not part of the sources."""
    ignored = set(_BUILD_OUTPUT(directory, names))
    if Path(directory) == ROOT:
        ignored |= _TOP_LEVEL_OUTPUT.intersection(names)
    return ignored


def package_files(tree: Path) -> frozenset[str]:
    """Paths, relative to ``tree``, of every file of the packages."""
    return frozenset(
        path.relative_to(tree).as_posix()
        for package in PACKAGES
        for path in (tree / package).rglob("*")
        if path.is_file()
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> InstalledWheel:
    """The wheel built from this checkout, installed into a fresh venv."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=not_source)
    expected = package_files(source)  # before the build adds generated C
    dist = base / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist, source], base)
    (wheel,) = dist.glob("ocs-*.whl")
    venv = base / "venv"
    run([sys.executable, "-m", "venv", venv], base)
    run([venv / "bin" / "python", "-m", "pip", "install", wheel], base)
    workdir = base / "run"
    workdir.mkdir()
    return InstalledWheel(wheel, expected, venv, workdir)


def test_wheel_holds_every_file_of_the_packages_and_no_generated_source(installed):
    with zipfile.ZipFile(installed.wheel) as archive:
        names = set(archive.namelist())
    expected = {name for name in installed.expected if not name.endswith(NOT_IN_WHEEL)}
    assert expected - names == set()
    assert any(name.endswith(".pyx") for name in installed.expected)  # the check can fail
    assert {name for name in names if name.endswith(NOT_IN_WHEEL)} == set()
    compiled = {name.split(".")[0] for name in names if name.endswith(".so")}
    assert compiled == {"cext/codec", "quota_engine/charging/rating"}
    dist_info = "-".join(installed.wheel.name.split("-")[:2]) + ".dist-info"
    assert f"{dist_info}/licenses/LICENSE" in names
    metadata = archive_text(installed.wheel, f"{dist_info}/METADATA")
    assert "License-Expression: Apache-2.0\n" in metadata
    assert 'Requires-Dist: PyYAML>=6; extra == "yaml"\n' in metadata


def archive_text(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(name).decode()


def test_the_venv_imports_the_installed_packages_not_the_checkout(installed):
    script = (
        "import ocs, cext.codec, quota_engine.charging.rating as rating, quota_engine.store.scripts as s;"
        "print(ocs.__file__); print(cext.codec.__file__); print(rating.__file__); print(s.LUA_DIR)"
    )
    printed = run([installed.bin / "python", "-c", script], installed.workdir).split()
    purelib = Path(
        run(
            [
                installed.bin / "python",
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            installed.workdir,
        ).strip()
    )
    assert purelib.is_relative_to(installed.venv)
    ocs_init, codec, rating, lua_dir = map(Path, printed)
    assert ocs_init == purelib / "ocs" / "__init__.py"
    assert codec.parent == purelib / "cext" and codec.suffix == ".so"
    assert rating.parent == purelib / "quota_engine" / "charging" and rating.suffix == ".so"
    assert lua_dir == purelib / "quota_engine" / "store" / "lua"
    assert (lua_dir / "ccr.lua").is_file()
    assert (purelib / "quota_engine" / "catalog" / "demo_catalog.toml").is_file()
    assert (purelib / "quota_engine" / "accounts" / "demo_data.toml").is_file()
    for package in PACKAGES:
        assert list((purelib / package).rglob("*.c")) == []
        assert list((purelib / package).rglob("*.pyx")) == []
    help_text = run([installed.bin / "ocs", "--help"], installed.workdir)
    assert "serve" in help_text
    # the billing migrations are package data too: the installed ocs creates the database
    migrated = run([installed.bin / "ocs", "billing", "migrate"], installed.workdir)
    assert "migrated from empty" in migrated
    assert (installed.workdir / "data" / "billing.db").is_file()


@pytest.fixture
def served(installed: InstalledWheel) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The venv's `ocs serve` on free ports, embedded Redis, cwd outside the checkout."""
    diameter_port, http_port = get_free_port(), get_free_port()
    process = subprocess.Popen(
        [
            installed.bin / "ocs",
            "serve",
            "--diameter-host=127.0.0.1",
            f"--diameter-port={diameter_port}",
            "--http-host=127.0.0.1",
            f"--http-port={http_port}",
            f"--redis-data-dir={installed.workdir / 'redis'}",
            "--diameter-origin-host=ocs.wheel.test",
            "--diameter-origin-realm=wheel.test",
        ],
        cwd=installed.workdir,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    while not (line := process.stdout.readline()).startswith("HTTP listening"):
        if not line:
            raise AssertionError(f"ocs serve exited early: {process.stderr.read()}")
    yield process, diameter_port
    stop_process(process)
    print(process.stderr.read())  # its log, shown when the test failed


async def test_installed_ocs_serve_charges_the_demo_subscriber_and_stops_on_sigterm(served):
    process, diameter_port = served
    peer = await ReferencePeer.connect("127.0.0.1", diameter_port)
    cea = await peer.open()
    assert cea.result_code == 2001
    assert cea.origin_host == b"ocs.wheel.test"
    answer = await peer.request(
        m.ccr(
            "pgw.test.net;wheel;1",
            subscriptions=(("msisdn", "491700000001"),),
            services=[m.mscc(10, requested=m.rsu(octets=m.MIB))],
        )
    )
    assert answer.result_code == 2001
    grant = m.mscc_by_group(answer)[10]
    assert grant.result_code == 2001
    assert grant.granted_service_unit.cc_total_octets == m.MIB
    process.send_signal(signal.SIGTERM)
    dpr = await peer.recv(timeout=10)
    assert dpr.header.command_code == 282 and dpr.header.is_request
    dpa = dpr.to_answer()
    dpa.result_code = 2001
    dpa.origin_host = b"pgw.test.net"
    dpa.origin_realm = b"test.net"
    await peer.send(dpa)
    assert await peer.wait_closed()
    assert await asyncio.to_thread(process.wait, 15) == 0
