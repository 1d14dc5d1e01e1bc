"""ocs.logs: structured events in JSON and text, identity masking."""

import io
import json
import logging

import pytest

from ocs.logs import configure_logging, log_event, mask_identity


@pytest.fixture
def capture():
    """Factory: ``capture(level, fmt)`` -> a stream receiving the configured logs."""
    installed: list[logging.Handler] = []
    root = logging.getLogger()
    level_before = root.level

    def configure(level: str = "INFO", fmt: str = "json") -> io.StringIO:
        stream = io.StringIO()
        installed.append(configure_logging(level, fmt, stream))
        return stream

    yield configure
    for handler in installed:
        root.removeHandler(handler)
    root.setLevel(level_before)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_line_has_event_and_fields(capture):
    stream = capture("INFO", "json")
    log_event(
        logging.getLogger("ocs.test"), "peer_opened", origin_host="pgw.example.net", port=3868
    )
    [line] = lines(stream)
    record = json.loads(line)
    assert record["event"] == "peer_opened"
    assert record["level"] == "INFO"
    assert record["logger"] == "ocs.test"
    assert record["origin_host"] == "pgw.example.net"
    assert record["port"] == 3868
    assert record["ts"].endswith("Z") and "T" in record["ts"]
    assert "message" not in record


def test_json_serialises_unusual_values_as_text(capture):
    stream = capture("INFO", "json")
    log_event(logging.getLogger("ocs.test"), "odd_values", path=object, nested={"a": (1, 2)})
    record = json.loads(lines(stream)[0])
    assert record["path"] == str(object)
    assert record["nested"] == {"a": [1, 2]}


def test_text_line_is_key_value(capture):
    stream = capture("INFO", "text")
    log_event(
        logging.getLogger("ocs.test"),
        "ccr_rejected",
        result_code=5030,
        reason="user unknown",
        empty="",
    )
    [line] = lines(stream)
    ts, level, logger, rest = line.split(" ", 3)
    assert ts.endswith("Z") and level == "INFO" and logger == "ocs.test"
    assert rest == 'ccr_rejected result_code=5030 reason="user unknown" empty=""'


def test_plain_library_records_still_come_out(capture):
    json_stream = capture("INFO", "json")
    logging.getLogger("aiohttp.access").info("GET %s %d", "/metrics", 200)
    record = json.loads(lines(json_stream)[0])
    assert record["event"] is None
    assert record["message"] == "GET /metrics 200"


def test_plain_record_in_text(capture):
    stream = capture("INFO", "text")
    logging.getLogger("lib").warning("plain words")
    assert lines(stream)[0].endswith('WARNING lib "plain words"')


def test_protocol_and_engine_events_come_out_as_events(capture):
    """``protocol`` and ``quota_engine`` may not import ocs.logs: they log
    ``"event_name key=%s ..."`` with arguments, which come out as that event and its
    fields (the runbook's alert on event="sweeper_round_failed" needs the name)."""
    json_stream = capture("INFO", "json")
    error = ConnectionError("Connection refused by 127.0.0.1:6379")
    logging.getLogger("quota_engine.charging.sweeper").warning(
        "sweeper_round_failed error=%s", error
    )
    logging.getLogger("protocol.connection").warning(
        "diameter_cer_rejected peer=%s result_code=%s reason=%s",
        ("10.0.0.7", 39001),
        5010,
        "no common application",
    )
    logging.getLogger("quota_engine.charging.sweeper").warning(
        "sweeper_bad_entry member=%r error=%s", "s;1", "not a number"
    )
    swept, rejected, bad = (json.loads(line) for line in lines(json_stream))
    assert swept["event"] == "sweeper_round_failed" and "message" not in swept
    assert swept["error"] == "Connection refused by 127.0.0.1:6379"
    assert rejected["event"] == "diameter_cer_rejected"
    assert rejected["peer"] == ["10.0.0.7", 39001]
    assert rejected["result_code"] == 5010 and rejected["reason"] == "no common application"
    assert bad["member"] == "'s;1'"


def test_protocol_events_in_text(capture):
    stream = capture("INFO", "text")
    logging.getLogger("protocol.server").info("diameter_server_stopped peers=%d", 3)
    assert lines(stream)[0].endswith("INFO protocol.server diameter_server_stopped peers=3")


@pytest.mark.parametrize(
    ("message", "args"),
    [
        ("demo catalog not installed: %s", ("x",)),  # words: a plain message
        ("sweeper_round_failed error=%s", ()),  # an argument short
        ("Sweeper_round error=%s", ("a",)),  # no event name
        ("sweeper_round error=%s trailing", ("a",)),  # a token that is no field
    ],
)
def test_other_plain_messages_stay_messages(capture, message, args):
    stream = capture("INFO", "json")
    logging.getLogger("lib").warning(message, *args)
    record = json.loads(lines(stream)[0])
    assert record["event"] is None
    assert "message" in record


def test_level_filters_events(capture):
    stream = capture("WARNING", "json")
    log = logging.getLogger("ocs.test")
    log_event(log, "quiet_event")
    log_event(log, "loud_event", level=logging.WARNING)
    assert [json.loads(line)["event"] for line in lines(stream)] == ["loud_event"]


def test_level_is_case_insensitive(capture):
    stream = capture("debug", "json")
    log_event(logging.getLogger("ocs.test"), "debug_event", level=logging.DEBUG)
    assert len(lines(stream)) == 1


def test_exception_is_included(capture):
    stream = capture("INFO", "json")
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        log_event(
            logging.getLogger("ocs.test"), "handler_failed", level=logging.ERROR, exc_info=exc
        )
    record = json.loads(lines(stream)[0])
    assert record["level"] == "ERROR"
    assert "RuntimeError: boom" in record["exc"]


def test_exception_in_text(capture):
    stream = capture("INFO", "text")
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        log_event(
            logging.getLogger("ocs.test"), "handler_failed", level=logging.ERROR, exc_info=exc
        )
    assert "RuntimeError: boom" in stream.getvalue()


def test_configuring_twice_does_not_duplicate_lines(capture):
    first = capture("INFO", "json")
    second = capture("INFO", "text")
    log_event(logging.getLogger("ocs.test"), "once")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1


def test_other_handlers_are_left_alone(capture):
    other = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(other)
    try:
        capture("INFO", "json")
        capture("INFO", "json")
        assert other in root.handlers
    finally:
        root.removeHandler(other)


@pytest.mark.parametrize(
    ("level", "fmt", "message"),
    [
        ("TRACE", "json", "log level must be one of DEBUG, INFO, WARNING, ERROR, got 'TRACE'"),
        ("INFO", "xml", "log format must be one of json, text, got 'xml'"),
    ],
)
def test_bad_configuration_is_refused(level, fmt, message):
    with pytest.raises(ValueError) as info:
        configure_logging(level, fmt, io.StringIO())
    assert str(info.value) == message


@pytest.mark.parametrize(
    "name", ["PeerOpened", "peer-opened", "peer opened", "", "_x", "x__y", "1x"]
)
def test_event_name_must_be_snake_case(name):
    with pytest.raises(ValueError, match="snake_case"):
        log_event(logging.getLogger("ocs.test"), name)


def test_reserved_field_names_are_refused():
    with pytest.raises(ValueError, match=r"\['event', 'ts'\] are reserved"):
        log_event(logging.getLogger("ocs.test"), "x", ts=1, event=2)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("491701234567", "********4567"),
        ("262011234567890", "***********7890"),
        ("12345", "*2345"),
        ("1234", "****"),
        ("12", "**"),
        ("", ""),
    ],
)
def test_mask_identity_keeps_only_the_last_four(value, masked):
    assert mask_identity(value) == masked
