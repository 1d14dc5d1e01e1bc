"""Gy/Ro credit-control application (RFC 8506, 3GPP TS 32.299): the one place that
translates Diameter into charging terms.

Each batch of CCRs (those completed by one read of a connection) is parsed
(:mod:`ocs.gy.translation`), the valid ones go to the charging engine in ONE
``engine.charge`` call (one Redis pipeline), and the answers are built in request
order. A CCR that cannot be parsed is answered on its own (5005, 5009, 5004 with
Failed-AVP, logged as a WARNING ``ccr_rejected`` event) and never reaches the
engine. Every request fails alone: an unexpected exception while parsing one or
building its answer gives that one 5012 (an ERROR line with the traceback), and the
engine isolates a request whose rating fails (``ChargingBatchError``).

Without an engine (``engine=None``) every valid CCR is answered
DIAMETER_UNABLE_TO_COMPLY (5012) with an Error-Message, so a network element falls
back to its Credit-Control-Failure-Handling instead of being granted service for free.
The same answer goes to every valid CCR of a batch when the engine fails (e.g. Redis
unreachable or too slow). Those 5012 answers carry Credit-Control-Failure-Handling
(RFC 8506 §8.14) as ``[charging] failure_handling`` says (``failure_handling``
here; ``"none"`` leaves it out): what the network element is to do while the OCS
cannot charge.

Each answer carries its CC-Request-Type name as :attr:`protocol.messages.Answer.kind`
for the transport's metrics, and the MSCC Result-Codes and the units granted and
used go to the :class:`~ocs.gy.observer.GyObserver` given (none by default).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cext.codec import Message
from ocs.gy.observer import GyObserver, service_of
from ocs.gy.peer_routes import Routes
from ocs.gy.result_codes import RESULT_CODES
from ocs.gy.translation import (
    CCR_MANDATORY,
    CONTEXT_UNITS,
    ParsedCCR,
    build_cca,
    error_answer,
    parse_ccr,
)
from ocs.logs import log_event
from protocol.connection import PeerConnection
from protocol.dictionary import constants as c
from protocol.errors import UNABLE_TO_COMPLY, DiameterError
from protocol.messages import Answer, AvpSpec, Codec, value_or_none
from quota_engine.charging.engine import ChargingBatchError
from quota_engine.model import ChargingRequest, ChargingResult, EventAction, Outcome, Unit
from quota_engine.numbering import NO_PLAN, NumberingPlan

__all__ = [
    "CCR",
    "CCR_MANDATORY",
    "CREDIT_CONTROL_APPLICATION",
    "FAILURE_HANDLING",
    "CreditControlApplication",
]

logger = logging.getLogger("ocs.gy")

CREDIT_CONTROL_APPLICATION = c.APP_DIAMETER_CREDIT_CONTROL_APPLICATION
#: Engine failures that mean "Redis cannot serve now" (logged without a traceback).
STORE_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)
CCR = c.CMD_CREDIT_CONTROL

#: ``[charging] failure_handling`` -> Credit-Control-Failure-Handling (RFC 8506 §8.14);
#: ``"none"``: the AVP is not sent.
FAILURE_HANDLING: dict[str, int | None] = {
    "terminate": c.E_CREDIT_CONTROL_FAILURE_HANDLING_TERMINATE,  # 0
    "continue": c.E_CREDIT_CONTROL_FAILURE_HANDLING_CONTINUE,  # 1
    "retry_and_terminate": c.E_CREDIT_CONTROL_FAILURE_HANDLING_RETRY_AND_TERMINATE,  # 2
    "none": None,
}
_ACCEPTED = (Outcome.OK, Outcome.INSUFFICIENT_BALANCE)


class Engine(Protocol):
    async def charge(self, requests: Sequence[ChargingRequest]) -> list[ChargingResult]: ...


class CreditControlApplication:
    """Answers CCRs for Auth-Application-Id 4 (Gy and Ro alike)."""

    application_id = CREDIT_CONTROL_APPLICATION
    commands = frozenset({CCR})

    def __init__(
        self,
        codec: Codec,
        engine: Engine | None = None,
        clock: Callable[[], float] = time.time,
        routes: Routes | None = None,
        numbering: NumberingPlan = NO_PLAN,
        *,
        failure_handling: str = "none",
        observer: GyObserver | None = None,
    ) -> None:
        """``failure_handling``: a key of :data:`FAILURE_HANDLING`, the
        Credit-Control-Failure-Handling of the 5012 answers given while charging is
        unavailable; ``observer`` counts MSCC outcomes and units (nothing when None)."""
        self._codec = codec
        self._engine = engine
        self._clock = clock
        self._routes = routes
        self._numbering = numbering  # national-format numbers -> E.164
        handling = FAILURE_HANDLING[failure_handling]
        self._failure_avps: list[AvpSpec] = (
            [] if handling is None else [(c.AVP_CREDIT_CONTROL_FAILURE_HANDLING, handling)]
        )
        self._observer = observer

    async def handle(
        self, requests: Sequence[Message], peer: PeerConnection | None
    ) -> list[Answer]:
        """One answer per request, in order. Each request fails alone: a client mistake
        gets its error answer (a WARNING line, no traceback), an internal fault while
        parsing or answering it 5012 (an ERROR line with the traceback)."""
        answers: list[Answer | None] = [None] * len(requests)
        valid: list[tuple[int, ParsedCCR]] = []
        now = int(self._clock())
        for index, message in enumerate(requests):
            try:
                parsed = parse_ccr(self._codec, message, now, self._numbering)
            except DiameterError as error:
                answers[index] = error_answer(message, error)
                _log_rejected(message, error)
            except Exception as error:
                answers[index] = _internal_error(message, error, "ccr_parse_failed")
            else:
                valid.append((index, parsed))
                if self._routes is not None and peer is not None:
                    self._routes.learn(parsed.request.peer, parsed.origin_realm, peer)
        if valid:
            results = await self._charge([parsed.request for _, parsed in valid])
            observer = self._observer
            for (index, parsed), result in zip(valid, results, strict=True):
                if result is None:
                    answers[index] = Answer(
                        UNABLE_TO_COMPLY,
                        parsed.echo + self._failure_avps,
                        self._unavailable,
                        kind=parsed.request.request_type.value,
                    )
                    continue
                try:
                    answers[index] = build_cca(parsed, result)
                except Exception as error:
                    answers[index] = _internal_error(parsed.message, error, "cca_build_failed")
                    continue
                if observer is not None:
                    _observe(observer, parsed, result)
        return [answer for answer in answers if answer is not None]  # every slot is filled

    @property
    def _unavailable(self) -> str:
        if self._engine is None:
            return "charging engine not configured"
        return "charging engine unavailable"

    async def _charge(self, requests: list[ChargingRequest]) -> list[ChargingResult | None]:
        if self._engine is None:
            return [None] * len(requests)
        try:
            results = await self._engine.charge(requests)
            if len(results) != len(requests):
                raise RuntimeError(f"{len(results)} results for {len(requests)} requests")
        except ChargingBatchError as error:
            # the requests that did complete are committed: answer them, fail the rest
            log_event(logger, "charging_partly_failed", level=logging.ERROR, error=str(error))
            return [r if isinstance(r, ChargingResult) else None for r in error.results]
        except Exception as error:
            # Redis down or slow: the cause is in the message, and a traceback per batch
            # would bury the log during an outage; anything else is a bug: its trace
            log_event(
                logger,
                "charging_failed",
                level=logging.ERROR,
                requests=len(requests),
                error=f"{type(error).__name__}: {error}",
                exc_info=None if isinstance(error, STORE_UNAVAILABLE) else error,
            )
            return [None] * len(requests)
        return list(results)


def _observe(observer: GyObserver, parsed: ParsedCCR, result: ChargingResult) -> None:
    """Count what :func:`~ocs.gy.translation.build_cca` answered: each MSCC's
    Result-Code, and per service the units granted (a Granted-Service-Unit sent) and
    the units reported used by a request that was accepted (charged)."""
    request = parsed.request
    context = request.service_context
    service = service_of(context)
    accepted = result.outcome in _ACCEPTED
    action = request.action
    grants_units = accepted and (action is None or action is EventAction.DIRECT_DEBITING)
    multiple = parsed.multiple_services
    usages = request.services
    context_unit = CONTEXT_UNITS.get(context)
    for position, grant in enumerate(result.services if multiple else result.services[:1]):
        if multiple:
            observer.mscc_answered(service, RESULT_CODES[grant.outcome])
        granted = grant.granted if grants_units and grant.outcome is Outcome.OK else 0
        used = 0
        if accepted and position < len(usages):
            usage = usages[position]
            if (
                usage.rating_group == grant.rating_group
                and usage.service_identifier == grant.service_identifier
            ):
                used = usage.used
        if granted > 0 or used > 0:
            unit = grant.unit or context_unit or Unit.EVENTS
            observer.units(service, unit.value, max(granted, 0), used)


def _log_rejected(message: Message, error: DiameterError) -> None:
    """A client's mistake: one WARNING line, without the subscriber's identities."""
    log_event(
        logger,
        "ccr_rejected",
        level=logging.WARNING,
        result_code=error.result_code,
        reason=error.message,
        origin_host=value_or_none(message, c.AVP_ORIGIN_HOST),
    )


def _internal_error(message: Message, error: Exception, event: str) -> Answer:
    """Our fault with one request: 5012 for it alone, and the traceback in the log."""
    log_event(
        logger,
        event,
        level=logging.ERROR,
        error=f"{type(error).__name__}: {error}",
        exc_info=error,
    )
    return error_answer(message, DiameterError(UNABLE_TO_COMPLY, "internal error"))
