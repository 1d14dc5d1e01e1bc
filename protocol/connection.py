"""One Diameter connection: an ``asyncio.Protocol`` driven by the pure peer state machine.

Bytes are framed as they arrive; base commands (CER, DWR, DPR and their answers) are
handled here, below the application; application requests reach the application
only in OPEN (and CLOSING, to finish what the peer still sends), and only after the
header, the AVP structure, the application id and the command code were checked.
All application requests completed by one read go to the application as one batch,
so that their store calls can share a pipeline; answers are written as each batch
completes, correlated by the request's Hop-by-Hop-Id.

The same class serves both roles: a responder (accepted by :class:`~protocol.server.
DiameterServer`) waits for CER; an initiator (made by :mod:`protocol.client`) sends CER.
Either side can send requests (``request``), e.g. the OCS sending RAR/ASR.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cext.codec import CodecError, Header, Message

from . import base
from .answer_cache import AnswerCache
from .dictionary import constants as c
from .errors import (
    APPLICATION_UNSUPPORTED,
    AVP_UNSUPPORTED,
    COMMAND_UNSUPPORTED,
    INVALID_MESSAGE_LENGTH,
    SUCCESS,
    UNABLE_TO_COMPLY,
    DiameterError,
    from_codec_error,
)
from .framing import Framer, FramingError, Oversized
from .messages import Answer, AvpSpec, Codec, session_id_of, value_or_none
from .peer_state import InvalidTransition, PeerAction, PeerEvent, PeerState, transition
from .watchdog import Watchdog, WatchdogAction

logger = logging.getLogger("protocol.connection")


class Role(enum.Enum):
    RESPONDER = "responder"
    INITIATOR = "initiator"


class Application(Protocol):
    """What the transport needs from a Diameter application (e.g. Gy/Ro credit control)."""

    application_id: int
    commands: frozenset[int]

    async def handle(self, requests: Sequence[Message], peer: PeerConnection) -> list[Answer]:
        """Answer ``requests`` (all for this application), one Answer each, in order."""
        ...


class Observer(Protocol):
    """Hooks for metrics; the protocol package knows nothing of Prometheus.

    ``answered`` is called once per request answered (base commands included), with
    the answer's :attr:`~protocol.messages.Answer.kind` (None for an answer the
    transport made itself) and the Origin-Host the peer gave in its CER/CEA (None
    before that): both opaque here, the observer keeps its labels bounded.
    ``inflight`` moves the count of application requests being answered by
    ``requests`` (positive when a batch goes to the application, negative once its
    answers are written).
    """

    def answered(
        self,
        command_code: int,
        result_code: int,
        seconds: float,
        kind: str | None,
        peer: str | None,
    ) -> None: ...

    def inflight(self, requests: int) -> None: ...

    def peer_state_changed(self, old: str | None, new: str | None) -> None: ...


class NullObserver:
    def answered(
        self,
        command_code: int,
        result_code: int,
        seconds: float,
        kind: str | None,
        peer: str | None,
    ) -> None:
        pass

    def inflight(self, requests: int) -> None:
        pass

    def peer_state_changed(self, old: str | None, new: str | None) -> None:
        pass


#: Disconnect-Cause values (RFC 6733 §5.4.3) by name, for the DPR log lines.
DISCONNECT_CAUSES = {
    base.REBOOTING: "REBOOTING",
    base.BUSY: "BUSY",
    base.DO_NOT_WANT_TO_TALK_TO_YOU: "DO_NOT_WANT_TO_TALK_TO_YOU",
}


@dataclass(frozen=True, slots=True)
class Timers:
    """Protocol timers and limits, in seconds and bytes."""

    watchdog_interval: float = 30.0
    cer_timeout: float = 10.0
    dpa_timeout: float = 5.0
    request_timeout: float = 10.0
    max_message_size: int = 65536
    max_inflight_batches: int = 256
    """Batches being answered on one connection before we stop reading from it."""


class IdGenerator:
    """Hop-by-Hop and End-to-End identifiers (RFC 6733 §3).

    End-to-End-Ids start with the low 12 bits of the current time in the high bits and
    a random low part, so they stay unique across restarts for the 4 minutes the RFC
    asks.
    """

    __slots__ = ("_hop", "_end")

    def __init__(self) -> None:
        rng = random.Random()
        self._hop = rng.getrandbits(32)
        self._end = ((int(time.time()) & 0xFFF) << 20) | rng.getrandbits(20)

    def hop_by_hop(self) -> int:
        self._hop = (self._hop + 1) & 0xFFFFFFFF
        return self._hop

    def end_to_end(self) -> int:
        self._end = (self._end + 1) & 0xFFFFFFFF
        return self._end


class Node:
    """What every connection of one Diameter endpoint shares."""

    def __init__(
        self,
        codec: Codec,
        policy: base.PeerPolicy,
        timers: Timers,
        application: Application | None = None,
        observer: Observer | None = None,
        answer_cache: AnswerCache | None = None,
    ) -> None:
        self.codec = codec
        self.policy = policy
        self.timers = timers
        self.application = application
        self.observer = observer or NullObserver()
        self.answer_cache = answer_cache or AnswerCache(65536, 240.0)
        self.ids = IdGenerator()


class PeerConnection(asyncio.Protocol):
    """The Diameter peer on the other end of one TCP connection."""

    def __init__(self, node: Node, role: Role) -> None:
        self.node = node
        self.role = role
        self.state = PeerState.CLOSED
        self.peer: base.PeerCapabilities | None = None
        self.remote_address = ""
        self.local_address = ""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._framer = Framer(node.timers.max_message_size)
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchdog: Watchdog | None = None
        self._watchdog_timer: asyncio.TimerHandle | None = None
        self._state_timer: asyncio.TimerHandle | None = None
        self._disconnecting = False
        self._batches = 0
        self._write_paused = False
        self._reading_paused = False
        self.opened: asyncio.Future[bool] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    # asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peername = transport.get_extra_info("peername") or ("", 0)
        sockname = transport.get_extra_info("sockname") or ("", 0)
        self.remote_address, self.local_address = peername[0], sockname[0]
        logger.info(
            "diameter_peer_connected peer=%s port=%s role=%s",
            self.remote_address,
            peername[1] if len(peername) > 1 else "",
            self.role.value,
        )
        if self.role is Role.RESPONDER:
            self._fire(PeerEvent.R_CONN)
            self._start_state_timer(self.node.timers.cer_timeout)
        else:
            self._fire(PeerEvent.START)
            self._fire(PeerEvent.CONN_ACK)
            self._start_state_timer(self.node.timers.cer_timeout)

    def data_received(self, data: bytes) -> None:
        started = time.perf_counter()
        try:
            items = self._framer.feed(data)
        except FramingError:
            return  # already closing: see below
        if self._watchdog is not None and items:
            self._watchdog.on_receive(self._loop.time())
        batch: list[Message] = []
        for item in items:
            if self.state is PeerState.CLOSED:
                break
            try:
                if isinstance(item, Oversized):
                    self._on_oversized(item, started)
                else:
                    self._on_message(item, batch, started)
            except Exception:  # a bug met by this message only: the others go on
                self._on_internal_error(item, started)
        if batch:
            self._spawn_batch(self._run_batch(batch, started))
        if self._framer.error is not None and not self._disconnecting:
            # RFC 6733 §3: without a usable length the stream cannot go on. What was
            # framed before the fault is answered, then the connection closes.
            logger.warning(
                "diameter_framing_failed peer=%s error=%s", self.remote_address, self._framer.error
            )
            self._spawn(self._disconnect_after_inflight())

    # flow control: stop reading while the peer does not read our answers, or while
    # too many batches are in flight, so one peer cannot grow our memory without bound

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        pause = self._write_paused or self._batches >= self.node.timers.max_inflight_batches
        if pause and not self._reading_paused:
            transport.pause_reading()
        elif not pause and self._reading_paused:
            transport.resume_reading()
        self._reading_paused = pause

    def _spawn_batch(self, coro: Coroutine[Any, Any, None]) -> None:
        self._batches += 1
        task = self._spawn(coro)
        task.add_done_callback(self._batch_done)
        self._update_reading()

    def _batch_done(self, _task: asyncio.Task[None]) -> None:
        self._batches -= 1
        self._update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is not PeerState.CLOSED:
            self._fire(PeerEvent.PEER_DISC)
        self._cleanup()

    # public API ------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.state is PeerState.OPEN

    async def request(
        self,
        command_code: int,
        application_id: int,
        avps: Sequence[AvpSpec],
        timeout: float | None = None,
    ) -> Message:
        """Send a request and wait for its answer (correlated by Hop-by-Hop-Id)."""
        ids = self.node.ids
        data = self.node.codec.encode_request(
            command_code, application_id, ids.hop_by_hop(), ids.end_to_end(), avps
        )
        return await self.request_raw(data, timeout)

    async def request_raw(self, data: bytes, timeout: float | None = None) -> Message:
        """Send an encoded request; its Hop-by-Hop-Id must be unique on this connection."""
        if self.state not in (PeerState.OPEN, PeerState.CLOSING) or self._transport is None:
            raise ConnectionError(f"peer connection is {self.state.name}")
        hop_by_hop = int.from_bytes(data[12:16], "big")
        future = self._loop.create_future()
        self._pending[hop_by_hop] = future
        self._transport.write(data)
        try:
            return await asyncio.wait_for(future, timeout or self.node.timers.request_timeout)
        finally:
            self._pending.pop(hop_by_hop, None)

    async def disconnect(self, cause: int = base.REBOOTING) -> None:
        """Close gracefully: DPR, finish in-flight answers, wait for DPA (RFC 6733 §5.4)."""
        if self.state is PeerState.OPEN:
            self._fire(PeerEvent.STOP, cause=cause)
        elif self.state is not PeerState.CLOSED and self._transport is not None:
            self._transport.close()
        await asyncio.shield(self.closed)

    # message dispatch ------------------------------------------------------------

    def _on_message(self, buf: bytes, batch: list[Message], started: float) -> None:
        header = self.node.codec.header(buf)
        state = self.state
        command = header.command_code
        if state is PeerState.WAIT_CER and not (header.is_request and command == base.CER):
            self._fire(PeerEvent.RCV_NON_CER)
            return
        if not header.is_request:
            self._on_answer(header, buf)
            return
        if command == base.CER:
            self._on_cer(header, buf, started)
        elif state not in (PeerState.OPEN, PeerState.CLOSING):
            self._fire(PeerEvent.RCV_MESSAGE)
        elif command == base.DWR:
            self._on_base_request(header, buf, PeerEvent.RCV_DWR, started)
        elif command == base.DPR:
            self._on_base_request(header, buf, PeerEvent.RCV_DPR, started)
        else:
            self._on_request(header, buf, batch, started)

    def _on_cer(self, header: Header, buf: bytes, started: float) -> None:
        codec = self.node.codec
        try:
            try:
                message = codec.decode(buf)
                self.peer = base.check_cer(codec, message, self.remote_address, self.node.policy)
            except CodecError as invalid:  # an AVP value the check read is not valid
                raise from_codec_error(invalid) from None
        except DiameterError as error:
            logger.warning(
                "diameter_cer_rejected peer=%s result_code=%s reason=%s",
                self.remote_address,
                error.result_code,
                error.message,
            )
            self._fire(PeerEvent.RCV_CER_REJECT, header=header, error=error)
            self._observe(header, error.result_code, started)
            return
        logger.info(
            "diameter_cer_accepted peer=%s origin_host=%s result_code=%d",
            self.remote_address,
            self.peer.origin_host,
            SUCCESS,
        )
        self._fire(PeerEvent.RCV_CER_OK, header=header)
        self._observe(header, SUCCESS, started)

    def _on_base_request(
        self, header: Header, buf: bytes, event: PeerEvent, started: float
    ) -> None:
        try:
            message = self.node.codec.decode(buf)
        except DiameterError as error:
            self._reply_error(header, error, None, started)
            return
        if event is PeerEvent.RCV_DPR:
            cause = value_or_none(message, c.AVP_DISCONNECT_CAUSE)
            logger.info(
                "diameter_dpr_received peer=%s origin_host=%s disconnect_cause=%s",
                self.remote_address,
                self.peer.origin_host if self.peer is not None else None,
                DISCONNECT_CAUSES.get(cause, cause),
            )
        self._fire(event, header=header)
        self._observe(header, SUCCESS, started)

    def _on_answer(self, header: Header, buf: bytes) -> None:
        command = header.command_code
        if command == base.CER and self.state is PeerState.WAIT_I_CEA:
            self._on_cea(buf)
        elif command == base.DWR:
            if self._watchdog is not None:
                self._watchdog.on_receive(self._loop.time(), is_dwa=True)
            self._fire(PeerEvent.RCV_DWA)
        elif command == base.DPR and self.state is PeerState.CLOSING:
            self._fire(PeerEvent.RCV_DPA)
        else:
            future = self._pending.pop(header.hop_by_hop, None)
            if future is None or future.done():
                logger.info("diameter_unexpected_answer hop_by_hop=%d", header.hop_by_hop)
                return
            try:
                future.set_result(self.node.codec.decode(buf))
            except DiameterError as error:
                future.set_exception(error)

    def _on_cea(self, buf: bytes) -> None:
        try:
            message = self.node.codec.decode(buf)
            result_code = message.get(c.AVP_RESULT_CODE)
            origin_host = message.get(c.AVP_ORIGIN_HOST)
            origin_realm = message.get(c.AVP_ORIGIN_REALM)
        except (DiameterError, CodecError) as error:
            logger.warning(
                "diameter_cea_refused peer=%s result_code=%s reason=%s",
                self.remote_address,
                None,
                f"invalid CEA: {error}",
            )
            self._fail_open(ConnectionRefusedError(f"invalid CEA: {error}"))
            self._fire(PeerEvent.RCV_CEA_FAIL)
            return
        if result_code != SUCCESS:
            reason = message.get(c.AVP_ERROR_MESSAGE) or ""
            logger.warning(
                "diameter_cea_refused peer=%s result_code=%s reason=%s",
                self.remote_address,
                result_code,
                reason,
            )
            self._fail_open(ConnectionRefusedError(f"CEA Result-Code {result_code} {reason}"))
            self._fire(PeerEvent.RCV_CEA_FAIL)
            return
        if not isinstance(origin_host, str) or not isinstance(origin_realm, str):
            logger.warning(
                "diameter_cea_refused peer=%s result_code=%s reason=%s",
                self.remote_address,
                result_code,
                "no Origin-Host or Origin-Realm",
            )
            self._fail_open(ConnectionRefusedError("invalid CEA: no Origin-Host or Origin-Realm"))
            self._fire(PeerEvent.RCV_CEA_FAIL)
            return
        apps = set(message.get_all(c.AVP_AUTH_APPLICATION_ID))
        self.peer = base.PeerCapabilities(origin_host, origin_realm, frozenset(apps))
        logger.info(
            "diameter_cea_accepted peer=%s origin_host=%s result_code=%d",
            self.remote_address,
            origin_host,
            result_code,
        )
        self._fire(PeerEvent.RCV_CEA_OK)

    def _on_request(self, header: Header, buf: bytes, batch: list[Message], started: float) -> None:
        node = self.node
        message: Message | None = None
        try:
            message = node.codec.decode(buf)
            application = node.application
            if application is None or header.application_id != application.application_id:
                raise DiameterError(
                    APPLICATION_UNSUPPORTED, f"application {header.application_id} not supported"
                )
            if header.command_code not in application.commands:
                raise DiameterError(
                    COMMAND_UNSUPPORTED, f"command {header.command_code} not supported"
                )
            unknown = message.first_unknown_mandatory()
            if unknown is not None:
                raise DiameterError(AVP_UNSUPPORTED, "unknown AVP with the M bit", unknown)
        except DiameterError as error:
            session_id = session_id_of(message) if message is not None else None
            self._reply_error(header, error, session_id, started)
            return
        if header.is_retransmit:
            cached = node.answer_cache.get(
                value_or_none(message, c.AVP_ORIGIN_HOST) or "",
                header.end_to_end,
                header.hop_by_hop,
                self._loop.time(),
            )
            if cached is not None:
                self._write(cached)
                self._observe(header, _result_code_of(node.codec, cached), started)
                return
        self._fire(PeerEvent.RCV_MESSAGE)
        batch.append(message)

    def _on_internal_error(self, item: bytes | Oversized, started: float) -> None:
        logger.exception("diameter_message_failed peer=%s", self.remote_address)
        header = self.node.codec.header(item.header if isinstance(item, Oversized) else item)
        if header.is_request:
            error = DiameterError(UNABLE_TO_COMPLY, "internal error")
            self._reply_error(header, error, None, started)

    def _on_oversized(self, item: Oversized, started: float) -> None:
        header = self.node.codec.header(item.header)
        if not header.is_request:
            return
        error = DiameterError(
            INVALID_MESSAGE_LENGTH,
            f"message length {item.length} exceeds {self.node.timers.max_message_size}",
        )
        self._reply_error(header, error, None, started)

    async def _run_batch(self, batch: list[Message], started: float) -> None:
        node = self.node
        assert node.application is not None
        observer = node.observer
        observer.inflight(len(batch))
        try:
            try:
                answers = await node.application.handle(batch, self)
                if len(answers) != len(batch):
                    raise RuntimeError(f"{len(answers)} answers for {len(batch)} requests")
            except Exception:
                logger.exception("diameter_application_failed requests=%d", len(batch))
                answers = [Answer(UNABLE_TO_COMPLY, error_message="internal error")] * len(batch)
            codec = node.codec
            cache = node.answer_cache
            now = self._loop.time()
            chunks = []
            for request, answer in zip(batch, answers, strict=True):
                header = request.header
                session_id = session_id_of(request)
                error_bit = session_id is None  # see _answer_message_format
                try:
                    data = codec.encode_answer(header, answer, session_id, error_bit)
                except Exception:  # this answer only: its request gets 5012, the others theirs
                    logger.exception("diameter_answer_failed command_code=%d", header.command_code)
                    answer = Answer(UNABLE_TO_COMPLY, error_message="internal error")
                    data = codec.encode_answer(header, answer, session_id, error_bit)
                chunks.append(data)
                origin_host = value_or_none(request, c.AVP_ORIGIN_HOST) or ""
                cache.put(origin_host, header.end_to_end, data, now)
                self._observe(header, answer.result_code, started, answer.kind)
            self._write(b"".join(chunks))
        finally:  # answered, failed or cancelled: no longer in flight
            observer.inflight(-len(batch))

    # state machine ---------------------------------------------------------------

    def _fire(
        self,
        event: PeerEvent,
        header: Header | None = None,
        error: DiameterError | None = None,
        cause: int = base.REBOOTING,
    ) -> None:
        old = self.state
        try:
            step = transition(old, event)
        except InvalidTransition:
            logger.debug("diameter_event_ignored state=%s event=%s", old.name, event.name)
            return
        self.state = step.state
        if step.state is not old:
            self._on_state_change(old, step.state)
            if step.state is PeerState.CLOSED:
                # the peer gone (PEER_DISC), a DPR either way, a watchdog or CER failure
                logger.info(
                    "diameter_peer_closed peer=%s origin_host=%s from_state=%s event=%s",
                    self.remote_address,
                    self.peer.origin_host if self.peer is not None else None,
                    old.name,
                    event.name,
                )
        for action in step.actions:
            self._perform(action, header, error, cause)

    def _on_state_change(self, old: PeerState, new: PeerState) -> None:
        self.node.observer.peer_state_changed(
            None if old is PeerState.CLOSED else old.name,
            None if new is PeerState.CLOSED else new.name,
        )
        self._cancel_state_timer()
        if new is PeerState.OPEN:
            self._start_watchdog()
            if not self.opened.done():
                self.opened.set_result(True)
        elif new is PeerState.CLOSED:
            self._stop_watchdog()
            self._fail_open(ConnectionError("peer connection closed before OPEN"))

    def _perform(
        self, action: PeerAction, header: Header | None, error: DiameterError | None, cause: int
    ) -> None:
        codec = self.node.codec
        # the SEND_CEA*, SEND_DWA and SEND_DPA actions come only with the request they answer
        if action is PeerAction.SEND_CEA or action is PeerAction.SEND_CEA_ERROR:
            assert header is not None
            apps = self.peer.application_ids if self.peer else self.node.policy.application_ids
            self._write(base.cea(codec, header, [self.local_address], apps, error))
        elif action is PeerAction.SEND_CER:
            ids = self.node.ids
            apps = self.node.policy.application_ids
            self._write(
                base.cer(codec, ids.hop_by_hop(), ids.end_to_end(), [self.local_address], apps)
            )
        elif action is PeerAction.SEND_DWA:
            assert header is not None
            self._write(base.dwa(codec, header))
        elif action is PeerAction.SEND_DPR:
            logger.info(
                "diameter_dpr_sent peer=%s origin_host=%s disconnect_cause=%s",
                self.remote_address,
                self.peer.origin_host if self.peer is not None else None,
                DISCONNECT_CAUSES.get(cause, cause),
            )
            ids = self.node.ids
            self._write(base.dpr(codec, ids.hop_by_hop(), ids.end_to_end(), cause))
            self._start_state_timer(self.node.timers.dpa_timeout)
        elif action is PeerAction.SEND_DPA:
            assert header is not None
            self._write(base.dpa(codec, header))
        elif action is PeerAction.DISCONNECT:
            self._spawn(self._disconnect_after_inflight())
        elif action is PeerAction.CLEANUP:
            self._cleanup()
        # CONNECT: the client connected before this protocol existed.
        # PROCESS: the caller hands the message to the application itself.

    async def _disconnect_after_inflight(self) -> None:
        """Close once every answer being computed has been written."""
        if self._disconnecting:
            return
        self._disconnecting = True
        current = asyncio.current_task()
        inflight = [task for task in self._tasks if task is not current]
        if inflight:
            await asyncio.wait(inflight, timeout=self.node.timers.dpa_timeout)
        if self._transport is not None:
            self._transport.close()

    # timers ----------------------------------------------------------------------

    def _start_state_timer(self, seconds: float) -> None:
        self._cancel_state_timer()
        self._state_timer = self._loop.call_later(seconds, self._fire, PeerEvent.TIMEOUT)

    def _cancel_state_timer(self) -> None:
        if self._state_timer is not None:
            self._state_timer.cancel()
            self._state_timer = None

    def _start_watchdog(self) -> None:
        self._watchdog = Watchdog(self.node.timers.watchdog_interval, self._loop.time())
        self._watchdog_timer = self._loop.call_at(self._watchdog.deadline, self._on_watchdog)

    def _stop_watchdog(self) -> None:
        if self._watchdog_timer is not None:
            self._watchdog_timer.cancel()
            self._watchdog_timer = None

    def _on_watchdog(self) -> None:
        watchdog = self._watchdog
        if watchdog is None or self.state is PeerState.CLOSED:
            return
        action = watchdog.on_timer(self._loop.time())
        if action is WatchdogAction.SEND_DWR:
            ids = self.node.ids
            self._write(base.dwr(self.node.codec, ids.hop_by_hop(), ids.end_to_end()))
        elif action is WatchdogAction.CLOSE:
            logger.warning("diameter_watchdog_down peer=%s", self.remote_address)
            self._fire(PeerEvent.WATCHDOG_DOWN)
            return
        self._watchdog_timer = self._loop.call_at(watchdog.deadline, self._on_watchdog)

    # helpers ---------------------------------------------------------------------

    def _reply_error(
        self, header: Header, error: DiameterError, session_id: str | None, started: float
    ) -> None:
        error_bit = _answer_message_format(header, session_id)
        self._write(self.node.codec.encode_error(header, error, session_id, error_bit))
        self._observe(header, error.result_code, started)

    def _observe(
        self, header: Header, result_code: int, started: float, kind: str | None = None
    ) -> None:
        peer = self.peer
        self.node.observer.answered(
            header.command_code,
            result_code,
            time.perf_counter() - started,
            kind,
            peer.origin_host if peer is not None else None,
        )

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _fail_open(self, error: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(error)
            self.opened.exception()  # mark retrieved: a responder has nobody waiting on it

    def abort(self) -> None:
        """Drop the connection at once, without DPR (for unrecoverable streams)."""
        if self._transport is not None:
            self._transport.abort()

    def _cleanup(self) -> None:
        self._cancel_state_timer()
        self._stop_watchdog()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("peer connection closed"))
        self._pending.clear()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        self._fail_open(ConnectionError("peer connection closed before OPEN"))
        if not self.closed.done():
            self.closed.set_result(None)


def _answer_message_format(header: Header, session_id: str | None) -> bool:
    """Whether the answer to ``header`` goes in the answer-message format, E bit set.

    Every application command's answer starts with ``< Session-Id >``, echoed from the
    request (RFC 6733 §8.8). When the request has no readable one (absent, not UTF-8,
    or the message did not decode), the answer cannot conform to its command's format,
    so it is sent in the generic answer-message format of RFC 6733 §7.2
    (``0*1< Session-Id >``), which §3 marks with the E bit; it still carries the
    request's Hop-by-Hop and End-to-End ids, so the peer can match it. Base commands
    (CER, DWR, DPR) have no Session-Id.
    """
    return session_id is None and header.command_code not in base.BASE_COMMANDS


def _result_code_of(codec: Codec, answer: bytes) -> int:
    try:
        return codec.decode(answer).get(c.AVP_RESULT_CODE) or 0
    except DiameterError:
        return 0
