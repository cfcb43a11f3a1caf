"""Buckets of any width in any zone, event types and CSV: against a model written the obvious way.

The model walks back from an instant a minute at a time, asking zoneinfo for the wall
clock at each, until it meets a bucket's boundary: an instant at which the clock shows a
multiple of the width, or across which the floored wall time changes.  (Every zone tried
here has whole-minute offsets, so boundaries fall on whole UTC minutes.)  The plain path,
the fast path and every way a file is read must give the model's answer.

Reaches inside for the zone machinery the fast path specialises (`_zone_named`, `_fixed_offset`,
`_hour_memos`) and for `_count_file` and conftest's `count_stream`, to read one input by each path.
"""

import gzip
import io
import json
import random
import zoneinfo
from datetime import UTC, datetime, timedelta, timezone
from unittest import mock

import pytest
from conftest import count_stream, run_cli, sizes
from hypothesis import given, settings
from hypothesis import strategies as st

import totaler

MINUTE, HOUR, DAY = 60_000_000, 3_600_000_000, 86_400_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ZONES = ["UTC", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata", "Asia/Kathmandu"]
ZONES += ["+05:45", "-03:30"]
WIDTHS = ["1m", "5m", "15m", "30m", "1h", "2h", "6h", "12h", "1d"]
# The days the clocks change, and a day of each zone that never changes its offset.
CHANGE_DAYS = {
    "America/New_York": ["2021-03-14", "2021-11-07"],
    "Australia/Lord_Howe": ["2021-04-04", "2021-10-03"],  # a change of 30 minutes
    "America/Santiago": ["2021-04-04", "2021-09-05"],  # a change at midnight
}


def tzinfo_of(zone: str):
    if zone == "UTC":
        return UTC
    if zone[0] in "+-":
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        sign = -1 if zone[0] == "-" else 1
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    return zoneinfo.ZoneInfo(zone)


def wall(micros: int, tz) -> int:
    """The zone's clock at MICROS, as microseconds since 1970-01-01 00:00 on that clock."""
    local = (EPOCH + timedelta(microseconds=micros)).astimezone(tz)
    return (local.replace(tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)


def is_boundary(micros: int, width: int, tz) -> bool:
    """Whether a bucket begins at MICROS: the clock shows a multiple of the width, or the floored wall time jumps."""
    now = wall(micros, tz)
    before = wall(micros - 1, tz)
    return now % width == 0 or now - now % width != before - before % width


def model_floor(micros: int, width: int, tz) -> int:
    """The first instant of MICROS's bucket: back a minute at a time to the last boundary."""
    instant = micros - micros % MINUTE
    while not is_boundary(instant, width, tz):
        instant -= MINUTE
    return instant


def model_label(micros: int, tz) -> str:
    local = (EPOCH + timedelta(microseconds=micros)).astimezone(tz)
    return f"{local.year:04d}-{local:%m-%d %H:%M:%S %z}"


def model_answer(rows, start: int, end: int, width: int, tz, customer=None, types=None) -> dict:
    """{label: {customer: count}}: every bucket an instant of [start, end) is in, customers in file order."""
    buckets = [model_floor(start, width, tz)]
    instant = start - start % MINUTE + MINUTE
    while instant < end:
        if is_boundary(instant, width, tz):
            buckets.append(instant)
        instant += MINUTE
    answer = {bucket: {} for bucket in buckets}
    for who, when, event_type in rows:
        if start <= when < end and customer in (None, who) and (types is None or event_type in types):
            row = answer[model_floor(when, width, tz)]
            row[who] = row.get(who, 0) + 1
    if customer is not None:
        answer = {bucket: {customer: row.get(customer, 0)} for bucket, row in answer.items()}
    return {model_label(bucket, tz): row for bucket, row in answer.items()}


def micros_of(text: str) -> int:
    return totaler._to_micros(datetime.fromisoformat(text))


def ours(data: bytes, window: totaler.Window, fast: bool = True) -> dict:
    """The answer totaler gives for DATA, as a document (the JSON it would print)."""
    counts = count_stream(io.BytesIO(data), window, fast=fast).counts
    return json.loads(totaler.render_json(window, counts))


def stamp(micros: int, writing: str) -> str:
    """An instant written as a log might: in UTC (Z, +00, none) or with another offset."""
    moment = EPOCH + timedelta(microseconds=micros)
    if writing in ("Z", "+00", ""):
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f") + writing
    hours, minutes = int(writing[1:3]), int(writing[4:6])
    offset = timedelta(hours=hours, minutes=minutes) * (-1 if writing[0] == "-" else 1)
    return moment.astimezone(timezone(offset)).isoformat(sep="T", timespec="microseconds")


# --- the rule, on the days the clocks change --------------------------------------------------------


@pytest.mark.parametrize(
    "zone, width, start, end, labels",
    [
        ("America/New_York", "1h", "2021-11-07T00:00-04:00", "2021-11-07T03:00-05:00",
         ["00:00:00 -0400", "01:00:00 -0400", "01:00:00 -0500", "02:00:00 -0500"]),
        ("America/New_York", "1h", "2021-03-14T00:00-05:00", "2021-03-14T04:00-04:00",
         ["00:00:00 -0500", "01:00:00 -0500", "03:00:00 -0400"]),
        ("America/New_York", "6h", "2021-03-14T00:00-05:00", "2021-03-14T12:00-04:00",
         ["00:00:00 -0500", "06:00:00 -0400"]),  # the first holds 5 hours
        ("America/New_York", "2h", "2021-11-07T00:00-04:00", "2021-11-07T04:00-05:00",
         ["00:00:00 -0400", "02:00:00 -0500"]),  # the first holds 3 hours
        ("Australia/Lord_Howe", "1h", "2021-10-03T00:00+10:30", "2021-10-03T04:00+11:00",
         ["00:00:00 +1030", "01:00:00 +1030", "02:30:00 +1100", "03:00:00 +1100"]),
        ("Australia/Lord_Howe", "30m", "2021-04-04T01:00+11:00", "2021-04-04T02:30+10:30",
         ["01:00:00 +1100", "01:30:00 +1100", "01:30:00 +1030", "02:00:00 +1030"]),
        ("Australia/Lord_Howe", "1h", "2021-04-04T00:00+11:00", "2021-04-04T03:00+10:30",
         ["00:00:00 +1100", "01:00:00 +1100", "02:00:00 +1030"]),  # 01:00 +1100 holds 90 minutes
        ("Asia/Kolkata", "1h", "2021-03-01T09:00+05:30", "2021-03-01T11:00+05:30",
         ["09:00:00 +0530", "10:00:00 +0530"]),
        ("Asia/Kathmandu", "15m", "2021-03-01T09:00+05:45", "2021-03-01T09:30+05:45",
         ["09:00:00 +0545", "09:15:00 +0545"]),
    ],
)  # fmt: skip
def test_the_buckets_of_a_day_the_clocks_change(zone, width, start, end, labels) -> None:
    buckets = totaler.Buckets(totaler.parse_width(width), zone)
    found = [buckets.label(b) for b in buckets.starts(micros_of(start), micros_of(end))]
    assert [label[11:] for label in found] == labels


def test_days_in_santiago_whose_midnight_comes_twice_or_not_at_all() -> None:
    days = totaler.Buckets(DAY, "America/Santiago")
    found = [
        days.label(b) for b in days.starts(micros_of("2021-04-03T00:00-03:00"), micros_of("2021-04-06T00:00-04:00"))
    ]
    assert found == ["2021-04-03 00:00:00 -0300", "2021-04-04 00:00:00 -0400", "2021-04-05 00:00:00 -0400"]
    assert days.following(micros_of("2021-04-03T00:00-03:00")) - micros_of("2021-04-03T00:00-03:00") == 25 * HOUR
    found = [
        days.label(b) for b in days.starts(micros_of("2021-09-04T00:00-04:00"), micros_of("2021-09-06T12:00-03:00"))
    ]
    assert found == ["2021-09-04 00:00:00 -0400", "2021-09-05 01:00:00 -0300", "2021-09-06 00:00:00 -0300"]


@pytest.mark.parametrize("zone", [z for z in ZONES if z in CHANGE_DAYS])
@pytest.mark.parametrize("width", WIDTHS)
def test_a_microsecond_either_side_of_each_change(zone: str, width: str) -> None:
    """Rows at every change instant and a microsecond either side; windows with bounds on and beside them."""
    tz, size = zoneinfo.ZoneInfo(zone), totaler.parse_width(width)
    buckets = totaler.Buckets(size, zone)
    for day in CHANGE_DAYS[zone]:
        first = micros_of(f"{day}T00:00:00+00:00") - DAY
        changes = [m for m in range(first, first + 3 * DAY, MINUTE) if wall(m, tz) - wall(m - 1, tz) != 1]
        assert len(changes) == 1, (zone, day)
        instants = [changes[0] + delta for delta in (-1, 0, 1)]
        for instant in instants:
            assert buckets.floor(instant) == model_floor(instant, size, tz), (zone, day, instant)
        rows = [
            (f"c{i % 3}", m, "INGEST")
            for i, m in enumerate(m + k * MINUTE for m in instants for k in range(-90, 90, 7))
        ]
        data = "".join(f"{who},INGEST,t,{stamp(when, 'Z')}\n" for who, when, _ in rows).encode()
        for start, end in [(instants[0], instants[2] + 1), (instants[1], instants[2]), (first, first + 3 * DAY)]:
            window = totaler.Window(start, end, None, buckets)
            want = model_answer(rows, start, end, size, tz)
            assert ours(data, window) == want == ours(data, window, fast=False)


# --- the fast path, the plain path and the model, on generated rows -----------------------------------


@st.composite
def logs(draw) -> tuple:
    """Rows near a change of offset of a zone (or any day), written in one or several offsets, in runs or not."""
    zone = draw(st.sampled_from(ZONES))
    width = draw(st.sampled_from(WIDTHS))
    day = draw(st.sampled_from(CHANGE_DAYS.get(zone, ["2021-03-01"])))
    center = micros_of(f"{day}T12:00:00+00:00")
    near = st.integers(center - 40 * HOUR, center + 40 * HOUR)
    writings = draw(st.lists(st.sampled_from(["Z", "+00", "", "+05:30", "-08:00", "+05:45", "-03:30"]), min_size=1))
    times = sorted(draw(st.lists(near, min_size=1, max_size=80))) if draw(st.booleans()) else None
    times = times or draw(st.lists(near, min_size=1, max_size=80))
    rows = []
    for instant in times:
        who, event_type = draw(st.sampled_from(["a", "b", "c"])), draw(st.sampled_from(["INGEST", "SEND"]))
        repeat = draw(st.integers(1, 6))  # runs of one customer and hour, which the fast path reads by key
        rows += [(who, instant + k, event_type) for k in range(repeat)]
    q = '"' if draw(st.booleans()) else ""  # every field quoted, as csv.QUOTE_ALL writes, or none
    written = [
        f"{q}{who}{q},{q}{t}{q},{q}x{q},{q}{stamp(when, draw(st.sampled_from(writings)))}{q}\n" for who, when, t in rows
    ]
    start = draw(near)
    end = draw(st.integers(start + 1, center + 41 * HOUR))
    return zone, width, rows, "".join(written).encode(), start, end


@settings(max_examples=150, deadline=None)
@given(log=logs(), customer=st.sampled_from([None, "a"]), types=st.sampled_from([None, ("SEND",)]))
def test_fast_and_plain_paths_give_the_models_answer(log, customer, types) -> None:
    zone, width, rows, data, start, end = log
    size = totaler.parse_width(width)
    window = totaler.Window(
        start, end, customer, totaler.Buckets(size, zone), None if types is None else frozenset(types)
    )
    want = model_answer(rows, start, end, size, tzinfo_of(zone), customer, types)
    with sizes(1 << 12, 1 << 10, segment=1 << 8):  # many small blocks: runs, groups, sparse and cut pieces
        fast = ours(data, window)
    assert fast == want  # counts, buckets, labels
    assert list(map(list, fast.values())) == list(map(list, want.values()))  # and customers' order
    assert ours(data, window, fast=False) == want
    csv_lines = totaler.render_csv(window, count_stream(io.BytesIO(data), window).counts).splitlines()
    rows_of_json = [f"{label},{who},{n}" for label, row in want.items() for who, n in row.items()]
    assert csv_lines == ["bucket,customer_id,count", *rows_of_json]  # the JSON's lines, in its order


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("width", WIDTHS)
def test_the_fast_path_equals_the_plain_path_on_events_csv_shifted_into_each_zone(zone: str, width: str) -> None:
    """events.csv's first 20,000 rows in runs, as they are: every width and zone, fast against plain."""
    with open(totaler.__file__.replace("totaler.py", "events.csv"), "rb") as stream:
        data = b"".join(stream.readline() for _ in range(20_000))
    start, end = micros_of("2021-03-01T00:20:00+00:00"), micros_of("2021-03-01T08:50:00+00:00")
    window = totaler.Window(start, end, None, totaler.Buckets(totaler.parse_width(width), zone))
    fast = ours(data, window)
    assert fast == ours(data, window, fast=False) and list(map(list, fast.values())) == list(
        map(list, ours(data, window, fast=False).values())
    )


# --- the command line: bounds in the zone, formats, bad values -----------------------------------------


def test_bounds_without_an_offset_are_wall_times_in_the_zone_and_printed_there() -> None:
    result = run_cli("events.csv", "2021-03-01T09:30", "2021-03-01T12:00", "--tz", "Asia/Kolkata")
    lines = result.stdout.decode().splitlines()
    assert lines[1:3] == ["Start time: 2021-03-01 09:30:00 +0530", "End time: 2021-03-01 12:00:00 +0530"]
    assert lines[4] == "Timebucket: 2021-03-01 09:00:00 +0530"
    utc = run_cli("events.csv", "2021-03-01T04:00:00Z", "2021-03-01T06:30:00Z", "--tz", "Asia/Kolkata")
    assert utc.stdout == result.stdout  # the same instants, written with Z


@pytest.mark.parametrize(
    "bound, message",
    [
        ("2021-03-14T02:30", "START '2021-03-14T02:30' does not exist in America/New_York (the clocks skip it)"),
        ("2021-11-07T01:30", "START '2021-11-07T01:30' happens twice in America/New_York (at -0400 and -0500)"),
    ],
)
def test_a_wall_time_that_does_not_exist_or_exists_twice_asks_for_an_offset(bound: str, message: str) -> None:
    result = run_cli("events.csv", bound, "2021-11-08", "--tz", "America/New_York")
    assert result.returncode == 2 and result.stderr.decode() == f"totaler: error: {message}: give an offset\n"
    with_offset = run_cli("events.csv", bound + "-04:00", "2021-11-08", "--tz", "America/New_York")
    assert with_offset.returncode == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bucket", "7m"], "argument --bucket: '7m' is not a bucket width: give Nm with N dividing 60"),
        (["--bucket", "0h"], "argument --bucket: '0h' is not a bucket width"),
        (["--bucket", "2d"], "argument --bucket: '2d' is not a bucket width"),
        (["--tz", "Mars/Olympus"], "argument --tz: 'Mars/Olympus' is not a time zone: give an IANA name"),
        (["--tz", "+05:60"], "argument --tz: '+05:60' is not a time zone"),
        (["--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["--format", "csv", "--json"], "--json and --format csv ask for two formats: give one"),
    ],
)
def test_bad_values_are_one_line_and_status_2(args: list[str], message: str) -> None:
    result = run_cli("events.csv", "2021-03-01", "2021-03-02", *args)
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"totaler: error: {message}")


def test_a_fixed_offset_is_a_zone_too() -> None:
    fixed = run_cli("events.csv", "2021-03-01T09:30", "2021-03-01T12:00", "--tz", "+05:30", "--json")
    named = run_cli("events.csv", "2021-03-01T09:30", "2021-03-01T12:00", "--tz", "Asia/Kolkata", "--json")
    assert fixed.returncode == 0 and fixed.stdout == named.stdout


def test_csv_is_the_json_answer_row_by_row_rfc_4180_quoted(tmp_path) -> None:
    log = tmp_path / "log.csv"
    log.write_bytes(
        b'"a,b",INGEST,t1,2021-03-01T04:05:00Z\n"say ""hi""",INGEST,t2,2021-03-01T04:06:00Z\n'
        b'"line\rbreak",INGEST,t3,2021-03-01T05:06:00Z\nplain,INGEST,t4,2021-03-01T05:07:00Z\n'
    )
    window = ["2021-03-01T04:00:00Z", "2021-03-01T07:00:00Z"]
    result = run_cli(str(log), *window, "--format", "csv")
    assert result.stdout.decode() == (
        "bucket,customer_id,count\n"
        '2021-03-01 04:00:00 +0000,"a,b",1\n'
        '2021-03-01 04:00:00 +0000,"say ""hi""",1\n'
        '2021-03-01 05:00:00 +0000,"line\rbreak",1\n'
        "2021-03-01 05:00:00 +0000,plain,1\n"
    )  # the empty 06:00 bucket has no row
    one = run_cli(str(log), *window, "plain", "--format", "csv")
    assert one.stdout.decode() == (
        "bucket,customer_id,count\n2021-03-01 04:00:00 +0000,plain,0\n"
        "2021-03-01 05:00:00 +0000,plain,1\n2021-03-01 06:00:00 +0000,plain,0\n"
    )
    document = json.loads(run_cli(str(log), *window, "--json").stdout)
    rows = result.stdout.decode().split("\n")[1:-1]  # one line a row: a CR inside a field is quoted
    assert len(rows) == sum(len(row) for row in document.values())


def test_event_types_are_exact_after_spaces_and_repeatable(tmp_path) -> None:
    log = tmp_path / "log.csv"
    log.write_bytes(
        b"a, INGEST ,t1,2021-03-01T04:05:00Z\na,ingest,t2,2021-03-01T04:06:00Z\n"
        b'b,"SEND",t3,2021-03-01T04:07:00Z\nc,INGEST-WITH-PROXY,t4,2021-03-01T04:08:00Z\n'
    )
    window = ["2021-03-01T04:00:00Z", "2021-03-01T05:00:00Z", "--json"]
    answer = json.loads(run_cli(str(log), *window, "--event-type", "INGEST").stdout)
    assert answer == {"2021-03-01 04:00:00 +0000": {"a": 1}}
    both = json.loads(run_cli(str(log), *window, "--event-type", "INGEST", "--event-type", "SEND").stdout)
    assert both == {"2021-03-01 04:00:00 +0000": {"a": 1, "b": 1}}


def test_every_way_a_log_is_read_gives_the_same_answer(tmp_path) -> None:
    """Standard input, gzip, a directory and parts on workers, for a zone, a width and an event type."""
    rng = random.Random(5)
    rows = [
        f"c{rng.randrange(4)},{rng.choice(['INGEST', 'SEND'])},t{i},"
        f"{stamp(micros_of('2021-11-06T12:00:00+00:00') + rng.randrange(2 * DAY), rng.choice(['Z', '+05:30']))}\n"
        for i in range(30_000)
    ]
    data = "".join(sorted(rows, key=lambda row: row[-30:])).encode()
    (tmp_path / "log.csv").write_bytes(data)
    (tmp_path / "log.csv.gz").write_bytes(gzip.compress(data))
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.csv").write_bytes(data[: len(data) // 2].rsplit(b"\n", 1)[0] + b"\n")
    (tmp_path / "dir" / "b.csv").write_bytes(data[len(data[: len(data) // 2].rsplit(b"\n", 1)[0] + b"\n") :])
    args = ["2021-11-06T20:00", "2021-11-07T22:00", "--tz", "America/New_York", "--bucket", "30m"]
    args += ["--event-type", "SEND", "--json"]
    answers = {
        "file": run_cli(str(tmp_path / "log.csv"), *args, "--jobs", "1").stdout,
        "stdin": run_cli("-", *args, stdin=data).stdout,
        "gzip": run_cli(str(tmp_path / "log.csv.gz"), *args).stdout,
        "dir": run_cli(str(tmp_path / "dir"), *args).stdout,
    }
    with sizes(1 << 16, 1 << 12, part=1 << 18):
        window = totaler.parse_window(*args[:2], None, 1000, buckets=totaler.Buckets(30 * MINUTE, "America/New_York"),
                                      event_types=["SEND"])  # fmt: skip
        parts = totaler._count_file(str(tmp_path / "log.csv"), window, jobs=3)
    answers["parts"] = totaler.render_json(window, parts.counts).encode()
    assert len(set(answers.values())) == 1, {k: v[:200] for k, v in answers.items()}
    assert json.loads(answers["file"])["2021-11-07 01:00:00 -0500"] is not None


def test_zones_come_from_dateutils_copy_where_the_system_has_none() -> None:
    """A slim container image has no tz database: python-dateutil's own copy gives the same buckets."""
    window = ("2021-11-07T00:00:00-04:00", "2021-11-07T04:00:00-05:00")
    with_system = [totaler.Buckets(HOUR, "America/New_York").label(b) for b in totaler.Buckets(
        HOUR, "America/New_York").starts(*map(micros_of, window))]  # fmt: skip
    totaler._zone_named.cache_clear()
    totaler._fixed_offset.cache_clear()
    totaler._hour_memos.cache_clear()
    try:
        with mock.patch.object(zoneinfo, "ZoneInfo", side_effect=zoneinfo.ZoneInfoNotFoundError("none here")):
            assert type(totaler._zone_named("America/New_York")).__module__.startswith("dateutil")
            buckets = totaler.Buckets(HOUR, "America/New_York")
            assert [buckets.label(b) for b in buckets.starts(*map(micros_of, window))] == with_system
    finally:
        totaler._zone_named.cache_clear()
        totaler._fixed_offset.cache_clear()
        totaler._hour_memos.cache_clear()


def test_a_clock_going_back_to_no_buckets_start_keeps_the_bucket_it_left_or_begins_one(tmp_path) -> None:
    """Lord Howe, 2022-04-03: 02:00 +11 back to 01:30 +10:30, as the README's example says."""
    path = tmp_path / "lh.csv"
    path.write_text("a,INGEST,t1,2022-04-02T14:50:00Z\nb,INGEST,t2,2022-04-02T15:05:00Z\n")
    zone = ["--tz", "Australia/Lord_Howe", "--json"]
    hour = run_cli(str(path), "2022-04-02T14:00Z", "2022-04-02T16:30Z", *zone)
    assert json.loads(hour.stdout) == {"2022-04-03 01:00:00 +1100": {"a": 1, "b": 1}, "2022-04-03 02:00:00 +1030": {}}
    quarter = run_cli(str(path), "2022-04-02T14:40Z", "2022-04-02T15:20Z", *zone, "--bucket", "15m")
    assert list(json.loads(quarter.stdout).items()) == [
        ("2022-04-03 01:30:00 +1100", {}),
        ("2022-04-03 01:45:00 +1100", {"a": 1}),
        ("2022-04-03 01:30:00 +1030", {"b": 1}),
        ("2022-04-03 01:45:00 +1030", {}),
    ]


def test_a_negative_offset_is_a_zone_written_after_tz_as_it_is() -> None:
    """argparse would take '-03:30' for an option: '--tz -03:30' is read as '--tz=-03:30'."""
    window = ["events.csv", "2021-03-01T04:00:00Z", "2021-03-01T06:00:00Z", "--json"]
    apart, joined = run_cli(*window, "--tz", "-03:30"), run_cli(*window, "--tz=-03:30")
    assert apart.returncode == joined.returncode == 0 and apart.stdout == joined.stdout
    assert next(iter(json.loads(apart.stdout))) == "2021-03-01 00:00:00 -0330"


# --- zones whose changes leave a bucket shorter than its width after a change, and the ends of time -------------

# Pacific/Chatham changes by an hour at 02:45 / 03:45 local; Antarctica/Troll by two hours; Casey between +08 and
# +11; St_Johns at 00:01 local (2010).
ODD_CHANGES = {
    "Pacific/Chatham": ["2021-04-03", "2021-09-25"],
    "Antarctica/Troll": ["2021-03-28", "2021-10-31"],
    "Antarctica/Casey": ["2019-10-03", "2020-03-07"],
    "America/St_Johns": ["2010-03-14", "2010-11-07"],
}


def changes_near(day: str, tz) -> list[int]:
    """The instants (on whole minutes) at which TZ's offset changes within a day of DAY."""
    first = micros_of(f"{day}T00:00:00+00:00") - DAY
    return [m for m in range(first, first + 3 * DAY, MINUTE) if wall(m, tz) - wall(m - 1, tz) != 1]


@pytest.mark.parametrize("zone", list(ODD_CHANGES))
@pytest.mark.parametrize("width", ["10m", "15m", "20m", "30m", "1h", "2h", "3h", "1d"])
def test_every_bucket_around_a_change_is_listed_and_counts_its_rows(zone: str, width: str) -> None:
    """Each bucket the model finds near each change, in order (none skipped where a change begins a bucket that
    ends sooner than its width), and rows every 7 minutes counted in them by the fast and the plain path."""
    tz, size = zoneinfo.ZoneInfo(zone), totaler.parse_width(width)
    buckets = totaler.Buckets(size, zone)
    for day in ODD_CHANGES[zone]:
        (change,) = changes_near(day, tz)
        start, end = change - 5 * HOUR - 17 * MINUTE, change + 4 * HOUR + 3 * MINUTE
        listed = list(buckets.starts(start, end))
        model = [model_floor(start, size, tz)] + [
            m for m in range(start + MINUTE, end, MINUTE) if is_boundary(m, size, tz)
        ]
        assert listed == sorted(set(model)), (zone, width, day)
        rows = [(f"c{i % 2}", m, "INGEST") for i, m in enumerate(range(start, end, 7 * MINUTE))]
        data = "".join(f"{who},INGEST,t,{stamp(when, 'Z')}\n" for who, when, _ in rows).encode()
        window = totaler.Window(start, end, None, buckets)
        assert ours(data, window) == model_answer(rows, start, end, size, tz) == ours(data, window, fast=False)


def test_a_row_in_chathams_bucket_after_its_clocks_go_back_is_counted_in_every_format(tmp_path) -> None:
    """2021-04-04 03:45 +1345 back to 02:45 +1245: 02:45 begins a bucket of 15 minutes, which holds the row."""
    path = tmp_path / "chatham.csv"
    path.write_text("a,INGEST,t1,2021-04-03T14:05:00Z\n")
    window = [str(path), "2021-04-03T12:00Z", "2021-04-03T16:00Z", "--tz", "Pacific/Chatham"]
    answer = json.loads(run_cli(*window, "--json").stdout)
    assert list(answer)[3:] == ["2021-04-04 02:45:00 +1245", "2021-04-04 03:00:00 +1245", "2021-04-04 04:00:00 +1245"]
    assert answer["2021-04-04 02:45:00 +1245"] == {"a": 1} and sum(map(len, answer.values())) == 1
    assert run_cli(*window, "--format", "csv").stdout.decode().splitlines()[1:] == ["2021-04-04 02:45:00 +1245,a,1"]
    text = run_cli(*window)
    assert (
        text.returncode == 0
        and "Timebucket: 2021-04-04 02:45:00 +1245\nCustomer ID: a Calls: 1" in text.stdout.decode()
    )


@pytest.mark.parametrize(
    "start, end, zone, width, answer",
    [
        ("9999-12-31T22:00Z", "9999-12-31T23:00Z", "Europe/Paris", "1h", {"9999-12-31 23:00:00 +0100": {"b": 1}}),
        ("9999-12-31T22:45Z", "9999-12-31T23:00Z", "Europe/Paris", "15m", {"9999-12-31 23:45:00 +0100": {}}),
        ("9999-12-31T22:00Z", "9999-12-31T23:59:59.999999Z", "America/New_York", "1h",
         {f"9999-12-31 {h}:00:00 -0500": {"b": 1} if h == 17 else {} for h in (17, 18)}),
        ("0001-01-01T05:00Z", "0001-01-02T00:00Z", "America/New_York", "1d", {"0001-01-01 00:00:00 -045602": {"c": 1}}),
    ],
)  # fmt: skip
def test_buckets_at_the_ends_of_the_years_1_to_9999_are_answered_not_a_traceback(
    tmp_path, start: str, end: str, zone: str, width: str, answer: dict
) -> None:
    """The bucket after the last of the year 9999 in a zone ahead of UTC has no date, nor the instant after the year
    in one behind; a day's bucket in the year 1 begins before the window, at local midnight (LMT, -4:56:02)."""
    path = tmp_path / "ends.csv"
    path.write_text("b,INGEST,t2,9999-12-31T22:30:00Z\nc,INGEST,t3,0001-01-01T06:00:00Z\n")
    result = run_cli(str(path), start, end, "--tz", zone, "--bucket", width, "--json")
    assert (result.returncode, result.stderr, json.loads(result.stdout)) == (0, b"", answer)


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(["Asia/Hong_Kong", "Antarctica/Casey", *ODD_CHANGES, *ZONES]),
    width=st.sampled_from(["1m", "20m", "1h", "3h", "1d"]),
    start=st.integers(micros_of("1967-01-01T00:00:00+00:00"), micros_of("2022-01-01T00:00:00+00:00")),
    span=st.integers(1, 400 * DAY),
)
def test_the_bucket_count_a_limit_is_checked_against_is_never_under_and_exact_without_a_change(
    zone, width, start, span
):
    """_bucket_count bounds what starts() lists (a change begins a bucket and may cut the two beside it short: two
    more), and is the count where the offset never changes from the first bucket's start to the end (a limit of
    20,000 must let 20,000 through there)."""
    window = totaler.Window(start, start + span, None, totaler.Buckets(totaler.parse_width(width), zone))
    listed = sum(1 for _ in window.buckets.starts(window.start, window.end))
    bound = totaler._bucket_count(window)
    assert listed <= bound
    first = window.buckets.floor(window.start)
    if totaler._fixed_offset(zone) is not None or not totaler._offset_changes(first - 1, window.end, zone):
        assert listed == bound


@pytest.mark.parametrize(
    "zone, width, start, end, listed",
    [
        ("Asia/Hong_Kong", 3 * HOUR, "1967-12-16T05:08:10.863095+00:00", "1974-10-19T23:08:10.863095+00:00", 20_013),
        ("Europe/Istanbul", 3 * HOUR, "2016-03-27T01:30:00+00:00", "2023-01-30T00:00:00.000001+00:00", 20_001),
        ("Pacific/Chatham", 3 * HOUR, "2024-04-06T13:20:00+00:00", "2024-04-06T17:20:00+00:00", 4),  # two short
        ("Australia/Lord_Howe", HOUR, "2021-10-03T02:31:00+11:00", "2021-10-03T03:01:00+11:00", 2),
        ("America/New_York", DAY, "2021-03-14T12:00:00-04:00", "2021-03-15T00:30:00-04:00", 2),
    ],
)
def test_windows_a_helper_found_the_bound_under_are_bounded(zone, width, start, end, listed) -> None:
    """Changes before the window's start but inside its first bucket, and one change cutting two buckets short."""
    window = totaler.Window(micros_of(start), micros_of(end), None, totaler.Buckets(width, zone))
    assert sum(1 for _ in window.buckets.starts(window.start, window.end)) == listed <= totaler._bucket_count(window)


def test_the_text_report_ends_the_year_9999_at_24_00_and_wall_times_past_the_years_are_one_line_errors(tmp_path):
    """An end at the midnight after 9999-12-31 ahead of UTC has no date: printed 24:00, as ISO 8601 writes it; a bound
    whose wall time in the zone is outside the years 1 to 9999 in UTC is an error of status 2, not a traceback."""
    path = tmp_path / "far.csv"
    path.write_text("a,INGEST,t1,9999-12-31T09:30:00Z\n")
    for zone in ["Pacific/Kiritimati", "+14:00"]:
        text = run_cli(str(path), "9999-12-31T08:00Z", "9999-12-31T10:00Z", "--tz", zone)
        assert text.returncode == 0 and text.stderr == b""
        assert text.stdout.decode().splitlines()[1:3] == [
            "Start time: 9999-12-31 22:00:00 +1400",
            "End time: 9999-12-31 24:00:00 +1400",
        ]
    for bounds, zone in [(["0001-01-01T00:00", "0001-01-01T03:00"], "Asia/Tokyo"),
                         (["9999-12-31T20:00", "9999-12-31T23:00"], "America/New_York")]:  # fmt: skip
        result = run_cli(str(path), *bounds, "--tz", zone, "--json")
        assert result.returncode == 2 and result.stderr.decode() == (
            f"totaler: error: START {bounds[0]!r} in {zone} falls outside the years 1 to 9999 in UTC\n"
        )


def test_a_bound_of_a_one_digit_hour_without_an_offset_is_a_wall_time_in_the_zone_too() -> None:
    """'2021-03-01 9:00' goes to dateutil (fromisoformat wants two digits); without an offset it is 09:00 in --tz,
    as '2021-03-01 09:00' is, not 09:00 UTC."""
    window = ["events.csv", "2021-03-01 9:00", "2021-03-01 10:00", "--tz", "America/New_York", "--json"]
    two_digits = run_cli(*[("2021-03-01 09:00" if arg == "2021-03-01 9:00" else arg) for arg in window])
    one_digit = run_cli(*window)
    assert one_digit.returncode == 0 and one_digit.stdout == two_digits.stdout
    assert list(json.loads(one_digit.stdout)) == ["2021-03-01 09:00:00 -0500"]
    with_offset = run_cli("events.csv", "2021-03-01 9:00+00:00", "2021-03-01 10:00", "--tz", "America/New_York")
    assert with_offset.returncode == 0 and "Start time: 2021-03-01 04:00:00 -0500" in with_offset.stdout.decode()
