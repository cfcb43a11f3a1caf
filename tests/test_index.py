"""The server's index, in process: built in parts or in one, and answering like the plain path.

Reaches inside for `_load_index`, `_customer_page` and `_busiest_day`, which the server calls and
no public function returns, and `_count_file` to compare with the plain path.
"""

import gzip
import os
import random
from array import array
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import EVENTS, SEED_CUSTOMER, file_backed, patched
from hypothesis import given
from hypothesis import strategies as st

import totaler


def test_index_answers_sub_hour_windows_like_the_counting_core() -> None:
    index = totaler.build_index(str(EVENTS))
    with open(EVENTS, "rb") as stream:
        events = list(totaler.plain_events(stream))
    rng = random.Random(3)
    for _ in range(60):
        start = datetime(2021, 3, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(3 * 24 * 3600))
        end = start + timedelta(seconds=rng.randrange(1, 1800))  # often inside one hour: both edges in it
        customer = rng.choice([None, "b4f9279a0196e40632e947dd1a88e857", SEED_CUSTOMER])
        window = totaler.Window(totaler._to_micros(start), totaler._to_micros(end), customer)
        expected = totaler._by_bucket(totaler.count_events(events, window), window)
        assert totaler._by_bucket(index.counts(window), window) == expected  # counts and customer order


def test_index_built_in_parts_is_the_index_built_in_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = EVENTS.read_bytes().splitlines(keepends=True)
    rows[5:5] = [b"broken\n", b"x,y,z,not-a-time\n"]
    rows[90000:90000] = [b"customer_id,event_type,transaction_id,timestamp\n", b"\n"]
    path = tmp_path / "messy.csv"
    path.write_bytes(b"".join(rows))
    monkeypatch.setattr(totaler, "_RANGE_SIZE", 1 << 20)
    monkeypatch.setattr(totaler, "_PARALLEL_MIN", 1)
    one, parts = totaler.build_index(str(path), jobs=1), totaler.build_index(str(path), jobs=3)
    assert (parts.events, parts.customers, parts.starts) == (one.events, one.customers, one.starts)
    assert (
        (parts.skipped.count, parts.skipped.first)
        == (one.skipped.count, one.skipped.first)
        == (
            3,
            [
                (6, "1 field, expected 4"),
                (7, "timestamp 'not-a-time' is not ISO 8601"),
                (90001, "timestamp 'timestamp' is not ISO 8601"),
            ],
        )
    )
    assert one.customer_codes.names == parts.customer_codes.names and one.types == parts.types
    for start in one.starts:
        a, b = one.hours[start], parts.hours[start]
        assert (a.codes, a.in_hour, list(a.position_column()), list(a.type_column() or [])) == (
            b.codes,
            b.in_hour,
            list(b.position_column()),
            list(b.type_column() or []),
        )
        for hour in (a, b):  # counts kept are the hour's, in order of first event (an hour two parts hold: maybe none)
            assert hour.by_customer is None or list(hour.by_customer.items()) == list(Counter(hour.codes).items())


@given(st.lists(st.integers(0, 4), max_size=30), st.booleans())
def test_a_blocks_rows_by_hour_are_its_rows_in_file_order_whether_in_time_order_or_not(hours, in_order) -> None:
    """Each hour once, in time order, with its rows as the obvious model finds them: a range where the block's
    hours never go back."""
    hours = sorted(hours) if in_order else hours
    found = list(totaler._rows_by_hour(hours))
    assert [hour for hour, _ in found] == sorted(set(hours))
    assert {hour: list(rows) for hour, rows in found} == {h: [i for i, x in enumerate(hours) if x == h] for h in hours}
    assert all(isinstance(rows, range) for _, rows in found) == (hours == sorted(hours))


def test_an_index_past_its_32_bit_positions_is_refused_in_one_line(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(EVENTS.read_bytes()[:100_000])
    monkeypatch.setattr(totaler, "_MAX_INDEXED", 500)
    with pytest.raises(totaler.InputError, match="more than 500 events: too many for --serve"):
        totaler.build_index(str(path))
    monkeypatch.setattr(totaler, "_RANGE_SIZE", 20_000)
    monkeypatch.setattr(totaler, "_PARALLEL_MIN", 1)
    with pytest.raises(totaler.InputError, match="more than 500 events"):
        totaler.build_index(str(path), jobs=2)  # in parts: each fits, together they do not
    monkeypatch.setattr(totaler, "_MAX_INDEXED", 10**6)
    assert totaler.build_index(str(path), jobs=2).events == path.read_bytes().count(b"\n")


ZONE_HOURS = {"+00": 0, "Z": 0, "": 0, "-08:00": -8, "+0500": 5, "+00:00": 0}


def test_rows_read_by_the_fast_shapes_are_indexed_as_the_plain_path_reads_them(tmp_path: Path) -> None:
    """Bare or quoted, LF or CRLF, whole-hour zones and zones with minutes, two event types, and a block with one
    odd row (read row by row): the same columns as the plain path's."""
    rng = random.Random(4)
    lines = []
    for i in range(3_000):
        moment = datetime(2021, 3, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(5 * 3600), microseconds=i)
        zone = rng.choice(
            [UTC, totaler.timezone(timedelta(hours=5, minutes=30)), totaler.timezone(-timedelta(hours=8))]
        )
        stamp = moment.astimezone(zone).isoformat(sep=" ")
        fields = [f"c{rng.randrange(9)}", rng.choice(["INGEST", "SEND"]), f"t{i}", stamp]
        line = ",".join(f'"{f}"' for f in fields) if i % 1000 < 500 else ",".join(fields)
        lines.append(line + ("\r\n" if i % 700 < 100 else "\n"))
    lines.insert(2500, "broken\n")
    path = tmp_path / "log.csv"
    path.write_text("".join(lines))
    with patched(BLOCK_SIZE=1 << 14):
        index = totaler.build_index(str(path))
    with open(path, "rb") as stream:
        events = list(totaler.plain_events(stream))
    assert (index.events, index.skipped.count) == (len(events), 1)
    by_hour: dict[int, list] = {}
    for position, (who, instant, event_type, _) in enumerate(events):
        by_hour.setdefault(instant - instant % totaler._HOUR, []).append(
            (who, instant % totaler._HOUR, event_type, position)
        )
    assert index.starts == sorted(by_hour)
    for start, rows in by_hour.items():
        hour = index.hours[start]
        names, types = index.customer_codes.names, index.types
        columns = zip(hour.codes, hour.in_hour, hour.type_column(), hour.position_column(), strict=True)
        found = [(names[c], o, types[t], p) for c, o, t, p in columns]
        assert found == rows


def cut_windows(index: totaler.Index, count: int, seed: int) -> list[totaler.Window]:
    """COUNT windows over INDEX's hours, both ends cut at random microseconds, some for one customer."""
    rng, customers = random.Random(seed), [None, SEED_CUSTOMER, "nobody"]
    first, last = index.starts[0], index.starts[-1] + totaler._HOUR
    windows = []
    for _ in range(count):
        start = rng.randrange(first, last)
        windows.append(totaler.Window(start, start + rng.randrange(1, 30 * totaler._HOUR), rng.choice(customers)))
    return windows


def test_events_csv_file_backed_answers_like_the_command_line() -> None:
    with patched(FILE_BACKED_MIN=0):  # the real segment size and the real probes
        index = totaler.build_index(str(EVENTS), jobs=2)
    assert index.files is not None and len(index.files.segments) == 60
    in_memory = totaler.build_index(str(EVENTS), jobs=2, in_memory=True)
    assert (index.events, index.customers, index.starts) == (in_memory.events, None, in_memory.starts)
    assert totaler._busiest_day(index) == totaler._busiest_day(in_memory)  # though from estimates
    for window in cut_windows(index, 40, seed=5):
        answer = totaler._count_file(str(EVENTS), window).counts
        assert totaler._by_bucket(index.counts(window), window) == totaler._by_bucket(answer, window)


def shuffled_log(path: Path, rows: int) -> None:
    """ROWS of events.csv, from all over it, in random order."""
    lines = EVENTS.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(random.Random(8).sample(lines, rows)))


def test_a_log_out_of_time_order_is_indexed_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "shuffled.csv"
    shuffled_log(path, 20_000)
    with patched(FILE_BACKED_MIN=0):  # the first segment holds far more hours than PROBE_HOURS
        assert totaler.build_index(str(path), jobs=1).files is None
    with file_backed(
        FILE_BACKED_SPAN=1 << 16
    ):  # past the probe, an hour's rows lie in more than FILE_BACKED_SPAN bytes
        assert totaler.build_index(str(path), jobs=1).files is None
    with file_backed():
        assert totaler.build_index(str(path), jobs=1).files is not None


def test_a_log_changed_under_a_file_backed_index_is_an_error_not_a_wrong_answer(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(EVENTS.read_bytes()[: 1 << 20])
    with file_backed(SEGMENT_SIZE=1 << 14):
        index = totaler.build_index(str(path), jobs=1)
    window = totaler.Window(index.starts[3] + 1, index.starts[3] + totaler._HOUR - 1)
    rows = path.read_bytes().splitlines(keepends=True)
    rows = [b"zzzz" + row[4:] for row in rows]  # the same size, other customers
    path.write_bytes(b"".join(rows))
    with pytest.raises(totaler.InputError, match="changed since it was indexed; send SIGHUP"):
        index.counts(window)
    path.write_bytes(b"")
    with pytest.raises(totaler.InputError, match="changed since it was indexed"):
        index.counts(window)


def test_an_hour_first_asked_after_the_log_changed_is_an_error_though_its_segment_was_kept(tmp_path: Path) -> None:
    """A segment read for one hour holds parts of others: kept, it answers them only while the file is unchanged."""
    path = tmp_path / "log.csv"
    rows = [f"a,INGEST,t{h}{m},2021-03-01 {h:02d}:{m:02d}:00+00\n" for h in range(4) for m in (0, 30)]
    path.write_text("".join(rows))
    with file_backed(SEGMENT_SIZE=1 << 20):  # one segment holds every hour
        index = totaler.build_index(str(path), jobs=1)
    hour = lambda number: totaler.Window(index.starts[number], index.starts[number] + totaler._HOUR)  # noqa: E731
    assert totaler._by_bucket(index.counts(hour(0)), hour(0)) == [(index.starts[0], [("a", 2)])]
    assert totaler._by_bucket(index.counts(hour(1)), hour(1)) == [(index.starts[1], [("a", 2)])]  # from the kept one
    path.write_text("".join(row.replace("a,", "b,") for row in rows))  # the same size, another customer
    with pytest.raises(totaler.InputError, match="changed since it was indexed; send SIGHUP"):
        index.counts(hour(2))
    assert totaler._by_bucket(index.counts(hour(1)), hour(1)) == [(index.starts[1], [("a", 2)])]  # kept: as indexed


def test_a_file_backed_index_reads_the_log_it_indexed_after_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(EVENTS.read_bytes()[: 1 << 20])
    with file_backed(SEGMENT_SIZE=1 << 14):
        index = totaler.build_index(str(path), jobs=1)
    windows = cut_windows(index, 10, seed=6)
    answers = [totaler._count_file(str(path), window).counts for window in windows]
    path.rename(tmp_path / "log.csv.1")  # logrotate: the old file moved away, a new one begun
    path.write_bytes(b"a,INGEST,t,2021-03-01 00:00:00+00\n")
    for window, answer in zip(windows, answers, strict=True):
        assert totaler._by_bucket(index.counts(window), window) == totaler._by_bucket(answer, window)


def test_rotated_files_file_backed_are_the_files_in_memory(tmp_path: Path) -> None:
    lines = EVENTS.read_bytes().splitlines(keepends=True)[:30_000]
    lines[100:100] = [b"broken\n"]
    (tmp_path / "logs").mkdir()
    for number, start in enumerate(range(0, len(lines), 7_000)):
        (tmp_path / "logs" / f"events.{9 - number}.csv").write_bytes(b"".join(lines[start : start + 7_000]))
    name = str(tmp_path / "logs")
    in_memory = totaler.build_index(name, jobs=2, in_memory=True)
    with file_backed(SEGMENT_SIZE=1 << 15, RANGE_SIZE=1 << 18, PARALLEL_MIN=1):
        index = totaler.build_index(name, jobs=2)
    assert index.files is not None and len(index.files.files) == 5
    assert (index.events, index.customers, index.starts) == (in_memory.events, None, in_memory.starts)
    assert (index.skipped.count, index.skipped.first) == (in_memory.skipped.count, in_memory.skipped.first)
    for window in cut_windows(index, 30, seed=7):
        assert totaler._by_bucket(index.counts(window), window) == totaler._by_bucket(in_memory.counts(window), window)


def test_hours_read_again_are_kept_within_their_budget(tmp_path: Path) -> None:
    with file_backed(CACHED_EVENTS=3_000):
        index = totaler.build_index(str(EVENTS), jobs=1)
        for window in cut_windows(index, 40, seed=9):
            index.counts(window)
            kept = index.hours.kept
            assert index.hours.kept_events == sum(len(hour.codes) for hour in kept.values())
            assert index.hours.kept_events <= 3_000 or len(kept) == 1


def test_the_customer_list_waits_for_the_index_in_memory() -> None:
    with file_backed():
        index = totaler.build_index(str(EVENTS), jobs=1)
    with pytest.raises(totaler.InputError, match="comes with the index in memory"):
        totaler._customer_page(index, totaler._ListPage())


def test_a_bucket_of_several_hours_orders_its_customers_by_their_first_event_in_the_file(tmp_path: Path) -> None:
    """Rows out of time order: b's first event of the day is in the file before a's, though a hour earlier."""
    path = tmp_path / "log.csv"
    path.write_bytes(
        b"b,INGEST,t1,2021-03-01T05:10:00Z\na,INGEST,t2,2021-03-01T04:10:00Z\nc,INGEST,t3,2021-03-01T06:00:00Z\n"
        b"a,INGEST,t4,2021-03-01T06:10:00Z\n"
    )
    day = totaler.Window(totaler.parse_instant("2021-03-01"), totaler.parse_instant("2021-03-02"), None,
                         totaler.Buckets(totaler._DAY))  # fmt: skip
    want = totaler._count_file(str(path), day).counts
    assert list(want) == [(day.start, "b"), (day.start, "a"), (day.start, "c")]
    for index in (totaler.build_index(str(path)), totaler.build_index(str(path), in_memory=True)):
        assert list(index.counts(day).items()) == list(want.items())
    with file_backed(SEGMENT_SIZE=40):
        file_backed_index = totaler.build_index(str(path))
    assert file_backed_index.files is not None and list(file_backed_index.counts(day).items()) == list(want.items())


def test_what_cannot_be_read_again_is_indexed_in_memory_or_refused_as_before(tmp_path: Path) -> None:
    packed = tmp_path / "events.csv.gz"
    packed.write_bytes(gzip.compress(EVENTS.read_bytes()[: 1 << 20]))
    with file_backed():
        assert totaler.build_index(str(packed), jobs=2).files is None  # gzip: no segment can be read again
        with pytest.raises(totaler.InputError, match="no such file"):
            totaler.build_index(str(tmp_path / "missing.csv"), jobs=2)


def test_a_log_rewritten_while_it_is_read_or_not_the_one_indexed_is_refused(tmp_path: Path, monkeypatch) -> None:
    """A SIGHUP's build compares the file before and after it reads it; the in-memory build after a file-backed
    one, the file before with the file the file-backed index holds open."""
    path = tmp_path / "log.csv"
    data = EVENTS.read_bytes()[:200_000]
    path.write_bytes(data)
    stamp = totaler._path_stamp(str(path))
    real = totaler.build_index
    rewrites = {
        "cut": lambda: path.write_bytes(data[: len(data) // 2]),  # cp truncates, then writes
        "same size, same clock tick": lambda: (path.write_bytes(b"z" + data[1:]), os.utime(path, ns=stamp[3:4] * 2)),
    }
    for name, rewrite in rewrites.items():
        path.write_bytes(data)
        os.utime(path, ns=(stamp[3], stamp[3]))

        def build(*args, rewrite=rewrite, **kwargs):
            index = real(*args, **kwargs)
            rewrite()
            return index

        monkeypatch.setattr(totaler, "build_index", build)
        with pytest.raises(totaler.InputError, match="changed while it was read; send SIGHUP again"):
            totaler._load_index(str(path), 1)
        monkeypatch.setattr(totaler, "build_index", real)
        assert totaler._load_index(str(path), 1).events > 0, name  # left alone, it is read
    other = tmp_path / "other.csv"
    other.write_bytes(data)
    with pytest.raises(totaler.InputError, match="is no longer the log indexed"):
        totaler._load_index(str(path), 1, True, [totaler._path_stamp(str(other))])
    assert totaler._load_index(str(path), 1, True, [totaler._path_stamp(str(path))]).events > 0


@given(st.lists(st.integers(0, 1), max_size=300))
def test_duplicate_flags_packed_as_bits_unpack_to_themselves(flags: list[int]) -> None:
    packed = totaler._packed(bytes(flags))
    assert len(packed) == (len(flags) + 7) // 8
    assert totaler._unpacked(packed, len(flags)) == bytes(flags)


@pytest.mark.parametrize("positions", [[5, 6, 7, 8], [5, 7, 8, 9], [0], [3, 300, 70_000], list(range(1000, 1300))])
def test_an_hour_keeps_positions_only_where_its_events_do_not_lie_together(positions: list[int]) -> None:
    n = len(positions)
    chunk = (array("I", range(n)), array("I", range(n)), array("I", [0] * n), array("I", positions))
    repeated = bytearray(b"\0" * (max(positions) + 1))
    repeated[positions[-1]] = 1  # the hour's last event is a duplicate
    hour = totaler._Hour(chunk, one_type=False, repeated=repeated)
    assert list(hour.position_column()) == positions
    assert (hour.gaps is None) == (positions[-1] - positions[0] == n - 1)
    assert hour.duplicates() == bytes(n - 1) + b"\1"


def test_an_index_in_memory_finds_each_customer_by_its_id_and_no_other(tmp_path: Path) -> None:
    """Customer codes are looked up by bisecting the ids in id order: every id found, no neighbour mistaken."""
    ids = ["b", "a", "é", "ab", "\u202egnp.exe", "A", "a b"]
    path = tmp_path / "log.csv"
    path.write_text("".join(f"{c},INGEST,t{i},2021-03-01T04:{i:02d}:00Z\n" for i, c in enumerate(ids * 3)))
    index = totaler.build_index(str(path), in_memory=True)
    day = (totaler.parse_instant("2021-03-01"), totaler.parse_instant("2021-03-02"))
    for customer in [*ids, "", "c", "a\x00", "aa", "é\u0301", "\udcff"]:
        window = totaler.Window(*day, customer)
        with path.open("rb") as stream:
            expected = totaler.count_events(totaler.plain_events(stream), window)
        assert index.counts(window) == expected, customer


def test_a_prefix_finds_every_customer_whose_id_starts_with_it(tmp_path: Path) -> None:
    """Found by a fuzzer: an id after the prefix and U+10FFFF was left out by an upper bound of prefix + U+10FFFF."""
    ids = ["a", "a\U0010ffff", "a\U0010ffffz", "ab", "b", "", "\U0010ffff"]
    path = tmp_path / "log.csv"
    path.write_text("".join(f"{c},INGEST,t{i},2021-03-01T04:{i:02d}:00Z\n" for i, c in enumerate(ids) if c))
    index = totaler.build_index(str(path), in_memory=True)
    for prefix in ["", "a", "a\U0010ffff", "b", "\U0010ffff", "c"]:
        page = totaler._customer_page(index, totaler._ListPage("id", 100, "", prefix))
        want = sorted(c for c in ids if c and c.startswith(prefix))
        assert [row["customer"] for row in page["customers"]] == want and page["matching"] == len(want), prefix


def test_a_customer_no_row_can_hold_is_asked_of_every_index_without_an_error(tmp_path: Path) -> None:
    """Found by a fuzzer: a lone surrogate as the customer raised UnicodeEncodeError where the plain path answers."""
    path = tmp_path / "log.csv"
    path.write_bytes(b"a,INGEST,t1,2021-03-01T04:00:00Z\n\xed\xa0\x80,INGEST,t2,2021-03-01T04:01:00Z\n")
    window = totaler.Window(totaler.parse_instant("2021-03-01"), totaler.parse_instant("2021-03-02"), "\ud800")
    with path.open("rb") as stream:
        assert totaler.count_events(totaler.plain_events(stream), window) == {}
    with file_backed():
        backed = totaler.build_index(str(path))
    assert backed.files is not None
    for index in (totaler.build_index(str(path), in_memory=True), backed):
        assert index.counts(window) == {}


@pytest.mark.parametrize("types", [[0, 1, 1, 0, 1, 0, 0, 1, 1], [0, 0, 0], [0, 2, 1], [1] * 17])
def test_an_hour_keeps_two_event_types_as_bits_and_gives_each_back(types: list[int]) -> None:
    n = len(types)
    chunk = (array("I", range(n)), array("I", range(n)), array("I", types), array("I", range(n)))
    hour = totaler._Hour(chunk, one_type=False)
    assert list(hour.type_column()) == types
    assert isinstance(hour.types, bytes) == (max(types) < 2)
    assert totaler._Hour(chunk, one_type=True).type_column() is None
