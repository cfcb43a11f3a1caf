"""The counting function and the time helpers on their own, no files involved.

The time section's machinery is tested here on its own: every row's instant and bound pass through it.
"""

import re
from datetime import UTC, datetime, timedelta

import pytest
from conftest import BASE, edge_windows
from hypothesis import given, settings
from hypothesis import strategies as st

import totaler
from totaler import Window, count_events

# The time section's machinery, tested on its own: every row's instant and every bound pass through it.
HOUR, BadTimestamp, hour_floor = totaler._HOUR, totaler._BadTimestamp, totaler._hour_floor
parse_bound, parse_event_time = totaler._parse_bound, totaler._parse_event_time


def t(text: str) -> int:
    """Microseconds of an ISO timestamp, for readable tests."""
    return parse_bound(text)


def window(start: str, end: str, customer: str | None = None) -> Window:
    return Window(t(start), t(end), customer)


# --- time -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2021-03-01T04:00:00Z", datetime(2021, 3, 1, 4, tzinfo=UTC)),
        ("2021-03-01 04:00:00+00", datetime(2021, 3, 1, 4, tzinfo=UTC)),
        ("2021-03-01T09:30:00+05:30", datetime(2021, 3, 1, 4, tzinfo=UTC)),
        ("2021-03-01", datetime(2021, 3, 1, tzinfo=UTC)),
        ("2021-03-01 04:00:00 UTC", datetime(2021, 3, 1, 4, tzinfo=UTC)),
        ("2021-03-01 04:00:00 +0000", datetime(2021, 3, 1, 4, tzinfo=UTC)),
        ("2021-03-01 04:00:00.250000 UTC", datetime(2021, 3, 1, 4, 0, 0, 250000, tzinfo=UTC)),
        ("2021-02-28T20:00:00-08:00", datetime(2021, 3, 1, 4, tzinfo=UTC)),
        ("2021-03-01T04:00:00.000001Z", datetime(2021, 3, 1, 4, 0, 0, 1, tzinfo=UTC)),
        ("  2021-03-01T04:00:00Z ", datetime(2021, 3, 1, 4, tzinfo=UTC)),
    ],
)
def test_parse_bound_accepts(text: str, expected: datetime) -> None:
    assert parse_bound(text) == totaler._to_micros(expected)


@pytest.mark.parametrize(
    "text, says",
    [
        ("x", "not an ISO 8601"),
        ("", "not an ISO 8601"),
        ("04:00", "not an ISO 8601"),
        ("2021-03", "not an ISO 8601"),
        ("03/01/2021", "not an ISO 8601"),
        ("March 1 2021", "not an ISO 8601"),
        ("2021-02-30", "not an ISO 8601"),
        ("2021-03-01 04:00 EST", "ends in 'EST': only UTC, Z or an offset"),
        ("2021-03-01 04:00:00 PM", "ends in PM; give a 24-hour time"),  # dateutil read it as 16:00
        ("2021-03-01 04:00:00 Sat", "ends in 'Sat'"),  # dateutil ignored the word
        ("0001-01-01T00:00:00+01:00", "falls outside the years 1 to 9999 in UTC"),
        ("9999-12-31T23:30:00-01:00", "falls outside the years 1 to 9999 in UTC"),
        ("2021-03-01 04:00 UTC+3", "mixes a zone name and an offset"),
        ("2021-03-01T25:00:00Z", "not an ISO 8601"),
    ],
)
def test_parse_bound_refuses(text: str, says: str) -> None:
    with pytest.raises(BadTimestamp, match=re.escape(says)):
        parse_bound(text)


def test_printed_forms_parse_back() -> None:
    for micros in (t("2021-03-01T04:00:00Z"), t("2021-03-01T04:00:00.5Z"), t("1999-12-31T23:59:59.999999Z")):
        assert parse_bound(totaler._format_utc(micros)) == micros
    assert parse_bound(totaler._format_bucket(t("2021-03-01T04:00:00Z"))) == t("2021-03-01T04:00:00Z")


@pytest.mark.parametrize(
    "text",
    [
        "2021-03-01 00:01:11.055+00",
        "2021-03-01T00:01:11.055Z",
        "2021-03-01 00:01:11.055",
        "2021-03-01 05:31:11.055+05:30",
        "2021-02-28 16:01:11.055-08:00",
        "2021-03-01 00:01:11.055000+0000",
    ],
)
def test_event_times_in_every_shape_agree(text: str) -> None:
    assert parse_event_time(text) == t("2021-03-01T00:01:11.055Z")


@pytest.mark.parametrize("text", ["2021-03-01", "yesterday", "2021-03-01 24:00:00", "2021-03-01 23:59:60", ""])
def test_event_time_refuses(text: str) -> None:
    with pytest.raises(BadTimestamp):
        parse_event_time(text)


def test_hour_floor_and_formats() -> None:
    assert hour_floor(t("2021-03-01T04:59:59.999999Z")) == t("2021-03-01T04:00:00Z")
    assert hour_floor(t("2021-03-01T05:00:00Z")) == t("2021-03-01T05:00:00Z")
    assert hour_floor(t("1969-12-31T23:30:00Z")) == t("1969-12-31T23:00:00Z")
    assert totaler._format_bucket(t("2021-03-01T04:00:00Z")) == "2021-03-01 04:00:00 +0000"
    assert totaler._format_utc(t("2021-03-01T04:00:00Z")) == "2021-03-01 04:00:00 UTC"
    assert totaler._format_utc(t("2021-03-01T04:00:00.5Z")) == "2021-03-01 04:00:00.500000 UTC"


# --- count_events -----------------------------------------------------------


def full(events) -> list[totaler.Event]:
    """(customer, instant) pairs as the events plain_events yields: every one an INGEST, of its own transaction."""
    return [(customer, instant, "INGEST", f"t{number}") for number, (customer, instant) in enumerate(events)]


def test_the_exercise_2022_example() -> None:
    events = [("a", t(f"2022-01-01T{hm}:00Z")) for hm in ("03:01", "04:29", "04:15", "05:08")]
    counts = count_events(full(events), window("2022-01-01T03:00:00Z", "2022-01-01T06:00:00Z", "a"))
    assert counts == {
        (t("2022-01-01T03:00Z"), "a"): 1,
        (t("2022-01-01T04:00Z"), "a"): 2,
        (t("2022-01-01T05:00Z"), "a"): 1,
    }


def test_start_is_inclusive_and_end_exclusive_to_the_microsecond() -> None:
    w = window("2021-03-01T04:10:00Z", "2021-03-01T04:20:00Z")
    inside = [t("2021-03-01T04:10:00Z"), t("2021-03-01T04:19:59.999999Z")]
    outside = [t("2021-03-01T04:09:59.999999Z"), t("2021-03-01T04:20:00Z")]
    assert count_events(full(("a", m) for m in inside + outside), w) == {(t("2021-03-01T04:00Z"), "a"): 2}


def test_mid_hour_edges_hold_only_events_inside() -> None:
    events = [("a", t(f"2021-03-01T{hms}Z")) for hms in ("04:29:59", "04:30:00", "05:00:00", "06:29:59", "06:30:00")]
    counts = count_events(full(events), window("2021-03-01T04:30:00Z", "2021-03-01T06:30:00Z"))
    assert counts == {
        (t("2021-03-01T04:00Z"), "a"): 1,
        (t("2021-03-01T05:00Z"), "a"): 1,
        (t("2021-03-01T06:00Z"), "a"): 1,
    }


def test_customers_keep_their_order_of_first_counted_event_per_bucket() -> None:
    events = [
        ("b", t("2021-03-01T03:59:00Z")),  # before the window: does not set b's place
        ("a", t("2021-03-01T04:10:00Z")),
        ("b", t("2021-03-01T04:20:00Z")),
        ("b", t("2021-03-01T05:00:00Z")),
        ("a", t("2021-03-01T05:10:00Z")),
    ]
    counts = count_events(full(events), window("2021-03-01T04:00:00Z", "2021-03-01T06:00:00Z"))
    assert list(counts.items()) == [
        ((t("2021-03-01T04:00Z"), "a"), 1),
        ((t("2021-03-01T04:00Z"), "b"), 1),
        ((t("2021-03-01T05:00Z"), "b"), 1),
        ((t("2021-03-01T05:00Z"), "a"), 1),
    ]


def test_across_midnight_and_month_end() -> None:
    events = [("a", t("2021-02-28T23:59:59Z")), ("a", t("2021-03-01T00:00:00Z")), ("a", t("2020-12-31T23:30:00Z"))]
    counts = count_events(full(events), window("2020-12-31T23:00:00Z", "2021-03-01T01:00:00Z"))
    assert counts == {
        (t("2021-02-28T23:00Z"), "a"): 1,
        (t("2021-03-01T00:00Z"), "a"): 1,
        (t("2020-12-31T23:00Z"), "a"): 1,
    }


def test_empty_window_absent_customer_and_no_events() -> None:
    events = [("a", t("2021-03-01T04:10:00Z"))]
    assert count_events(full(events), window("2021-03-01T05:00:00Z", "2021-03-01T06:00:00Z")) == {}
    assert count_events(full(events), window("2021-03-01T04:00:00Z", "2021-03-01T05:00:00Z", "zzz")) == {}
    assert count_events(full([]), window("2021-03-01T04:00:00Z", "2021-03-01T05:00:00Z")) == {}


def test_offsets_count_in_their_utc_hour() -> None:
    events = [
        ("a", parse_event_time("2021-03-01 09:45:00+05:30")),
        ("a", parse_event_time("2021-02-28 20:15:00-08:00")),
    ]
    assert count_events(full(events), window("2021-03-01T00:00:00Z", "2021-03-02T00:00:00Z")) == {
        (t("2021-03-01T04:00Z"), "a"): 2
    }


def test_bucket_listing_covers_edges_and_empty_hours() -> None:
    w = window("2021-03-01T04:30:00Z", "2021-03-01T07:00:00Z", "a")
    table = totaler._by_bucket({(t("2021-03-01T05:00Z"), "a"): 3}, w)
    assert table == [
        (t("2021-03-01T04:00Z"), [("a", 0)]),
        (t("2021-03-01T05:00Z"), [("a", 3)]),
        (t("2021-03-01T06:00Z"), [("a", 0)]),
    ]
    assert [b for b, _ in totaler._by_bucket({}, window("2021-03-01T04:30:00Z", "2021-03-01T04:40:00Z"))] == [
        t("2021-03-01T04:00Z")
    ]


# --- property: against the most obvious brute force ---------------------------

instants = st.integers(min_value=0, max_value=6 * 3600 * 10**6).map(lambda us: BASE + timedelta(microseconds=us))
customers = st.sampled_from(["a", "b", "c", "d"])


def brute_force(events: list[tuple[str, datetime]], start: datetime, end: datetime, customer: str | None) -> dict:
    """For each hour, in order, each event of the file in order: is it in this hour and the window?"""
    answer = {}
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        row: dict[str, int] = {}
        for who, when in events:
            if hour <= when < hour + timedelta(hours=1) and start <= when < end and customer in (None, who):
                row[who] = row.get(who, 0) + 1
        if customer is not None:
            row = {customer: row.get(customer, 0)}
        answer[hour.strftime("%Y-%m-%d %H:%M:%S +0000")] = row
        hour += timedelta(hours=1)
    return answer


@settings(max_examples=400, deadline=None)
@given(events=st.lists(st.tuples(customers, instants), max_size=60), data=st.data())
def test_count_events_matches_brute_force(events, data) -> None:
    instants = [totaler._to_micros(when) for _, when in events]
    w = Window(*data.draw(edge_windows(instants, [None, "a", "b"])))
    start, end, customer = totaler._from_micros(w.start), totaler._from_micros(w.end), w.customer
    counts = count_events(full((who, totaler._to_micros(when)) for who, when in events), w)
    rendered = {totaler._format_bucket(b): dict(rows) for b, rows in totaler._by_bucket(counts, w)}
    expected = brute_force(events, start, end, customer)
    assert rendered == expected
    assert [list(r) for r in rendered.values()] == [list(r) for r in expected.values()]  # customer order too


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 5), st.text(min_size=1, max_size=8), st.integers(1, 10**9)), max_size=20),
    hours=st.integers(1, 6),
    customer=st.none() | st.text(min_size=1, max_size=5),
)
def test_render_json_is_json_dumps_with_indent_2(rows, hours, customer) -> None:
    w = Window(0, hours * HOUR, customer)
    counts = {(bucket * HOUR, who): n for bucket, who, n in rows if bucket < hours and customer in (None, who)}
    document = {totaler._format_bucket(b): dict(r) for b, r in totaler._by_bucket(counts, w)}
    assert totaler.render_json(w, counts) == totaler.json.dumps(document, indent=2) + "\n"
