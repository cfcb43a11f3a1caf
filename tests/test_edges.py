"""Exact window bounds: an event on a bound, a microsecond either side, and an hour's first and last microsecond.

Reaches inside (through conftest's `count_stream`) and for `_parse_event_time`: one row's instant against each bound.
"""

import io
import time
from datetime import UTC, datetime

import pytest
from conftest import SEED, count_stream, run_cli

import totaler


def t(text: str) -> int:
    return totaler.parse_instant(text)


FILLER = b"".join(f"f{i % 5},INGEST,t{i},2021-03-01 04:{i % 60:02d}:00.5+00\n".encode() for i in range(200))


@pytest.mark.parametrize(
    "row, start, end, counted",
    [
        ("04:59:59.999999", "04:59:59.999999", "05:00:00", 1),  # the last microsecond of an hour, alone
        ("04:59:59.999999", "04:59:59.999998", "04:59:59.999999", 0),
        ("05:00:00", "04:59:59.999999", "05:00:00", 0),  # END is the next hour's first microsecond
        ("05:00:00", "05:00:00", "05:00:00.000001", 1),
        ("04:00:00", "03:59:59.999999", "04:00:00.000001", 1),
        ("04:00:00", "04:00:00.000001", "05:00:00", 0),
    ],
)
def test_fast_path_at_an_hour_boundary_to_the_microsecond(row: str, start: str, end: str, counted: int) -> None:
    """A block of canonical rows, so that the fast path takes it; the plain path must agree."""
    data = FILLER + f"a,INGEST,t,2021-03-01 {row}+00\n".encode() + FILLER
    window = totaler.Window(t(f"2021-03-01T{start}Z"), t(f"2021-03-01T{end}Z"), "a")
    for fast in (True, False):
        tally = count_stream(io.BytesIO(data), window, fast=fast)
        assert sum(tally.counts.values()) == counted, f"fast={fast}"


H04 = "2021-03-01 04:00:00 +0000"
EDGE_LOG = (
    b"c,INGEST,t1,2021-03-01 04:10:00+00\n"
    b"a,INGEST,t2,2021-03-01 04:29:59.999999+00\n"
    b"b,INGEST,t3,2021-03-01 04:30:00+00\n"
    b"d,INGEST,t4,2021-03-01 05:10:00+00\n"
    b"e,INGEST,t5,2021-03-01 05:30:00+00\n"
)


@pytest.mark.parametrize(
    "start, end, answer",
    [
        ("04:00:00", "04:30:00", {"2021-03-01 04:00:00 +0000": {"c": 1, "a": 1}}),  # an event exactly on END
        ("04:30:00", "05:00:00", {"2021-03-01 04:00:00 +0000": {"b": 1}}),  # one 1 µs before START
        ("04:29:59.999999", "04:30:00", {"2021-03-01 04:00:00 +0000": {"a": 1}}),
        ("04:30:00", "05:30:00", {"2021-03-01 04:00:00 +0000": {"b": 1}, "2021-03-01 05:00:00 +0000": {"d": 1}}),
        (
            "04:29:59.999999",
            "05:10:00",
            {"2021-03-01 04:00:00 +0000": {"a": 1, "b": 1}, "2021-03-01 05:00:00 +0000": {}},
        ),
    ],
    ids=["event-on-end", "event-1us-before-start", "one-microsecond", "two-hours", "edges-on-events"],
)
def test_the_index_at_partial_hour_edges(tmp_path, start: str, end: str, answer: dict) -> None:
    """Both edges in one hour and in different hours, each on or 1 µs from an event; the CLI must agree."""
    path = tmp_path / "edges.csv"
    path.write_bytes(EDGE_LOG)
    window = totaler.Window(t(f"2021-03-01T{start}Z"), t(f"2021-03-01T{end}Z"))
    index = totaler.build_index(str(path))
    from_index = totaler.render_json(window, index.counts(window))
    assert totaler.json.loads(from_index) == answer
    assert list(totaler.json.loads(from_index).values()) == list(answer.values())  # and customer order
    cli = run_cli(str(path), f"2021-03-01T{start}Z", f"2021-03-01T{end}Z", "--json")
    assert cli.stdout.decode() == from_index


def test_the_machine_zone_is_not_utc_here_and_changes_no_answer() -> None:
    """conftest sets TZ=America/New_York for every test and every process they start."""
    assert time.localtime(0).tm_gmtoff != 0  # otherwise the tests below prove nothing
    assert t("2021-03-01T04:00:00") == totaler._to_micros(datetime(2021, 3, 1, 4, tzinfo=UTC))
    assert t("2021-03-01 04:00:00 UTC") == t("2021-03-01") + 4 * totaler._HOUR
    assert t("2021-03-01 4:00") == t("2021-03-01T04:00:00Z")  # read by dateutil
    assert totaler._parse_event_time("2021-03-01 04:00:00") == t("2021-03-01T04:00:00Z")
    text = run_cli("events.csv", "2021-03-01T04:00:00", "2021-03-01T06:30:00").stdout
    assert text.startswith(b"Input file: events.csv\nStart time: 2021-03-01 04:00:00 UTC\n")
    assert text == run_cli("events.csv", *SEED).stdout
