"""The OCS's command line, run as a subprocess: ``ocs provision`` and ``ocs account show``.

The load generator never imports the OCS (DESIGN.md's import rules); it provisions its
test subscribers by writing a provisioning document (docs/provisioning.md) and running
``ocs provision`` on it, and reads balances with ``ocs account show ID --json``.

Which ``ocs``: ``--ocs-command`` if given, else the ``ocs`` script next to this
Python (the same virtual environment), else ``python -m ocs`` with this Python. Which Redis: the commands find it as ``ocs serve`` does
(``--redis-url``, ``OCS_REDIS_URL``, ``redis.url`` of ``--ocs-config``, else the private
Redis of ``--redis-data-dir`` that a running ``ocs serve`` holds); the load generator
passes its ``--redis-url``, ``--redis-data-dir`` and ``--ocs-config`` through.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .scenario import Subscribers

__all__ = ["OcsCli", "OcsCliError", "provisioning_document"]


class OcsCliError(RuntimeError):
    """An ``ocs`` command failed; the message carries its output."""


def default_command() -> list[str]:
    """The ``ocs`` script of this Python's environment, else ``python -m ocs``.

    Not ``ocs`` from the PATH: another program may have that name.
    """
    beside = Path(sys.executable).with_name("ocs")
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-m", "ocs"]


@dataclass(frozen=True)
class OcsCli:
    command: tuple[str, ...] = ()
    redis_url: str | None = None
    redis_data_dir: str | None = None
    config: str | None = None
    timeout: float = 600.0

    @classmethod
    def build(
        cls,
        command: str | Sequence[str] | None = None,
        redis_url: str | None = None,
        redis_data_dir: str | None = None,
        config: str | None = None,
    ) -> OcsCli:
        if isinstance(command, str):
            argv = shlex.split(command)
        elif command:
            argv = list(command)
        else:
            argv = default_command()
        return cls(tuple(argv), redis_url, redis_data_dir, config)

    def _options(self) -> list[str]:
        options = []
        if self.config:
            options += ["--config", self.config]
        if self.redis_url:
            options += ["--redis-url", self.redis_url]
        if self.redis_data_dir:
            options += ["--redis-data-dir", self.redis_data_dir]
        return options

    def argv(self, *args: str) -> list[str]:
        return [*self.command, *args, *self._options()]

    def provision(self, path: str | Path) -> str:
        """Run ``ocs provision FILE``; its output, or :class:`OcsCliError`."""
        argv = self.argv("provision", str(path))
        done = self._run(argv)
        if done.returncode != 0:
            raise OcsCliError(
                f"{shlex.join(argv)} exited {done.returncode}:\n{done.stderr.strip() or done.stdout.strip()}"
            )
        output: str = done.stdout
        return output

    def account_show(self, account_id: str) -> dict[str, Any]:
        """``ocs account show ID --json`` as a dict."""
        argv = self.argv("account", "show", account_id, "--json")
        return _parse_account(argv, self._run(argv))

    async def account_show_async(self, account_id: str) -> dict[str, Any]:
        argv = self.argv("account", "show", account_id, "--json")
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), self.timeout)
        assert process.returncode is not None  # communicate() returns once it exited
        done = subprocess.CompletedProcess(
            argv,
            process.returncode,
            stdout.decode(errors="replace"),
            stderr.decode(errors="replace"),
        )
        return _parse_account(argv, done)

    def accounts_show(
        self, account_ids: Sequence[str], parallel: int = 2
    ) -> dict[str, dict[str, Any]]:
        """Several ``account show`` at a time (each is a Python process start)."""

        async def all_of() -> dict[str, dict[str, Any]]:
            semaphore = asyncio.Semaphore(parallel)

            async def one(account_id: str) -> tuple[str, dict[str, Any]]:
                async with semaphore:
                    return account_id, await self.account_show_async(account_id)

            return dict(await asyncio.gather(*(one(a) for a in account_ids)))

        return asyncio.run(all_of())

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except FileNotFoundError:
            raise OcsCliError(f"cannot run {argv[0]!r}: not found (see --ocs-command)") from None
        except subprocess.TimeoutExpired:
            raise OcsCliError(f"{shlex.join(argv)} did not finish in {self.timeout:g} s") from None


def _parse_account(argv: list[str], done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    if done.returncode != 0:
        raise OcsCliError(
            f"{shlex.join(argv)} exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}"
        )
    try:
        document = json.loads(done.stdout)
    except ValueError:
        raise OcsCliError(f"{shlex.join(argv)} printed no JSON: {done.stdout[:200]!r}") from None
    if not isinstance(document, dict):
        raise OcsCliError(f"{shlex.join(argv)} printed {type(document).__name__}, not an object")
    return document


def provisioning_document(subscribers: Subscribers, replace_balance: bool = True) -> dict[str, Any]:
    """The provisioning document (docs/provisioning.md) of the test subscribers: one
    account per subscriber with its MSISDN and a ``main`` money bucket of ``balance``
    (``replace = true``: every run starts from the same balance)."""
    accounts = []
    for index in range(subscribers.count):
        account: dict[str, Any] = {
            "id": subscribers.account_id(index),
            "kind": subscribers.kind,
            "currency": subscribers.currency,
            "plan": subscribers.plan,
            "subscriptions": [f"msisdn:{subscribers.msisdn(index)}"],
            "buckets": [
                {
                    "id": "main",
                    "kind": "money",
                    "amount": subscribers.balance,
                    "replace": replace_balance,
                }
            ],
        }
        if subscribers.kind == "postpaid":
            account["credit_limit"] = subscribers.balance
            account["buckets"][0]["amount"] = 0
        accounts.append(account)
    return {"accounts": accounts}


def write_provisioning_document(
    subscribers: Subscribers, path: str | Path, replace_balance: bool = True
) -> Path:
    path = Path(path)
    path.write_text(json.dumps(provisioning_document(subscribers, replace_balance), indent=1))
    return path
