"""Long lines, wherever the reads fall: each is one malformed row, and every other row counts as if it were absent.

The read size, the longest line and the workers' part size are shrunk to tens of bytes, so that
hypothesis's small files put long lines at, across and right after every boundary; one test keeps
the real sizes.  Every path (fast, plain, any --jobs, gzip, the server's index) is held to a model
written the obvious way: split the file into lines and judge each on its own.

Reaches inside for `_MAX_LINE` and the block and part sizes (shrunk), and `_count_file` and conftest's `count_stream`.
"""

import gzip
import io
import random
from contextlib import suppress
from datetime import UTC, datetime, timedelta

from conftest import count_stream, edge_windows, file_backed, run_cli, sizes
from hypothesis import given, settings
from hypothesis import strategies as st

import totaler

FIRST_HOUR = datetime(2021, 3, 1, 3, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = 3_600_000_000


def model_row(line: bytes) -> tuple[str, int]:
    """One line of plain CSV (no quotes) to (customer, microseconds); ValueError if it is not a row."""
    fields = line.decode("utf-8").removesuffix("\r").split(",")
    if len(fields) != 4 or not fields[0].strip():
        raise ValueError(line)
    stamp = fields[3].strip()
    if "T" not in stamp and " " not in stamp:
        raise ValueError(stamp)
    moment = datetime.fromisoformat(stamp)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return fields[0].strip(), (moment - EPOCH) // timedelta(microseconds=1)


def model(data: bytes, window: totaler.Window, max_line: int) -> tuple[list, int, list[int]]:
    """Buckets with their customers in first-seen order, the number of bad lines, and the first three."""
    lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the final newline ends the last line; it starts no new one
    counts: dict[tuple[int, str], int] = {}
    bad = []
    for number, line in enumerate(lines, 1):
        if len(line) > max_line:
            bad.append(number)
            continue
        if number == 1 and line.removesuffix(b"\r") == b"customer_id,event_type,transaction_id,timestamp":
            continue
        if not line.strip():
            continue
        try:
            customer, moment = model_row(line)
        except ValueError:
            bad.append(number)
            continue
        if window.start <= moment < window.end and window.customer in (None, customer):
            key = (moment - moment % HOUR, customer)
            counts[key] = counts.get(key, 0) + 1
    return totaler._by_bucket(counts, window), len(bad), bad[:3]


def seen(tally_or_index: totaler._Tally | totaler.Index, counts: dict, window: totaler.Window) -> tuple:
    """What a path found, in the model's terms."""
    skipped = tally_or_index.skipped
    return totaler._by_bucket(counts, window), skipped.count, [line for line, _ in skipped.first]


@st.composite
def logs(draw) -> tuple[int, int, bytes]:
    """A read size, a longest line, and a file mixing short rows, long lines and blank lines around them."""
    block = draw(st.sampled_from([16, 32, 64, 100]))
    max_line = draw(st.sampled_from([30, 40, 64]))
    lengths = [max_line - 1, max_line, max_line + 1, block - 1, block, block + 1, 2 * block + 1, 3 * block + 7]
    lines = []
    for _ in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["row"] * 6 + ["padded", "junk", "spaces", "blank", "header"]))
        when = FIRST_HOUR + timedelta(
            seconds=draw(st.integers(0, 3 * 3600)), microseconds=draw(st.sampled_from([0, 5]))
        )
        row = f"{draw(st.sampled_from('abc'))},E,t,{when.isoformat(sep=' ')}".encode()
        length = draw(st.sampled_from(lengths))
        if kind == "padded":  # a good row made exactly LENGTH bytes long, if it can be
            row = row.replace(b",E,", b",E" + b"e" * max(length - len(row), 0) + b",", 1)
        line = {
            "row": row,
            "padded": row,
            "junk": b"x" * length,
            "spaces": b" " * length,
            "blank": draw(st.sampled_from([b"", b"\r"])),
            "header": b"customer_id,event_type,transaction_id,timestamp",
        }[kind]
        lines.append(line + draw(st.sampled_from([b"", b"", b"\r"])))
    data = draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + b"\n".join(lines)
    return block, max_line, data + (b"\n" if lines and draw(st.booleans()) else b"")


def window_near_events(data: bytes, draw) -> totaler.Window:
    """A window with bounds on the log's events and hours, each ± 1 µs (conftest.edge_windows)."""
    moments = []
    for line in data.split(b"\n"):
        with suppress(ValueError):
            moments.append(model_row(line)[1])
    return totaler.Window(*draw(edge_windows(moments, [None, "a"])))


@settings(max_examples=400, deadline=None)
@given(log=logs(), draw=st.data(), segment=st.sampled_from([1, 64, 1 << 16]))
def test_fast_and_plain_paths_equal_the_model_around_long_lines(log, draw, segment) -> None:
    block, max_line, data = log
    window = window_near_events(data, draw.draw)
    want = model(data, window, max_line)
    with sizes(block, max_line, segment=segment):
        for fast in (True, False):
            tally = count_stream(io.BytesIO(data), window, fast=fast)
            assert seen(tally, tally.counts, window) == want, f"fast={fast}"
            assert tally.lines == want_lines(data)


def want_lines(data: bytes) -> int:
    """How many lines a file has: the last one may lack its newline."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    return data.count(b"\n") + (not data.endswith(b"\n") and data != b"")


@settings(max_examples=60, deadline=None)
@given(log=logs(), draw=st.data())
def test_workers_gzip_and_the_index_equal_the_model_around_long_lines(tmp_path_factory, log, draw) -> None:
    block, max_line, data = log
    window = window_near_events(data, draw.draw)
    want = model(data, window, max_line)
    folder = tmp_path_factory.mktemp("long")
    plain, packed = folder / "log.csv", folder / "log.csv.gz"
    plain.write_bytes(data)
    packed.write_bytes(gzip.compress(data))
    with sizes(block, max_line, part=300):
        for jobs in (1, 2, 3):
            tally = totaler._count_file(str(plain), window, jobs=jobs)
            assert seen(tally, tally.counts, window) == want, f"jobs={jobs}"
        tally = totaler._count_file(str(packed), window)
        assert seen(tally, tally.counts, window) == want, "gzip"
        for jobs in (1, 2):
            index = totaler.build_index(str(plain), jobs=jobs)
            assert seen(index, index.counts(window), window) == want, f"index, jobs={jobs}"
        # File-backed, segments a few lines long: the long lines fall inside them, or across their ends.
        for segment in (1, 50, 400):
            with file_backed(SEGMENT_SIZE=segment):
                index = totaler.build_index(str(plain), jobs=2)
            assert index.files is not None
            assert seen(index, index.counts(window), window) == want, f"file-backed, segments of {segment}"


ROW_A = b"a,INGEST,t1,2021-03-01 04:05:00+00\n"
ROW_B = b"b,INGEST,t2,2021-03-01 04:06:00+00\n"
SEED_HOUR = ["2021-03-01T04:00:00Z", "2021-03-01T05:00:00Z", "--json"]


def test_rows_after_a_line_of_2_mib_plus_one_byte_at_the_real_sizes(tmp_path) -> None:
    for junk in (b"x" * ((1 << 21) + 1), b"x" * (1 << 21), b" " * ((1 << 20) + 1)):
        path = tmp_path / "log.csv"
        path.write_bytes(junk + b"\n" + ROW_A + ROW_B)
        result = run_cli(str(path), *SEED_HOUR)
        assert result.returncode == 0
        assert result.stdout == b'{\n  "2021-03-01 04:00:00 +0000": {\n    "a": 1,\n    "b": 1\n  }\n}\n'
        assert f"skipped 1 malformed row (line 1: line of {len(junk):,} bytes".encode() in result.stderr
        result = run_cli(str(path), *SEED_HOUR[:2], "b")
        assert b"Customer ID: b Calls: 1" in result.stdout


def test_a_line_of_exactly_the_longest_length_is_judged_as_a_row_and_one_byte_more_is_not() -> None:
    row = ROW_A.rstrip(b"\n")
    exact = row.replace(b"INGEST", b"INGEST" + b"e" * (totaler._MAX_LINE - len(row)))
    assert len(exact) == totaler._MAX_LINE
    data = exact + b"\n" + exact + b"e\n" + ROW_B
    window = totaler.Window(totaler.parse_instant(SEED_HOUR[0]), totaler.parse_instant(SEED_HOUR[1]))
    for fast in (True, False):
        tally = count_stream(io.BytesIO(data), window, fast=fast)
        assert tally.counts == {(window.start, "b"): 1}
        # The csv reader refuses a field over 128 KiB: that is the reason given for the first line.
        assert [line for line, _ in tally.skipped.first] == [1, 2]
        assert "field larger than field limit" in tally.skipped.first[0][1]
        assert tally.skipped.first[1][1].startswith(f"line of {totaler._MAX_LINE + 1:,} bytes")


def test_twenty_mib_with_junk_lines_of_2_to_5_mib_equals_the_model(tmp_path) -> None:
    """The acceptance case: plain with --jobs 1 and 2, on standard input and gzipped, at the real sizes."""
    chance = random.Random(8)
    pieces = []
    size = 0
    while size < 20 << 20:
        if chance.random() < 0.00002:
            piece = (b"x" if chance.random() < 0.7 else b" ") * chance.randint(2 << 20, 5 << 20) + b"\n"
        else:
            when = FIRST_HOUR + timedelta(microseconds=chance.randint(0, 3 * HOUR))
            piece = f"{chance.choice('abcd')},INGEST,t{size},{when.isoformat(sep=' ')}\n".encode()
        pieces.append(piece)
        size += len(piece)
    data = b"".join(pieces)
    assert data.count(b"x" * (2 << 20)) + data.count(b" " * (2 << 20)) >= 2  # the seed gives long lines
    path, packed = tmp_path / "big.csv", tmp_path / "big.csv.gz"
    path.write_bytes(data)
    packed.write_bytes(gzip.compress(data, compresslevel=1))
    start, end = FIRST_HOUR + timedelta(minutes=30), FIRST_HOUR + timedelta(hours=2)
    window = totaler.Window(totaler._to_micros(start), totaler._to_micros(end))
    buckets, bad, first = model(data, window, totaler._MAX_LINE)
    want = totaler.render_json(window, {(b, c): n for b, rows in buckets for c, n in rows})
    args = [totaler._format_utc(window.start), totaler._format_utc(window.end), "--json"]
    for how, result in [
        ("jobs 1", run_cli(str(path), *args, "--jobs", "1")),
        ("jobs 2", run_cli(str(path), *args, "--jobs", "2")),
        ("stdin", run_cli("-", *args, stdin=data)),
        ("gzip", run_cli(str(packed), *args)),
    ]:
        assert result.returncode == 0, how
        assert result.stdout.decode() == want, how
        assert f"skipped {bad} malformed rows (line {first[0]}: line of ".encode() in result.stderr, how
