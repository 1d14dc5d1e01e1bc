"""Recording, encoding across processes and merging of the latency histograms."""

from __future__ import annotations

import pickle

from loadtest.stats import (
    Recorder,
    Totals,
    decode_histogram,
    dict_summary,
    histogram_summary,
    new_histogram,
    quantize,
)


def test_flush_snapshots_the_second_and_final_builds_the_histograms():
    recorder = Recorder()
    recorder.on_sent("data_initial", 120)
    recorder.on_sent("data_initial", 900)
    recorder.on_answer("data_initial", 2001, 1000, 800)
    recorder.on_answer("data_initial", 5030, 3001, 2900)
    recorder.on_timeout("data_update")
    recorder.on_error("sms_event", "connection")
    second = recorder.flush_second()
    assert second["sent"] == 2 and second["answered"] == 2
    assert second["ok"] == 1 and second["failed"] == 1
    assert second["timeouts"] == 1 and second["errors"] == 1
    assert second["lag_max_us"] == 900
    assert second["latency"] == {1000: 1, 3000: 1}  # 3001 at the histogram's resolution
    empty = recorder.flush_second()
    assert empty["sent"] == 0 and empty["latency"] == {}
    final = recorder.final()
    histogram = decode_histogram(final["latency"]["data_initial"])
    assert histogram.get_total_count() == 2
    assert decode_histogram(final["lag"]).get_total_count() == 2


def test_quantize_matches_the_histogram_resolution():
    histogram = new_histogram()
    for value in (1, 2047, 2048, 2049, 4097, 123_457, 9_999_999, 59_999_999):
        assert quantize(value) == histogram.get_lowest_equivalent_value(value), value
    assert quantize(0) == 1 and quantize(10**12) <= 60_000_000


def test_dict_summary_percentiles():
    values = {1000 * i: 1 for i in range(1, 101)}  # 1..100 ms
    summary = dict_summary(values)
    assert summary == {"count": 100, "p50_ms": 50.0, "p99_ms": 99.0, "max_ms": 100.0}
    assert dict_summary({})["p99_ms"] is None


def test_totals_merge_workers_exactly():
    finals = []
    for worker in range(3):
        recorder = Recorder()
        for i in range(1000):
            recorder.on_sent("voice_update", 10)
            recorder.on_answer("voice_update", 2001, 100 + worker * 1000 + i, 50 + i)
        recorder.on_side_sent("drain")
        recorder.on_side_outcome("drain", 2001, None)
        recorder.on_side_sent("warmup")
        recorder.on_side_outcome("warmup", None, "timeout")
        recorder.flush_second()
        # what crosses the process boundary
        finals.append(pickle.loads(pickle.dumps(recorder.final())))
    totals = Totals()
    for final in finals:
        totals.add(final)
    assert totals.sent["voice_update"] == 3000
    assert totals.result_codes["voice_update"]["2001"] == 3000
    merged = totals.latency["voice_update"]
    assert merged.get_total_count() == 3000
    assert merged.get_min_value() == 100
    assert 3098 <= merged.get_max_value() <= 3102  # 3 significant digits
    summary = histogram_summary(merged)
    assert 1.59 <= summary["p50_ms"] <= 1.61  # values 100..3099 us
    assert summary["count"] == 3000
    assert totals.side("drain") == {
        "sent": 3,
        "result_codes": {"2001": 3},
        "timeouts": 0,
        "errors": {},
    }
    assert totals.side("warmup")["timeouts"] == 3
    assert totals.codes() == {"2001": 3000}
    assert totals.unexpected_answers({"2001"}) == 0
    assert totals.all_latency().get_total_count() == 3000


def test_values_outside_the_range_are_clamped_not_lost():
    recorder = Recorder()
    recorder.on_answer("sms_event", 2001, 0, 0)
    recorder.on_answer("sms_event", 2001, 10**12, 10**12)
    final = recorder.final()
    assert decode_histogram(final["latency"]["sms_event"]).get_total_count() == 2


def test_summary_of_nothing_is_empty():
    assert histogram_summary(None)["count"] == 0
    assert histogram_summary(new_histogram())["p99_ms"] is None


def test_base64_text_from_the_json_report_decodes():
    histogram = new_histogram()
    histogram.record_value(1234)
    text = histogram.encode().decode("ascii")
    assert decode_histogram(text).get_total_count() == 1
