"""How the HTTP server is run: request-line and header limits, and its log.

aiohttp parses the request line and headers before any handler or middleware runs, and
answers what it cannot parse itself (400, plain text) while logging the parse error at
ERROR with a traceback. A client that sends a URL of 70 KiB is not a server fault, so:

* the parser accepts request lines up to :data:`MAX_LINE` bytes, well above
  :data:`MAX_URL`; a URL between the two reaches the application, whose error
  middleware answers 414 with the JSON error body;
* what the parser still refuses (a longer line, a header over :data:`MAX_FIELD` bytes,
  bad syntax) is logged by :class:`ServerLog` as one WARNING event
  ``http_bad_request`` (status, error class, client address; no traceback, and no
  part of the request, which may carry a subscriber identity); anything else aiohttp
  reports stays an ERROR with its trace.

``ocs serve`` and the tests' live server build their runner with :func:`runner_options`.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from ocs.logs import log_event

__all__ = ["MAX_FIELD", "MAX_LINE", "MAX_URL", "ServerLog", "runner_options"]

MAX_URL = 8 * 1024
"""Longest request target (path and query, as sent) the API serves; 414 above."""
MAX_LINE = 64 * 1024
"""Longest request line aiohttp's parser reads; above, it answers 400 itself."""
MAX_FIELD = 8190
"""Longest header line (aiohttp's default); above, the parser answers 400."""

_log = logging.getLogger(__name__)


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger, with the client's parse errors demoted to a WARNING event.

    aiohttp calls ``logger.exception(...)`` for every error it answers itself; the
    exception of a request it could not parse is an ``HttpProcessingError`` with a 4xx
    code.
    """

    def __init__(self) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else None
        if isinstance(error, HttpProcessingError) and 400 <= error.code < 500:
            remote = args[0] if args else None
            log_event(
                _log,
                "http_bad_request",
                level=logging.WARNING,
                status=error.code,
                error=type(error).__name__,
                remote=str(remote) if remote is not None else None,
            )
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


def runner_options() -> dict[str, Any]:
    """Keyword arguments of ``web.AppRunner`` for the API: no access log (tokens are
    never logged), the parser limits above and :class:`ServerLog`."""
    return {
        "access_log": None,
        "logger": ServerLog(),
        "max_line_size": MAX_LINE,
        "max_field_size": MAX_FIELD,
    }
