"""A counting SMTP sink for the delivery benchmark, in a process of its own (so that
its work does not share the measured process's interpreter): aiosmtpd on 127.0.0.1
PORT accepting every message; prints ``ready`` when listening and, when its standard
input closes, ``received N bytes B`` and exits.

    .venv/bin/python -m tests.benchmarks.smtp_sink PORT
"""

from __future__ import annotations

import sys

from aiosmtpd.controller import Controller


class Counter:
    def __init__(self) -> None:
        self.messages = 0
        self.octets = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.messages += 1
        self.octets += len(envelope.content)
        return "250 OK"


def main() -> int:
    counter = Counter()
    controller = Controller(counter, hostname="127.0.0.1", port=int(sys.argv[1]))
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()
    controller.stop()
    print(f"received {counter.messages} bytes {counter.octets}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
