"""docs/api.md's walk-through, run: every ```sh block, in order, against a live server.

Each logical command (continuation lines and multi-line quotes joined, a heredoc
``<<'EOF'`` attached) is one of:

* ``export NAME=VALUE``: sets a variable for the commands after it (``OCS``, ``TOKEN``
  and ``VIEWER`` keep the test's values: the live server and its tokens);
* ``curl ...``: translated into one HTTP request (``-X``, ``-H``, ``-d``/``--data``/
  ``--data-binary`` with ``@-`` for a heredoc or ``@FILE``, ``-s``/``-S``/``-i``); it must
  answer the status of a trailing ``# -> NNN`` comment, else 200, and JSON when it has
  a body;
* ``ocs ...``: run in-process through :func:`ocs.cli.main` with the variables as its
  environment; it must exit 0.

Anything else fails the test, so the page cannot show a command nobody ran.
"""

from __future__ import annotations

import json
import re
import shlex
import urllib.error
import urllib.request

from ocs.cli import main
from tests.helpers import ROOT
from tests.ocs.api.conftest import ADMIN_TOKEN, VIEWER_TOKEN

DOC = ROOT / "docs" / "api.md"
_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")
_EXPECT = re.compile(r"#\s*->\s*(\d{3})\s*$")
_HEREDOC = re.compile(r"<<-?\s*'?(\w+)'?\s*$")


def commands(text: str) -> list[tuple[str, str | None]]:
    """``(command text, heredoc body or None)`` of every ```sh block, in order."""
    found = []
    for block in _BLOCK.findall(text):
        lines = block.splitlines()
        i, pending = 0, ""
        while i < len(lines):
            line = lines[i]
            i += 1
            pending = f"{pending}\n{line}" if pending else line
            if pending.endswith("\\"):
                pending = pending[:-1]
                continue
            try:
                shlex.split(pending, comments=True)
            except ValueError:  # an open quote: the command goes on
                continue
            command, pending = pending.strip(), ""
            if not command or command.startswith("#"):
                continue
            heredoc = None
            match = _HEREDOC.search(command.split("#")[0].rstrip())
            if match:
                body = []
                while lines[i] != match.group(1):
                    body.append(lines[i])
                    i += 1
                i += 1
                heredoc = "\n".join(body) + "\n"
                command = command[: command.rfind("<<")]
            found.append((command, heredoc))
    return found


def expand(text: str, variables: dict[str, str]) -> str:
    return _VAR.sub(lambda m: variables[m.group(1) or m.group(2)], text)


def curl(argv: list[str], heredoc: str | None) -> tuple[int, bytes]:
    method, headers, data, url = None, {}, None, None
    args = iter(argv[1:])
    for arg in args:
        if arg in ("-s", "-S", "-sS", "-i", "-si"):
            continue
        if arg == "-X":
            method = next(args)
        elif arg == "-H":
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif arg in ("-d", "--data", "--data-binary", "--data-raw"):
            value = next(args)
            if value == "@-":
                data = (heredoc or "").encode()
            elif value.startswith("@") and arg != "--data-raw":
                data = (ROOT / value[1:]).read_bytes()
            else:
                data = value.encode()
        elif arg.startswith("http"):
            url = arg
        else:
            raise AssertionError(f"curl option not understood by this test: {arg}")
    assert url is not None, argv
    request = urllib.request.Request(
        url, data=data, headers=headers, method=method or ("POST" if data is not None else "GET")
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_walk_through_runs(live, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    fixed = {"OCS": live.url, "TOKEN": ADMIN_TOKEN, "VIEWER": VIEWER_TOKEN}
    variables = dict(fixed)
    found = commands(DOC.read_text())
    assert len(found) > 30
    ran = {"curl": 0, "ocs": 0}
    for command, heredoc in found:
        expected = _EXPECT.search(command)
        argv = shlex.split(expand(command, variables), comments=True)
        if argv[0] == "export":
            for assignment in argv[1:]:
                name, _, value = assignment.partition("=")
                if name not in fixed:
                    variables[name] = value
            continue
        if argv[0] == "curl":
            status, body = curl(argv, heredoc)
            want = int(expected.group(1)) if expected else 200
            assert status == want, (command, status, body[:500])
            if body:
                json.loads(body)
        elif argv[0] == "ocs":
            env = {k: v for k, v in variables.items() if k.startswith("OCS_")}
            code = main(argv[1:], env=env)
            assert code == 0, (command, capsys.readouterr())
        else:
            raise AssertionError(f"command not understood by this test: {command}")
        ran[argv[0]] += 1
    assert ran["curl"] > 25 and ran["ocs"] >= 5
