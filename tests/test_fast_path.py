"""The fast path counts exactly what the plain path counts, on generated messy files.

Reaches inside by design: the fast path's pieces (patterns, runs, sparse blocks, block sizes shrunk)
are each held to the plain path, which no public function can do at a block's edge.
"""

import io
from contextlib import suppress
from datetime import datetime, timedelta

import pytest
from conftest import BASE, EVENTS, count_stream, edge_windows, file_backed, patched
from hypothesis import given, settings
from hypothesis import strategies as st

import totaler

BARE, QUOTED = totaler._RowShape(quoted=False), totaler._RowShape(quoted=True)
LOOSE_BARE = totaler._RowShape(quoted=False, loose=True)

# Whole seconds often, and an hour's first and last microseconds, so that events fall on
# and beside the bounds edge_windows draws; any microsecond otherwise.
hour_edges = st.builds(
    lambda hours, nudge: BASE + timedelta(hours=hours, microseconds=nudge),
    st.integers(1, 5),
    st.sampled_from([-1, 0, 1]),
)
moments = st.one_of(
    st.integers(min_value=0, max_value=5 * 3600).map(lambda s: BASE + timedelta(seconds=s)),
    hour_edges,
    hour_edges,
    st.integers(min_value=0, max_value=5 * 3600 * 10**6).map(lambda us: BASE + timedelta(microseconds=us)),
)
ascii_customers = st.sampled_from(["a", "b", "c9", "30330c9c4e7173ba9474c46ee5191570"])
customers = st.sampled_from(["a", "b", "c9", "30330c9c4e7173ba9474c46ee5191570", "é", "x y"])


def canonical_stamp(moment: datetime, digits: int, suffix: str, sep: str) -> str:
    """A UTC timestamp the fast path reads: 0-6 fraction digits, a UTC suffix or none."""
    text = moment.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if digits:
        text += "." + f"{moment.microsecond:06d}"[:digits]
    return text + suffix


# Whole-hour, half- and quarter-hour zones, written each way the fast path reads (and -00:00).
OFFSETS = [(0, "+00"), (5, "+05"), (-8, "-0800"), (-8, "-08:00"), (5.5, "+05:30"), (5.5, "+0530"), (5.75, "+05:45")]
OFFSETS += [(-9.5, "-09:30"), (-3.5, "-0330"), (13, "+13:00"), (0, "-00:00")]


def local_stamp(moment: datetime, hours: float, zone: str, digits: int, sep: str) -> str:
    """MOMENT written in the local time of a zone HOURS ahead of UTC, ending in ZONE."""
    local = moment.astimezone(totaler.timezone(timedelta(hours=hours)))
    return canonical_stamp(local.replace(tzinfo=None), digits, zone, sep)


@st.composite
def rows(draw, messy: bool = True) -> bytes:
    """One line of a log: mostly of a fast shape (UTC or any fixed zone, fields bare or all quoted), and
    sometimes (if MESSY) any other shape the world sends."""
    who = draw(customers if messy else ascii_customers)
    when = draw(moments)
    digits = draw(st.integers(0, 6) | st.just(6))  # all six digits often: a microsecond from an hour's edge
    sep = draw(st.sampled_from([" ", "T"]))
    stamp = canonical_stamp(when, digits, draw(st.sampled_from(["+00", "Z", "", "+0000", "+00:00"])), sep)
    if draw(st.booleans()):
        stamp = local_stamp(when, *draw(st.sampled_from(OFFSETS)), digits, sep)
    kinds = ["canonical"] * 6 + ["quoted all"] * 2 + ["quoted", "spaces", "crlf", "blank", "bad", "header", "nul"]
    kinds += ["loose"]
    kind = draw(st.sampled_from(kinds if messy else ["canonical", "canonical", "quoted all"]))
    event, txid = draw(st.sampled_from(["INGEST", "API CALL", ""])), draw(st.sampled_from(["t1", "2021-03-01 04:00"]))
    line = f"{who},{event},{txid},{stamp}"
    if kind == "quoted all":  # what csv.QUOTE_ALL writes
        line = f'"{who}","{event}","{txid}","{stamp}"'
    elif kind == "quoted":
        line = f'"{who}","{event}, quoted",{txid},"{stamp}"'
    elif kind == "spaces":
        line = f" {who} ,{event}, {txid} , {stamp} "
    elif kind == "crlf":
        line += "\r"
    elif kind == "blank":
        line = draw(st.sampled_from(["", "  ", "\r"]))
    elif kind == "bad":
        line = draw(
            st.sampled_from(
                [
                    f"{who},{event},{stamp}",
                    f",{event},{txid},{stamp}",
                    f"{who},{event},{txid},{stamp[:10]}",
                    f"{who},{event},{txid},2021-02-30 04:00:00+00",
                    f"{who},{event},{txid},0000-01-01 04:00:00+00",
                    f'{who},"{event},{txid},{stamp}',
                    f"{who},{event},{txid},{stamp},x",
                    f'"{who}","{event}","{txid}","{stamp}',  # a quote left open
                    f'"{who}","{event}","{txid}",{stamp}"',
                    f'"{who}",{event},"{txid}","{stamp}"x',
                    f"{who},{event},{txid},{stamp[:19]}+24:00",  # zones fromisoformat refuses
                    f"{who},{event},{txid},{stamp[:19]}+5",
                ]
            )
        )
    elif kind == "header":
        line = "customer_id,event_type,transaction_id,timestamp"
    elif kind == "nul":
        line = f"{who},{event}\0,{txid},{stamp}"
    elif kind == "loose":  # middle fields a loose pattern takes in: control bytes, read alike; a CR, a row cut in two
        loose = [f"{who},I\x01N\tG\x7f,t\x1c,{stamp}", f"{who},IN\rGEST,{txid},{stamp}"]
        line = draw(st.sampled_from([*loose, f"{who},{event}\n{txid},x,{stamp}"]))
    return line.encode("utf-8")


def small_blocks(
    block: int, segment: int, long_run: int = totaler._LONG_RUN, sparse_ratio: int = totaler._SPARSE_RATIO
):
    """Shrink the block and segment sizes so that small files exercise every split; set when runs and
    sparse blocks are used (SPARSE_RATIO 0: every block whose rows are all valid is tried as sparse)."""
    return patched(BLOCK_SIZE=block, SMALL_BLOCK=segment, LONG_RUN=long_run, SPARSE_RATIO=sparse_ratio)


def answer(data: bytes, window: totaler.Window, fast: bool) -> tuple[list, int, list]:
    """Every bucket, customer and count in order, and what was skipped: by count_stream (FAST), or by the
    specification itself, count_events(plain_events(...))."""
    if fast:
        tally = count_stream(io.BytesIO(data), window)
        counts, skipped = tally.counts, tally.skipped
    else:
        skipped = totaler._Skipped()
        counts = totaler.count_events(totaler.plain_events(io.BytesIO(data), skipped), window)
    return totaler._by_bucket(counts, window), skipped.count, skipped.first


def windows_near(lines: list[bytes], data) -> tuple[datetime, datetime, str | None]:
    """A window drawn by edge_windows from the events of LINES (read by the plain path)."""
    moments = []
    for line in lines:
        with suppress(totaler._Malformed):
            moments.append(totaler._parse_row(line)[1])
    start, end, customer = data.draw(edge_windows(moments, [None, "a", "c9", "é"]))
    return totaler._from_micros(start), totaler._from_micros(end), customer


@settings(max_examples=500, deadline=None)
@given(
    lines=st.lists(st.tuples(rows(), st.sampled_from([1, 1, 1, 2, 7])), max_size=60),
    data=st.data(),
    bom=st.booleans(),
    final_newline=st.booleans(),
    block=st.sampled_from([1 << 22, 256, 97]),
    segment=st.sampled_from([1 << 16, 64, 1]),
    long_run=st.sampled_from([1, 4, 10**9]),  # runs of rows always, as in production, or never
)
def test_fast_path_equals_the_plain_path(lines, data, bom, final_newline, block, segment, long_run) -> None:
    window = windows_near([line for line, _ in lines], data)
    check_fast_path(lines, window, bom, final_newline, block, segment, long_run)


EVERYTHING = (BASE - timedelta(hours=1), BASE + timedelta(hours=7))


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.tuples(rows(messy=False), st.integers(1, 12)), max_size=40),
    data=st.data(),
    block=st.sampled_from([1 << 22, 512]),
    long_run=st.sampled_from([1, 4]),
)
def test_fast_path_equals_the_plain_path_on_clean_logs(lines, data, block, long_run) -> None:
    """Clean logs in runs, where whole blocks go through run_pairs and customer and hour keys recur."""
    whole = data.draw(st.sampled_from([(*EVERYTHING, None), (*EVERYTHING, "a"), None]))
    window = whole or windows_near([line for line, _ in lines], data)
    check_fast_path(lines, window, False, True, block, 1 << 16, long_run)


def kept(where: str):
    """Index a log with cut hours in memory, or read again from the file in segments of a few bytes (every
    line its own with 1), kept as the server keeps them or one hour and one segment read at a time, or none."""
    if where == "memory":
        return patched(FILE_BACKED_MIN=1 << 62)
    segments = {"file": (64, 1 << 21, 4), "file, one line a segment": (1, 1 << 21, 1), "file, one hour": (300, 1, 0)}
    segment, cached, read = segments[where]
    return file_backed(SEGMENT_SIZE=segment, CACHED_EVENTS=cached, SEGMENTS_KEPT=read)


KEPT = ["memory", "file", "file, one line a segment", "file, one hour"]


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.tuples(rows(), st.sampled_from([1, 1, 3, 9])), max_size=40),
    data=st.data(),
    jobs=st.sampled_from([1, 2]),
    long_run=st.sampled_from([1, 4, 10**9]),  # blocks read by runs always, as in production, or never
    bom=st.booleans(),
    where=st.sampled_from(KEPT),
)
def test_the_index_answers_like_the_command_line(tmp_path_factory, lines, data, jobs, long_run, bom, where) -> None:
    """The server's index against count_file, with bounds on events and hour boundaries, each ± 1 µs, in buckets
    of any width in a zone, for some event types; hours in memory or read again from the file."""
    lines = [line for line, times in lines for _ in range(times)]  # runs of one customer and hour
    path = tmp_path_factory.mktemp("index") / "log.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + b"\n")
    questions = [(*windows_near(lines, data), data.draw(QUESTIONS)) for _ in range(3)]
    with tiny_parts(), small_blocks(totaler._BLOCK_SIZE, totaler._SMALL_BLOCK, long_run), kept(where):
        index = totaler.build_index(str(path), jobs=jobs)
        assert (index.files is None) == (where == "memory")
        for start, end, customer, (buckets, types) in questions:  # several: one hour kept pushes another out
            w = totaler.Window(totaler._to_micros(start), totaler._to_micros(end), customer, buckets, types)
            tally = totaler._count_file(str(path), w, jobs=1)
            assert totaler._by_bucket(index.counts(w), w) == totaler._by_bucket(tally.counts, w)
        in_memory = totaler.build_index(str(path), 1, None, True)
        with open(path, "rb") as stream:
            first_seen = list(dict.fromkeys(event[0] for event in totaler.plain_events(stream)))
        assert in_memory.customer_codes.names == first_seen
        if where == "memory":
            page = totaler._ListPage("id", 1000)
            assert totaler._customer_page(index, page) == totaler._customer_page(in_memory, page)
        else:
            with pytest.raises(totaler.InputError, match="comes with the index in memory"):
                totaler._customer_page(index, totaler._ListPage())
    assert (index.skipped.count, index.skipped.first) == (tally.skipped.count, tally.skipped.first)
    assert index.events == in_memory.events and index.customers in (None, in_memory.customers)


QUESTIONS = st.tuples(
    st.sampled_from(
        [
            totaler._UTC_HOURS,
            totaler.Buckets(totaler._DAY, "America/New_York"),
            totaler.Buckets(15 * 60_000_000, "UTC"),
            totaler.Buckets(totaler._HOUR, "Asia/Kolkata"),
            totaler.Buckets(2 * totaler._HOUR, "+05:45"),
        ]
    ),
    st.sampled_from([None, frozenset(["INGEST"]), frozenset(["API CALL", "nothing"]), frozenset(["", "INGEST"])]),
)


def check_fast_path(lines, window, bom, final_newline, block, segment, long_run, sparse_ratio=4) -> None:
    """Count the file LINES make by the fast path (in blocks of BLOCK) and by the plain path: they must agree."""
    repeated = [line for line, times in lines for _ in range(times)]  # runs of one customer and hour
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(repeated) + (b"\n" if final_newline and lines else b"")
    start, end, customer = window
    w = totaler.Window(totaler._to_micros(start), totaler._to_micros(end), customer)
    with small_blocks(block, segment, long_run, sparse_ratio):
        fast = answer(data, w, fast=True)
    plain = answer(data, w, fast=False)
    assert fast == plain


ZONES = ("+00", "Z", "", "+0000", "+00:00", "+05:30", "-0800", "+05", "-09:30", "+05:45", "-00:00", "+23:59")


def stamps_with(zones: tuple[str, ...], quoted: bool = False) -> bytes:
    """Rows with every timestamp shape the fast path reads, ending in ZONES, LF and CRLF, after a newline."""
    stamps = [canonical_stamp(BASE, digits, zone, sep) for digits in range(7) for zone in zones for sep in (" ", "T")]
    row = '"c{0}","INGEST","t{0}","{1}"\n' if quoted else "c{0},INGEST,t{0},{1}\n"
    data = b"".join(row.format(i, stamp).encode() for i, stamp in enumerate(stamps))
    return b"\n" + data + data.replace(b"\n", b"\r\n")


def test_every_fast_shape_reaches_the_fast_path() -> None:
    """Guard the properties above: rows of every fast shape really are counted by the regular expressions."""
    for quoted in (False, True):
        data = stamps_with(ZONES, quoted)
        lines = data.count(b"\n") - 1
        pairs, seen, fast = totaler._fast_pairs(data, 0, len(data), lines, totaler._RowShape(quoted))
        assert pairs is not None and seen == fast == lines == 2 * 7 * len(ZONES) * 2  # LF and CRLF
        for zone in ZONES:  # each zone, by the pattern made for it
            data = stamps_with((zone,), quoted)
            assert totaler._shared_zone(data, 0, len(data)) == zone.encode()
            rows = 2 * 7 * 2
            assert totaler._match_rows(data, 0, len(data), rows, zone.encode(), totaler._RowShape(quoted))[1] == rows


@pytest.mark.parametrize("zone", ["+24:00", "+05:60", "+5", "+053", " +05:00", "z", "+05:30:00"])
def test_zones_the_fast_path_does_not_read_go_to_the_plain_path(zone: str) -> None:
    data = f"\na,INGEST,t,2021-03-01 04:05:06{zone}\n".encode()
    pairs, _, fast = totaler._fast_pairs(data, 0, len(data), 1, BARE)
    assert pairs is None and fast == 0


def tiny_parts():
    """Make a file of a few hundred bytes go through the parallel path in several parts."""
    return patched(RANGE_SIZE=200, PARALLEL_MIN=1)


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(rows(), max_size=60), data=st.data(), bom=st.booleans(), jobs=st.integers(2, 4))
def test_answer_is_the_same_whatever_the_number_of_jobs(tmp_path_factory, lines, data, bom, jobs) -> None:
    window = windows_near(lines, data)
    path = tmp_path_factory.mktemp("jobs") / "log.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + b"\n")
    start, end, customer = window
    w = totaler.Window(totaler._to_micros(start), totaler._to_micros(end), customer)
    serial = totaler._count_file(str(path), w, jobs=1)
    with tiny_parts():
        parallel = totaler._count_file(str(path), w, jobs=jobs)
    assert totaler._by_bucket(parallel.counts, w) == totaler._by_bucket(serial.counts, w)
    assert (parallel.skipped.count, parallel.skipped.first, parallel.lines) == (
        serial.skipped.count,
        serial.skipped.first,
        serial.lines,
    )


def test_parallel_path_is_taken_and_splits_at_newlines(tmp_path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"".join(f"c{i % 7},INGEST,t{i},2021-03-01 04:{i % 60:02d}:00+00\n".encode() for i in range(500)))
    bounds = totaler._line_bounds(str(path), path.stat().st_size, 8)
    data = path.read_bytes()
    assert len(bounds) == 9 and bounds[0] == 0 and bounds[-1] == len(data)
    assert all(data[b - 1 : b] == b"\n" for b in bounds[1:])
    w = totaler.Window(totaler.parse_instant("2021-03-01T04:30:00Z"), totaler.parse_instant("2021-03-01T05:00:00Z"))
    with tiny_parts():
        tally = totaler._count_file(str(path), w, jobs=3)
    assert sum(tally.counts.values()) == sum(1 for i in range(500) if i % 60 >= 30) and tally.lines == 500


def test_a_real_log_goes_by_runs_and_every_row_is_accounted_for() -> None:
    data = b"\n" + EVENTS.read_bytes()[: 1 << 20]
    data = data[: data.rfind(b"\n") + 1]
    assert totaler._mean_run(data, 0, len(data), BARE) >= totaler._LONG_RUN
    pairs = totaler._run_pairs(data, 0, len(data), BARE)
    assert pairs is not None and data.count(b"\n") - 1 == sum(pairs.values())
    broken = data.replace(b"\n", b"\nbroken\n", 1)
    assert totaler._run_pairs(broken, 0, len(broken), BARE) is None


def test_one_hour_written_two_ways_is_one_bucket() -> None:
    data = b"a,I,t,2021-03-01 04:00:00+00\na,I,t,2021-03-01 04:01:00+00\na,I,t,2021-03-01T04:02:00+00\n"
    w = totaler.Window(totaler.parse_instant("2021-03-01"), totaler.parse_instant("2021-03-02"))
    assert answer(data, w, fast=True) == answer(data, w, fast=False)
    assert answer(data, w, fast=True)[0][4] == (totaler.parse_instant("2021-03-01T04:00:00Z"), [("a", 3)])


def test_a_bucket_reached_by_a_half_hour_zone_keeps_customers_in_file_order() -> None:
    """y's row (+05:30) comes first and lands in the 04:00 UTC bucket that x's whole-hour rows fill too."""
    first = b"z,I,t,2021-03-01 01:00:00Z\n"  # line 1 is a block of its own: the rows below share one
    data = first + b"y,I,t,2021-03-01 10:10:00+05:30\n" + b"x,I,t,2021-03-01 04:20:00+00\n" * 3
    data += b"y,I,t,2021-03-01 04:30:00Z\n"
    w = totaler.Window(totaler.parse_instant("2021-03-01"), totaler.parse_instant("2021-03-02"))
    bucket = totaler.parse_instant("2021-03-01T04:00:00Z")
    for fast in (True, False):
        buckets = dict(answer(data, w, fast=fast)[0])
        assert buckets[bucket] == [("y", 2), ("x", 3)], f"fast={fast}"


def test_a_window_cutting_a_half_hour_zones_early_hour_keeps_order_in_its_late_one() -> None:
    """y's +05:30 rows of local 10:00 fall in 04:00 (cut by the window) and 05:00 UTC; x's row is later in 05:00."""
    first = b"z,I,t,2021-03-01 01:00:00Z\n"  # line 1 is a block of its own
    data = first + b"y,I,t,2021-03-01 10:20:00+05:30\ny,I,t,2021-03-01 10:40:00+05:30\nx,I,t,2021-03-01 05:20:00Z\n"
    w = totaler.Window(totaler.parse_instant("2021-03-01T04:15:00Z"), totaler.parse_instant("2021-03-01T06:00:00Z"))
    h04, h05 = totaler.parse_instant("2021-03-01T04:00:00Z"), totaler.parse_instant("2021-03-01T05:00:00Z")
    for fast in (True, False):
        assert answer(data, w, fast=fast)[0] == [(h04, [("y", 1)]), (h05, [("y", 1), ("x", 1)])], f"fast={fast}"


def test_late_minutes_of_every_first_digit_add_up() -> None:
    """Rows of one customer and local hour at :35, :45 and :55 (+05:30) all fall in the later UTC hour."""
    rows = [f"a,I,t,2021-03-01 10:{m}:00+05:30\n".encode() for m in ("05", "35", "45", "55", "15", "59")]
    data = b"z,I,t,2021-03-01 01:00:00Z\n" + b"".join(rows)
    w = totaler.Window(totaler.parse_instant("2021-03-01"), totaler.parse_instant("2021-03-02"))
    h04, h05 = totaler.parse_instant("2021-03-01T04:00:00Z"), totaler.parse_instant("2021-03-01T05:00:00Z")
    for fast in (True, False):
        buckets = dict(answer(data, w, fast=fast)[0])
        assert (buckets[h04], buckets[h05]) == ([("a", 2)], [("a", 4)]), f"fast={fast}"


def test_timed_hours_spread_through_shared_buckets_and_no_row_counts_twice() -> None:
    """At -09:30 local hours 03, 04 and 05 share UTC buckets 13 and 14; the window cuts 15, and so 05, 14, 04..."""
    stamps = [("a", "04:10"), ("b", "03:40"), ("c", "03:10"), ("a", "04:40"), ("b", "05:10"), ("c", "05:40")]
    rows = [f"{who},I,t,2021-03-03T{hm}:00-09:30\n".encode() for who, hm in stamps]  # a (13:40) before b (13:10)
    data = b"z,I,t,2021-03-01 01:00:00Z\n" + b"".join(rows * 3)
    w = totaler.Window(totaler.parse_instant("2021-03-02T23:14:00Z"), totaler.parse_instant("2021-03-03T15:25:00Z"))
    assert answer(data, w, fast=True) == answer(data, w, fast=False)
    assert sum(n for _, row in answer(data, w, fast=True)[0] for _, n in row) == 18


def test_loose_middle_fields_are_read_alike_and_a_row_cut_in_two_is_not_one() -> None:
    """Middle fields of control bytes are matched loosely, as the plain path reads them; a row cut across two
    lines is not matched as one; a quote, NUL, lone CR or byte not ASCII keeps a block from being loose."""
    data = b"\nc1,I\x01N\tG\x7f,t\x1c,2021-03-01 04:00:00+00\nc2,INGEST,t2,2021-03-01 05:10:00+00\n"
    assert totaler._plain_bytes(data, 0, len(data))
    pairs, lines, fast = totaler._fast_pairs(data, 0, len(data), 2, LOOSE_BARE, 1.0)
    assert pairs == {(b"c1", b"2021-03-01 04", b"+00"): 1, (b"c2", b"2021-03-01 05", b"+00"): 1}
    assert lines == fast == 2
    assert totaler._fast_pairs(data, 0, len(data), 2, BARE, 1.0)[0] is None  # the strict classes refuse them
    cut = b"\nc1,INGEST\nt1,x,2021-03-01 04:00:00+00\n"  # one row in two lines of 1 and 2 commas
    assert totaler._fast_pairs(cut, 0, len(cut), 2, LOOSE_BARE, 1.0)[:2] == (None, 2)
    # Each read otherwise by the plain path, or refused: '"I,N"' is one field there, two loose ones.
    bad = [b'"I,N"', b'IN"GEST,t1', b"IN\0GEST,t1", b"IN\rGEST,t1", b"IN\xffGEST,t1", "INGÉST,t1".encode()]
    rows = [b"\nc1," + field + b",2021-03-01 05:00:00+00\n" for field in bad]
    assert not any(totaler._plain_bytes(row, 0, len(row)) for row in rows)
    w = totaler.Window(totaler.parse_instant("2021-03-01T04:30:00Z"), totaler.parse_instant("2021-03-01T06:00:00Z"))
    for text in [data, cut, data.replace(b"\n", b"\r\n")[1:] + b"\n"] + [data + row[1:] for row in rows]:
        assert answer(text[1:], w, fast=True) == answer(text[1:], w, fast=False)
    hours = [(totaler.parse_instant(f"2021-03-01T0{h}:00:00Z"), rows) for h, rows in ((4, []), (5, [("c2", 1)]))]
    assert answer(data[1:], w, fast=True)[:2] == (hours, 0)


# Sparse blocks: rows over weeks in no order, a window of hours or days, zones up to ±23:59
# (the farthest a local date can be from the UTC one).
FAR_OFFSETS = [*OFFSETS, (23 + 59 / 60, "+23:59"), (-(23 + 59 / 60), "-2359")]
weeks = st.builds(
    lambda days, seconds, nudge: BASE + timedelta(days=days, seconds=seconds, microseconds=nudge),
    st.integers(-3, 40),
    st.sampled_from([0, 3599, 3600, 86399]) | st.integers(0, 86399),
    st.sampled_from([-1, 0, 1]),
)


# What a loose field ([^,], in a bare row off the window's dates) would take in, and the plain path reads
# otherwise or refuses: all spaces, whitespace str.strip() takes, a quote, CR or NUL inside, a byte not
# ASCII, a row cut in two lines (1 and 2 commas: 3 in all); and what it reads the same: spaces around a
# customer, one inside, a control byte in a field.
LOOSE = ["  ,{rest}", "\t{who},{rest}", "{who}\x1c,{rest}", "\x0c,{rest}", '{who},IN"GEST{tail}']
LOOSE += ["{who},IN\rGEST{tail}", "{who},IN\0GEST{tail}", "{who},INGÉST{tail}", "{who},INGEST\nx{tail}"]
LOOSE += [" {who}  ,{rest}", "{who} b,{rest}", "{who},IN\x01GEST{tail}"]


def loose_row(template: str, who: str, rest: str) -> bytes:
    """A row of LOOSE: TEMPLATE with customer WHO and the fields after it, REST (which begins 'INGEST,')."""
    return template.format(who=who, rest=rest, tail=rest.removeprefix("INGEST")).encode()


@st.composite
def spread_rows(draw, zone: tuple[float, str] | None, quoted: bool) -> bytes:
    """A row of a fast shape at any time over weeks, in ZONE (None: any), QUOTED or bare; sometimes any other row,
    or one a loose field would take in."""
    if draw(st.integers(0, 24)) == 0:
        return draw(rows())
    who, when, sep = draw(ascii_customers), draw(weeks), draw(st.sampled_from([" ", "T"]))
    stamp = local_stamp(when, *(zone or draw(st.sampled_from(FAR_OFFSETS))), draw(st.sampled_from([0, 3, 6])), sep)
    rest = f"INGEST,{draw(st.sampled_from(['t1', '2021-03-01 04:00']))},{stamp}"
    if draw(st.integers(0, 24)) == 0:
        return loose_row(draw(st.sampled_from(LOOSE)), who, rest)
    line = f"{who},{rest}"
    if quoted:
        line = '"' + line.replace(",", '","') + '"'
    return line.encode()


@settings(max_examples=400, deadline=None)
@given(
    zone=st.none() | st.sampled_from(FAR_OFFSETS),
    data=st.data(),
    block=st.sampled_from([1 << 22, 400]),
    sparse_ratio=st.sampled_from([0, 4]),
)
def test_sparse_blocks_count_what_the_plain_path_counts(zone, data, block, sparse_ratio) -> None:
    """Windows near events over weeks, rows in one zone or many: blocks tried as sparse (always, or when few
    rows are near) or not."""
    lines = data.draw(st.lists(spread_rows(zone, data.draw(st.booleans())), max_size=80))
    window = windows_near(lines, data)
    check_fast_path([(line, 1) for line in lines], window, False, True, block, 1 << 16, 10**9, sparse_ratio)


def plain_hours(lines: list[bytes]) -> set[int] | None:
    """The UTC hours of LINES by the plain reader; None if one is not a row (malformed or blank)."""
    try:
        return {totaler._parse_row(line)[1] // totaler._HOUR * totaler._HOUR for line in lines}
    except totaler._Malformed:
        return None


@settings(max_examples=400, deadline=None)
@given(
    zone=st.none() | st.sampled_from(FAR_OFFSETS),
    data=st.data(),
    run=st.sampled_from([1, 3]),
    long_run=st.sampled_from([1, 10**9]),
)
def test_a_survey_notes_the_hours_of_every_row_or_leaves_the_block_to_the_plain_path(zone, data, run, long_run):
    """A block surveyed by the fast shapes (by runs, or four rows a match, middle fields loose where the bytes are
    plain) gives the hours of its rows exactly, and only where the plain reader reads every line as a row."""
    lines = data.draw(st.lists(spread_rows(zone, data.draw(st.booleans())), min_size=1, max_size=40))
    lines = b"\n".join(line for line in lines for _ in range(run)).split(b"\n")  # a row may hold a newline
    block = b"\n" + b"\n".join(lines) + b"\n"
    with patched(LONG_RUN=long_run):
        try:
            hours = totaler._surveyed(block, 0, len(block), len(lines))
        except totaler._Unproved:  # a key no calendar holds: the block is read by the plain path
            hours = None
    expected = plain_hours(lines)
    if hours is not None:  # a local hour in a zone with minutes reaches two UTC hours: both are noted
        assert expected is not None
        assert expected <= hours <= {hour + step for hour in expected for step in (-totaler._HOUR, 0, totaler._HOUR)}


def test_a_survey_reads_middle_fields_loosely_where_the_bytes_are_plain() -> None:
    """Control bytes in a middle field (valid to the plain reader, refused by the strict classes) keep a block on
    the survey's fast shapes; four rows a match and one more."""
    rows = [b"c%d,I\x01N\tG\x7f,t\x1c,2021-03-01 0%d:10:00+00" % (n, n % 3 + 4) for n in range(5)]
    block = b"\n" + b"\n".join(rows) + b"\n"
    with patched(LONG_RUN=10**9):
        assert totaler._surveyed(block, 0, len(block), 5) == plain_hours(rows)
    assert len(plain_hours(rows)) == 3


def test_a_sparse_block_counts_only_the_rows_on_the_dates_it_can_reach() -> None:
    """30 days of rows in no order and a window of one day: the block is counted sparse, and right."""
    stamps = [BASE + timedelta(hours=7 * i, minutes=i % 60) for i in range(100)]
    body = "".join(f"c{i % 3},INGEST,t{i},{s:%Y-%m-%d %H:%M:%S}+00\n" for i, s in enumerate(stamps))
    data = ("\n" + body).encode()
    start = totaler.parse_instant("2021-03-10T00:00:00Z")
    w = totaler.Window(start, start + totaler._DAY)
    plain = totaler.count_events(totaler.plain_events(io.BytesIO(data)), w)
    assert sum(plain.values()) == sum(1 for s in stamps if start <= totaler._to_micros(s) < start + totaler._DAY) > 0
    assert totaler._sparse_counts(data, 0, len(data), 100, w, BARE) == plain  # every row in +00: one date
    mixed = data.replace(b"+00\n", b"Z\n", 1)  # the first row's zone differs: any zone, three dates
    assert totaler._sparse_counts(mixed, 0, len(mixed), 100, w, BARE) == plain
    quoted = b"\n".join(b'"' + line.replace(b",", b'","') + b'"' for line in data.split(b"\n")[1:-1])
    assert totaler._sparse_counts(b"\n" + quoted + b"\n", 0, len(quoted) + 2, 100, w, QUOTED) == plain
    assert answer(data[1:], w, fast=True) == answer(data[1:], w, fast=False)
    broken = data.replace(b"\nc1,", b"\nc1,x,", 1)  # one row of five fields: not sparse, counted the usual way
    assert totaler._sparse_counts(broken, 0, len(broken), 100, w, BARE) is None


@pytest.mark.parametrize("loose", range(len(LOOSE)))
def test_a_loose_field_takes_in_only_what_the_plain_path_reads_alike(loose: int) -> None:
    """Each row of LOOSE, off the window's date in a sparse block: the block is counted sparse only if the
    plain path reads that row as the loose pattern does, and the answer is the plain path's either way."""
    stamps = [BASE + timedelta(hours=7 * i, minutes=i % 60) for i in range(100)]
    rows = [f"c{i % 3},INGEST,t{i},{s:%Y-%m-%d %H:%M:%S}+00" for i, s in enumerate(stamps)]
    rows[5] = loose_row(LOOSE[loose], "c1", rows[5][3:]).decode()  # 2021-03-02: off the window's date
    data = ("\n" + "\n".join(rows) + "\n").encode()
    start = totaler.parse_instant("2021-03-10T00:00:00Z")
    w = totaler.Window(start, start + totaler._DAY)
    skipped = totaler._Skipped()
    plain = totaler.count_events(totaler.plain_events(io.BytesIO(data), skipped), w)
    sparse = totaler._sparse_counts(data, 0, len(data), data.count(b"\n") - 1, w, BARE)
    assert (sparse is not None) == (loose >= 9)  # the last three are read alike
    assert skipped.count == (1 if loose in (0, 3, 5, 6) else 2 if loose == 8 else 0)
    assert sparse is None or sparse == plain
    assert answer(data[1:], w, fast=True) == answer(data[1:], w, fast=False)


@pytest.mark.parametrize("year", [0, 1, 4, 100, 400, 1900, 2000, 2021, 2024, 9999])
def test_the_calendar_pattern_accepts_exactly_the_dates_and_hours_datetime_accepts(year: int) -> None:
    """... but the first and the last date, where an offset can take a row outside the years 1 to 9999 in UTC."""
    pattern = totaler.re.compile(totaler._CALENDAR_HOUR)
    for month in range(14):
        for day in range(33):
            for hour in (0, 23, 24, 30):
                text = f"{year:04d}-{month:02d}-{day:02d} {hour:02d}"
                try:
                    datetime(year, month, day, hour)
                    valid = text[:10] not in ("0001-01-01", "9999-12-31")
                except ValueError:
                    valid = False
                assert (pattern.fullmatch(text.encode()) is not None) == valid, text


def test_a_window_at_the_ends_of_time_searches_the_dates_it_can_reach() -> None:
    day = totaler._DAY
    first = totaler._date_search(totaler._FIRST_INSTANT - day, totaler._FIRST_INSTANT + 1 + day, False)
    last = totaler._date_search(totaler._LAST_INSTANT - day, totaler._LAST_INSTANT + 1 + day, True)
    assert first is not None and first.search(b",0001-01-02 00") and not first.search(b",0001-01-03 00")
    assert last is not None and last.search(b',"9999-12-30T23') and not last.search(b',"9999-12-29T23')
    assert totaler._date_search(0, day, False).search(b",1970-01-01T") and not totaler._date_search(
        0, day, False
    ).search(b",1970-01-02T")
    assert totaler._date_search(0, totaler._SPARSE_DAYS * day + 1, False) is None


@pytest.mark.parametrize("fraction", ["", ".5", ".05", ".055", ".0551", ".000001", ".123456", ".999999"])
@pytest.mark.parametrize("zone", ["+00", "Z", "-08:00", "+05:30", "+05:45"])
def test_row_columns_time_every_fraction_and_zone_to_the_microsecond(fraction: str, zone: str) -> None:
    stamp = f"2021-03-01 10:59:58{fraction}{zone}"
    data = f"\nc,INGEST,t,{stamp}\n".encode()
    rows = totaler._timed_rows_pattern(totaler._DATE_HOUR, BARE).findall(data)
    moment = totaler._parse_event_time(stamp)
    names, buckets, offsets = totaler._row_columns(rows, BARE)
    assert (names, buckets, offsets) == (["c"], [totaler._hour_floor(moment)], [moment % totaler._HOUR])
