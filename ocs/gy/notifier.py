"""Server-initiated messages: Re-Auth-Request after a top-up, Abort-Session-Request
after barring.

Every node subscribes to the account events (:mod:`quota_engine.store.events`), where
the account store publishes ``credit_added`` and ``account_barred`` with the account id. For each event the node lists the account's open sessions
(``engine.sessions_of``) and acts only on those whose network element (the session's
Origin-Host) is connected to THIS node; the node that holds the connection sends,
the others stay silent.

* ``credit_added``: every session that was given its final units gets a RAR
  (RFC 8506 §5.5, Re-Auth-Request-Type AUTHORIZE_ONLY), so the client re-authorizes
  with a CCR-U and receives new quota instead of ending the service.
* ``account_barred``: every open session gets an ASR (RFC 6733 §8.5); the client
  ends the session with a CCR-T.

Each request sent and its answer are counted by the observer given
(:class:`~ocs.gy.observer.GyObserver`; ``ocs_diameter_outgoing_*`` in ``ocs serve``).
Answers are logged (the account id masked, as every subscriber id at INFO and above):
2001 is the expected one; DIAMETER_UNKNOWN_SESSION_ID (5002)
means the client already ended the session, which is fine. A lost subscription is
re-established with a growing delay; events published meanwhile are missed (the
network element asks again at its Validity-Time anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any, Protocol

import redis.asyncio as aioredis

from ocs.cancellation import cancel_and_wait
from ocs.gy.observer import NO_OBSERVER, GyObserver
from ocs.gy.peer_routes import Route, Routes
from ocs.logs import log_event, mask_identity
from protocol.dictionary import constants as c
from protocol.messages import AvpSpec
from quota_engine.store.events import (
    ACCOUNT_BARRED,
    CREDIT_ADDED,
    parse_account_event,
    subscribe_account_events,
)

__all__ = ["Notifier"]

logger = logging.getLogger("ocs.gy.notifier")

CREDIT_CONTROL_APPLICATION = c.APP_DIAMETER_CREDIT_CONTROL_APPLICATION
RAR = c.CMD_RE_AUTH
ASR = c.CMD_ABORT_SESSION
SUCCESS = c.E_RESULT_CODE_DIAMETER_SUCCESS
UNKNOWN_SESSION_ID = c.E_RESULT_CODE_DIAMETER_UNKNOWN_SESSION_ID


class SessionSource(Protocol):
    async def sessions_of(self, account_id: str) -> list[dict[str, Any]]: ...


class Notifier:
    """Turns account events into RAR/ASR towards the peers connected to this node."""

    def __init__(
        self,
        redis: aioredis.Redis,
        engine: SessionSource,
        routes: Routes,
        *,
        timeout: float = 5.0,
        retry_delay: float = 1.0,
        max_retry_delay: float = 30.0,
        observer: GyObserver = NO_OBSERVER,
    ) -> None:
        self._observer = observer
        self._redis = redis
        self._engine = engine
        self._routes = routes
        self._timeout = timeout
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._subscribed = False
        self._attempted = asyncio.Event()
        self.events_handled = 0
        """Events taken off the channel and handled (whatever the outcome)."""

    # lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening; returns after the first attempt to subscribe (which, when
        Redis is unreachable, goes on in the background with a growing delay)."""
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._listen(), name="ocs-notifier")
        await self._attempted.wait()

    @property
    def subscribed(self) -> bool:
        return self._subscribed

    async def stop(self) -> None:
        """Stop listening and wait for (or cancel) the RAR/ASR in flight."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        handlers = list(self._handlers)
        if handlers:
            _, pending = await asyncio.wait(handlers, timeout=self._timeout)
            for handler in pending:  # they read Redis through redis-py
                await cancel_and_wait(handler)

    async def _listen(self) -> None:
        delay = self._retry_delay
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await subscribe_account_events(pubsub)
                self._subscribed = True
                self._attempted.set()
                delay = self._retry_delay
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._spawn(self.on_message(message.get("data")))
            except asyncio.CancelledError:
                raise
            except Exception as error:  # connection lost: subscribe again
                log_event(
                    logger,
                    "notifier_subscription_lost",
                    level=logging.WARNING,
                    error=f"{type(error).__name__}: {error}",
                    retry_in=delay,
                )
            finally:
                self._subscribed = False
                self._attempted.set()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_retry_delay)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    # events ------------------------------------------------------------------------

    async def on_message(self, data: bytes | str | None) -> int:
        """Handle one published event; returns how many requests were sent."""
        try:
            return await self._handle(data)
        finally:
            self.events_handled += 1

    async def _handle(self, data: bytes | str | None) -> int:
        try:
            name, account = parse_account_event(data)
        except ValueError as error:
            log_event(logger, "notifier_bad_event", level=logging.WARNING, error=str(error))
            return 0
        try:
            if name == CREDIT_ADDED:
                return await self.credit_added(account)
            if name == ACCOUNT_BARRED:
                return await self.account_barred(account)
        except Exception as error:
            log_event(
                logger,
                "notifier_event_failed",
                level=logging.ERROR,
                event_name=name,
                account=mask_identity(account),
                error=f"{type(error).__name__}: {error}",
                exc_info=error,
            )
        return 0

    async def credit_added(self, account_id: str) -> int:
        """RAR to every session of the account that has its final units."""
        sessions = [s for s in await self._engine.sessions_of(account_id) if has_final_unit(s)]
        return await self._send_all(RAR, sessions, account_id)

    async def account_barred(self, account_id: str) -> int:
        """ASR to every open session of the account."""
        sessions = await self._engine.sessions_of(account_id)
        return await self._send_all(ASR, sessions, account_id)

    async def _send_all(self, command: int, sessions: list[dict[str, Any]], account: str) -> int:
        sends = []
        for session in sessions:
            route = self._routes.route(session.get("peer") or "")
            if route is not None:
                sends.append(self.send(route, command, session["session_id"], account))
        results = await asyncio.gather(*sends)
        return sum(1 for result in results if result is not None)

    async def send(
        self, route: Route, command: int, session_id: str, account: str = ""
    ) -> int | None:
        """Send RAR or ASR for ``session_id``; returns the answer's Result-Code (None
        when no answer came)."""
        label = "RAR" if command == RAR else "ASR"
        name = label.lower()
        observer = self._observer
        observer.outgoing_request(label)
        try:
            answer = await route.connection.request(
                command,
                CREDIT_CONTROL_APPLICATION,
                request_avps(route, command, session_id),
                self._timeout,
            )
        except Exception as error:  # timeout, lost connection, an undecodable answer
            observer.outgoing_answer(label, None)
            log_event(
                logger,
                f"{name}_failed",
                level=logging.WARNING,
                session_id=session_id,
                account=mask_identity(account),
                error=f"{type(error).__name__}: {error}",
            )
            return None
        result_code = answer.get(c.AVP_RESULT_CODE)
        if result_code is None:
            experimental = answer.group(c.AVP_EXPERIMENTAL_RESULT)
            if experimental is not None:
                result_code = experimental.get(c.AVP_EXPERIMENTAL_RESULT_CODE)
        observer.outgoing_answer(label, result_code if isinstance(result_code, int) else 0)
        level = logging.INFO if result_code in (SUCCESS, UNKNOWN_SESSION_ID) else logging.WARNING
        log_event(
            logger,
            f"{name}_answered",
            level=level,
            session_id=session_id,
            account=mask_identity(account),
            result_code=result_code,
        )
        return result_code


def has_final_unit(session: dict[str, Any]) -> bool:
    """Whether a session (``engine.sessions_of``) holds a final grant, for the session
    as a whole or for one of its services."""
    if session.get("final_unit"):
        return True
    return any(service.get("final_unit") for service in session.get("services") or ())


def request_avps(route: Route, command: int, session_id: str) -> list[AvpSpec]:
    """The AVPs of a RAR (RFC 8506 §3.3) or an ASR (RFC 6733 §8.5.1) for one session,
    addressed to the network element that owns it (through a relay if need be)."""
    identity = route.connection.node.codec.identity
    avps: list[AvpSpec] = [
        (c.AVP_SESSION_ID, session_id),
        (c.AVP_ORIGIN_HOST, identity.origin_host),
        (c.AVP_ORIGIN_REALM, identity.origin_realm),
        (c.AVP_DESTINATION_REALM, route.destination_realm),
        (c.AVP_DESTINATION_HOST, route.destination_host),
        (c.AVP_AUTH_APPLICATION_ID, CREDIT_CONTROL_APPLICATION),
    ]
    if command == RAR:
        avps.append((c.AVP_RE_AUTH_REQUEST_TYPE, c.E_RE_AUTH_REQUEST_TYPE_AUTHORIZE_ONLY))
    return avps
