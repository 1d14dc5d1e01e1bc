"""Bulk provisioning: many accounts as NDJSON, streamed.

One provisioning account entry (the body of ``POST /v1/accounts``) per line. The body is
read line by line and applied in chunks of :data:`CHUNK` entries through
:func:`quota_engine.accounts.provisioning.provision` (the code behind ``ocs provision``), so a
million-line upload holds one chunk in memory, never the whole body. A line that is not
JSON, breaks the schema or is refused by provisioning is reported with its line number
and skipped; the others are applied. Applying is idempotent, so an interrupted upload
can be sent again whole.

The answer, once the whole body is read, counts the outcomes and lists the first
:data:`MAX_ERRORS` bad lines. A line longer than :data:`MAX_LINE` bytes ends the upload
with 413 (the chunks before it are applied).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from quota_engine.accounts.provisioning import ProvisioningError, provision

from . import schema
from .accounts import require_catalog
from .common import check_body
from .context import Api, api_of
from .errors import ApiError, Problem, split_problem

CHUNK = 500
MAX_LINE = 256 * 1024
MAX_ERRORS = 1000
_ENTRY = re.compile(r"^accounts\[(\d+)\]\.?")


async def _lines(request: web.Request) -> AsyncIterator[bytes]:
    buffer = b""
    async for data in request.content.iter_any():
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if len(line) > MAX_LINE:
                raise ApiError(413, f"a line is longer than {MAX_LINE} bytes")
            yield line
        if len(buffer) > MAX_LINE:
            raise ApiError(413, f"a line is longer than {MAX_LINE} bytes")
    if buffer:
        yield buffer


class _Run:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.counts = {"created": 0, "updated": 0, "unchanged": 0, "kept": 0}
        self.lines = 0
        self.accounts = 0
        self.failed = 0
        self.errors: list[dict[str, Any]] = []

    def error(self, line: int, problems: list[Problem]) -> None:
        self.failed += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(
                {"line": line, "problems": [{"field": f, "message": m} for f, m in problems]}
            )

    def parse(self, line_no: int, raw: bytes) -> dict[str, Any] | None:
        try:
            entry = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            self.error(line_no, [("body", f"not valid JSON: {exc}")])
            return None
        try:
            checked: dict[str, Any] = check_body(schema.ACCOUNT_IN, entry)
            return checked
        except ApiError as exc:
            self.error(line_no, exc.fields)
            return None

    async def apply(self, chunk: list[tuple[int, dict[str, Any]]]) -> None:
        """Provision the chunk; entries refused are reported and the rest applied again."""
        while chunk:
            try:
                report = await provision(self.api.redis, {"accounts": [e for _, e in chunk]})
            except ProvisioningError as exc:
                bad: dict[int, list[Problem]] = {}
                for problem in exc.problems:
                    match = _ENTRY.match(problem)
                    if match is None:  # not about one entry: the whole chunk fails
                        for line_no, _ in chunk:
                            self.error(line_no, [split_problem(problem)])
                        return
                    index = int(match.group(1))
                    bad.setdefault(index, []).append(split_problem(problem[match.end() :]))
                for index in sorted(bad):
                    self.error(chunk[index][0], bad[index])
                chunk = [item for i, item in enumerate(chunk) if i not in bad]
                continue
            for account in report.accounts:
                self.counts[account.outcome] = self.counts.get(account.outcome, 0) + 1
            self.accounts += len(report.accounts)
            return

    def result(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "accounts": self.accounts,
            **self.counts,
            "failed": self.failed,
            "errors": self.errors,
            "errors_truncated": self.failed > len(self.errors),
        }


async def bulk_accounts(request: web.Request) -> web.Response:
    api = api_of(request)
    await require_catalog(api)
    run = _Run(api)
    chunk: list[tuple[int, dict[str, Any]]] = []
    async for raw in _lines(request):
        run.lines += 1
        if not raw.strip():
            continue
        entry = run.parse(run.lines, raw)
        if entry is not None:
            chunk.append((run.lines, entry))
        if len(chunk) >= CHUNK:
            await run.apply(chunk)
            chunk = []
    await run.apply(chunk)
    return web.json_response(run.result())
