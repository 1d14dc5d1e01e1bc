"""A small synchronous client of the management API, for the ``ocs`` client commands.

Standard library only (``urllib``): one request per call, JSON in and out, the bearer
token in the ``Authorization`` header. Errors: :class:`ApiRefused` when the API answers
4xx/5xx (with its message and fields), :class:`ApiUnreachable` when it cannot be asked.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

__all__ = ["ApiClient", "ApiRefused", "ApiUnreachable"]


class ApiUnreachable(Exception):
    """The API could not be reached (connection refused, DNS, timeout, not HTTP)."""


class ApiRefused(Exception):
    """The API answered an error: ``status``, ``message`` and ``fields`` [(field, message)]."""

    def __init__(self, status: int, message: str, fields: list[tuple[str, str]]) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.fields = fields


class ApiClient:
    def __init__(self, base_url: str, token: str | None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def url(self, path: str) -> str:
        return self.base_url + path

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """``(status, JSON body or None, headers)``; raises on errors (see the module doc)."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.url(path), data=data, headers=all_headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, _json(response.read()), dict(response.headers)
        except urllib.error.HTTPError as error:
            raise _refused(error) from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise ApiUnreachable(f"cannot reach the API at {self.base_url}: {reason}") from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)[1]

    @staticmethod
    def quote(value: str) -> str:
        return urllib.parse.quote(value, safe="")


def _json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _refused(error: urllib.error.HTTPError) -> ApiRefused:
    body = _json(error.read()) or {}
    detail = body.get("error", {}) if isinstance(body, dict) else {}
    message = detail.get("message") or error.reason or "error"
    fields = [(f.get("field", "?"), f.get("message", "")) for f in detail.get("fields", [])]
    return ApiRefused(error.code, str(message), fields)
