"""A baseline Diameter server on python-diameter's own node: every CCR gets a trivial CCA.

``python -m loadtest.baseline_server --port P`` answers Credit-Control-Requests with
DIAMETER_SUCCESS and a Granted-Service-Unit echoing the request's Rating-Group, and
does no charging at all. It exists to be measured side by side with the OCS by
``ocs-loadtest run``: what python-diameter's pure-Python ``diameter.node.Node``
(select loop, its codec, its CER/DWR handling) costs for the same traffic.

It accepts a CER from any Origin-Host (python-diameter's node only talks to peers it
knows, so an unknown one is added on its CER) and serves the realm given with
``--realm``, which the load generator reads from the CEA and uses as
Destination-Realm. Stop it with Ctrl-C or SIGTERM.

``--stack protocol`` serves the same trivial answers on this project's own Diameter
stack instead (``protocol`` package: asyncio/uvloop, Cython codec): what the OCS's
transport costs without charging and Redis, a floor for the OCS's numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import threading
from collections.abc import Sequence
from typing import Any

from diameter.message import Message, constants
from diameter.message.avp.grouped import GrantedServiceUnit, MultipleServicesCreditControl
from diameter.node import Node
from diameter.node.application import Application

from cext import codec
from protocol.base import PeerPolicy
from protocol.connection import Node as ProtocolNode
from protocol.connection import PeerConnection, Timers
from protocol.dictionary import constants as c
from protocol.messages import Answer, AvpSpec, Codec, LocalIdentity
from protocol.server import DiameterServer

__all__ = ["BaselineNode", "CreditControlEcho", "ProtocolEcho", "main"]

_GRANT = {
    constants.SERVICE_CONTEXT_PS_CHARGING: "cc_total_octets",
    constants.SERVICE_CONTEXT_IMS_CHARGING: "cc_time",
    constants.SERVICE_CONTEXT_SMS_SERVICE_CHARGING: "cc_service_specific_units",
}
_AMOUNT = {"cc_total_octets": 10_485_760, "cc_time": 600, "cc_service_specific_units": 1}


class CreditControlEcho(Application):
    """Answers every request of application 4 in the node's own thread."""

    def __init__(self) -> None:
        super().__init__(
            constants.APP_DIAMETER_CREDIT_CONTROL_APPLICATION, is_auth_application=True
        )
        self.answered = 0

    def handle_request(self, message: Message) -> None:
        answer = self.generate_answer(message, constants.E_RESULT_CODE_DIAMETER_SUCCESS)
        if message.header.command_code == constants.CMD_CREDIT_CONTROL:
            answer.cc_request_type = message.cc_request_type
            answer.cc_request_number = message.cc_request_number
            field = _GRANT.get(getattr(message, "service_context_id", ""), "cc_total_octets")
            terminating = message.cc_request_type == constants.E_CC_REQUEST_TYPE_TERMINATION_REQUEST
            services = []
            for request_mscc in getattr(message, "multiple_services_credit_control", None) or []:
                mscc = MultipleServicesCreditControl()
                mscc.rating_group = request_mscc.rating_group
                mscc.result_code = constants.E_RESULT_CODE_DIAMETER_SUCCESS
                if not terminating:
                    gsu = GrantedServiceUnit()
                    setattr(gsu, field, _AMOUNT[field])
                    mscc.granted_service_unit = gsu
                services.append(mscc)
            if services:
                answer.multiple_services_credit_control = services
        self.answered += 1
        self.send_answer(answer)


class BaselineNode(Node):
    """python-diameter's Node, accepting a CER from any peer."""

    def receive_cer(self, conn: Any, message: Message) -> None:
        host = message.origin_host.decode().lower()
        if host not in self.peers:
            peer = self.add_peer(f"aaa://{host}", self.realm_name)
            routes = self._peer_routes.setdefault(self.realm_name, {"_default": []})
            for app in self.applications:
                routes.setdefault(app, []).append(peer)
        super().receive_cer(conn, message)


def build_node(
    host: str, port: int, origin_host: str, realm: str
) -> tuple[Node, CreditControlEcho]:
    node = BaselineNode(origin_host, realm, ip_addresses=[host], tcp_port=port)
    node.product_name = "ocs-loadtest-baseline"
    node.idle_timeout = 30
    node.wakeup_interval = 1  # how long stop() may take, and how often timers are checked
    app = CreditControlEcho()
    node.add_application(app, [])
    node._peer_routes.setdefault(realm, {"_default": []}).setdefault(app, [])
    return node, app


class ProtocolEcho:
    """The same trivial CCA, as an application of our own ``protocol`` stack."""

    def __init__(self) -> None:
        self.application_id = c.APP_DIAMETER_CREDIT_CONTROL_APPLICATION
        self.commands = frozenset({c.CMD_CREDIT_CONTROL})
        self.units = {
            c.SERVICE_CONTEXT_PS_CHARGING: (c.AVP_CC_TOTAL_OCTETS, 10_485_760),
            c.SERVICE_CONTEXT_IMS_CHARGING: (c.AVP_CC_TIME, 600),
            c.SERVICE_CONTEXT_SMS_SERVICE_CHARGING: (c.AVP_CC_SERVICE_SPECIFIC_UNITS, 1),
        }
        self.answered = 0

    async def handle(self, requests: Sequence[codec.Message], peer: PeerConnection) -> list[Answer]:
        answers = []
        for message in requests:
            request_type = message.get(c.AVP_CC_REQUEST_TYPE)
            avps: list[AvpSpec] = [
                (c.AVP_AUTH_APPLICATION_ID, self.application_id),
                (c.AVP_CC_REQUEST_TYPE, request_type),
                (c.AVP_CC_REQUEST_NUMBER, message.get(c.AVP_CC_REQUEST_NUMBER)),
            ]
            unit = self.units.get(
                message.get(c.AVP_SERVICE_CONTEXT_ID, default=""),
                self.units[c.SERVICE_CONTEXT_PS_CHARGING],
            )
            for mscc in message.groups(c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL):
                inner: list[AvpSpec] = []
                if request_type != c.E_CC_REQUEST_TYPE_TERMINATION_REQUEST:
                    inner.append((c.AVP_GRANTED_SERVICE_UNIT, [unit]))
                inner.append((c.AVP_RATING_GROUP, mscc.get(c.AVP_RATING_GROUP)))
                inner.append((c.AVP_RESULT_CODE, c.E_RESULT_CODE_DIAMETER_SUCCESS))
                avps.append((c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, inner))
            answers.append(Answer(c.E_RESULT_CODE_DIAMETER_SUCCESS, avps))
        self.answered += len(answers)
        return answers


def _serve_protocol(host: str, port: int, origin_host: str, realm: str) -> int:
    app = ProtocolEcho()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        node = ProtocolNode(
            Codec(LocalIdentity(origin_host, realm, product_name="ocs-loadtest-baseline")),
            PeerPolicy.build([app.application_id]),
            Timers(),
            application=app,
        )
        server = DiameterServer(node, host, port)
        await server.start()
        print(
            f"baseline Diameter server (protocol stack) listening on {host}:{server.port}",
            flush=True,
        )
        await stop.wait()
        await server.stop()

    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover
        runner = asyncio.Runner()
    with runner:
        runner.run(serve())
    print(f"answered {app.answered} requests", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.baseline_server",
        description="Baseline Diameter server (python-diameter Node): answers every CCR "
        "with a trivial CCA, no charging.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address [127.0.0.1]")
    parser.add_argument("--port", type=int, default=3868, help="listen port [3868]")
    parser.add_argument("--origin-host", default="baseline.ocs.example", help="Origin-Host")
    parser.add_argument("--realm", default="ocs.example", help="Origin-Realm [ocs.example]")
    parser.add_argument("--log-level", default="WARNING", help="python logging level [WARNING]")
    parser.add_argument(
        "--stack",
        choices=("python-diameter", "protocol"),
        default="python-diameter",
        help="python-diameter's Node (the baseline) or this project's protocol stack "
        "(the floor under the OCS) [python-diameter]",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    if args.stack == "protocol":
        return _serve_protocol(args.host, args.port, args.origin_host, args.realm)
    node, app = build_node(args.host, args.port, args.origin_host, args.realm)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    node.start()
    print(
        f"baseline Diameter server (python-diameter) listening on {args.host}:{args.port}",
        flush=True,
    )
    stop.wait()
    node.stop(wait_timeout=2)
    print(f"answered {app.answered} requests", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
