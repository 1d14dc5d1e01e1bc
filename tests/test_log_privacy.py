"""No subscriber id (MSISDN, IMSI, account id) in clear in a log line at INFO or above.

A static check over every log call of ``ocs``, ``protocol``, ``quota_engine`` and
``loadtest``: a ``log_event`` field, or a ``key=%s`` field of the protocol/quota_engine
convention, named after a subscriber id must be masked (``ocs.logs.mask_identity``, or
``_masked`` where that module may not be imported) unless the call logs at DEBUG.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ocs", "protocol", "quota_engine", "loadtest")
#: Field names that carry a subscriber id.
SUBSCRIBER_FIELDS = {"account", "account_id", "msisdn", "imsi", "identity", "subscriber", "user"}
MASKS = {"mask_identity", "_masked"}
LOGGER_METHODS = {"info", "warning", "error", "exception", "critical"}


def _masked(node: ast.expr) -> bool:
    """Whether ``node`` is a masking call (possibly inside ``x or None`` and the like)."""
    return any(
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name | ast.Attribute)
        and (call.func.id if isinstance(call.func, ast.Name) else call.func.attr) in MASKS
        for call in ast.walk(node)
    ) or (isinstance(node, ast.Constant) and node.value is None)


def clear_subscriber_fields(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{node.lineno}"
        if name == "log_event":
            level = next((k.value for k in node.keywords if k.arg == "level"), None)
            if level is not None and "DEBUG" in ast.unparse(level):
                continue
            for keyword in node.keywords:
                if keyword.arg in SUBSCRIBER_FIELDS and not _masked(keyword.value):
                    found.append(f"{where} {keyword.arg}={ast.unparse(keyword.value)}")
        elif name in LOGGER_METHODS and node.args:
            fmt = node.args[0]
            if not (isinstance(fmt, ast.Constant) and isinstance(fmt.value, str)):
                continue
            fields = [token.split("=", 1)[0] for token in fmt.value.split(" ")[1:] if "=%" in token]
            for field, argument in zip(fields, node.args[1:], strict=False):
                if field in SUBSCRIBER_FIELDS and not _masked(argument):
                    found.append(f"{where} {field}={ast.unparse(argument)}")
    return found


def test_no_log_call_names_a_subscriber_in_clear_at_info_or_above():
    found = [
        line
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for line in clear_subscriber_fields(path)
    ]
    assert found == []


def test_the_check_finds_a_clear_account(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "log_event(log, 'x', account=account)\n"
        "log_event(log, 'y', level=logging.DEBUG, account=account)\n"
        "log_event(log, 'z', account=mask_identity(account))\n"
        "_log.warning('usage_capped account=%s peer=%s', account, peer)\n"
        "_log.warning('usage_capped account=%s peer=%s', _masked(account), peer)\n"
    )
    found = clear_subscriber_fields(sample)
    assert [line.split(" ", 1)[1] for line in found] == ["account=account", "account=account"]
