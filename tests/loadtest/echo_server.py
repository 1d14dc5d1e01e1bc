"""An in-process Diameter server for the load generator's tests.

Our own ``protocol`` server with an application that answers every CCR with a fixed
Result-Code and a Granted-Service-Unit, run on its own event loop in a thread so that
the synchronous ``run_load`` (which spawns worker processes) can talk to it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

from protocol.base import PeerPolicy
from protocol.connection import Node, Timers
from protocol.dictionary import constants as c
from protocol.messages import Answer, Codec, LocalIdentity
from protocol.server import DiameterServer

CCR = c.CMD_CREDIT_CONTROL


class EchoApplication:
    application_id = c.APP_DIAMETER_CREDIT_CONTROL_APPLICATION
    commands = frozenset({CCR})

    def __init__(self, result_code: int = 2001, grant: int | None = None, delay: float = 0.0):
        self.result_code = result_code
        self.grant = grant
        self.delay = delay
        self.kinds: Counter = Counter()
        self.sessions: dict[str, list[int]] = {}
        self.messages: list = []

    async def handle(self, requests, peer):
        if self.delay:
            await asyncio.sleep(self.delay)
        answers = []
        for message in requests:
            request_type = message.get(c.AVP_CC_REQUEST_TYPE)
            number = message.get(c.AVP_CC_REQUEST_NUMBER)
            session = message.get(c.AVP_SESSION_ID)
            self.kinds[(message.get(c.AVP_SERVICE_CONTEXT_ID), request_type)] += 1
            self.sessions.setdefault(session, []).append(request_type)
            self.messages.append(message)
            avps = [
                (c.AVP_AUTH_APPLICATION_ID, 4),
                (c.AVP_CC_REQUEST_TYPE, request_type),
                (c.AVP_CC_REQUEST_NUMBER, number),
            ]
            mscc = message.group(c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL)
            if mscc is not None and self.grant is not None and request_type != 3:
                avps.append(
                    (
                        c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL,
                        [
                            (c.AVP_GRANTED_SERVICE_UNIT, [(c.AVP_CC_TOTAL_OCTETS, self.grant)]),
                            (c.AVP_RATING_GROUP, mscc.get(c.AVP_RATING_GROUP)),
                            (c.AVP_RESULT_CODE, self.result_code),
                        ],
                    )
                )
            answers.append(Answer(self.result_code, avps))
        return answers


class ThreadedServer:
    """``with ThreadedServer(app) as server: ... server.port``"""

    def __init__(self, application: EchoApplication | None = None) -> None:
        self.application = application or EchoApplication()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: DiameterServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        node = Node(
            Codec(LocalIdentity("echo.test.net", "echo.test")),
            PeerPolicy.build([c.APP_DIAMETER_CREDIT_CONTROL_APPLICATION]),
            Timers(),
            application=self.application,
        )
        self._server = DiameterServer(node, "127.0.0.1", 0)
        loop.run_until_complete(self._server.start())
        self.port = self._server.port
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._server.stop())
        loop.close()

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        assert self._ready.wait(10), "echo server did not start"
        return self

    def __exit__(self, *exc) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15)

    def call(self, coro):
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)
