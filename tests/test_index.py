"""The server's index, in process: built in parts or in one, and answering like the plain path."""

import gzip
import random
from array import array
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import EVENTS, SEED_CUSTOMER, file_backed, patched
from hypothesis import given, settings
from hypothesis import strategies as st

import totaler


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.integers(-(10**12), 10**12), min_size=1, max_size=300), data=st.data())
def test_range_min_is_min_of_the_slice(values: list[int], data) -> None:
    positions = array("q", values)
    i = data.draw(st.integers(0, len(values) - 1))
    j = data.draw(st.integers(i + 1, len(values)))
    assert totaler.range_min(positions, totaler.block_minima(positions), i, j) == min(values[i:j])


def test_index_answers_sub_hour_windows_like_the_counting_core() -> None:
    index = totaler.build_index(str(EVENTS))
    with open(EVENTS, "rb") as stream:
        events = list(totaler.plain_events(stream))
    rng = random.Random(3)
    for _ in range(60):
        start = datetime(2021, 3, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(3 * 24 * 3600))
        end = start + timedelta(seconds=rng.randrange(1, 1800))  # often inside one hour: both edges in it
        customer = rng.choice([None, "b4f9279a0196e40632e947dd1a88e857", SEED_CUSTOMER])
        window = totaler.Window(totaler.to_micros(start), totaler.to_micros(end), customer)
        expected = totaler.by_bucket(totaler.count_events(events, window), window)
        assert totaler.by_bucket(index.counts(window), window) == expected  # counts and customer order


def test_index_built_in_parts_is_the_index_built_in_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = EVENTS.read_bytes().splitlines(keepends=True)
    rows[5:5] = [b"broken\n", b"x,y,z,not-a-time\n"]
    rows[90000:90000] = [b"customer_id,event_type,transaction_id,timestamp\n", b"\n"]
    path = tmp_path / "messy.csv"
    path.write_bytes(b"".join(rows))
    monkeypatch.setattr(totaler, "PART_SIZE", 1 << 20)
    monkeypatch.setattr(totaler, "PARALLEL_MIN", 1)
    one, parts = totaler.build_index(str(path), jobs=1), totaler.build_index(str(path), jobs=3)
    assert (parts.events, parts.customers, parts.buckets) == (one.events, one.customers, one.buckets)
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
    for bucket in one.buckets:
        a, b = one.hours[bucket], parts.hours[bucket]
        assert list(a.counts.items()) == list(b.counts.items())
        assert (a.times, a.positions, a.minima) == (b.times, b.positions, b.minima)


def test_an_index_past_its_32_bit_positions_is_refused_in_one_line(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(EVENTS.read_bytes()[:100_000])
    monkeypatch.setattr(totaler, "MAX_INDEXED", 500)
    with pytest.raises(totaler.InputError, match="more than 500 events: too many for --serve"):
        totaler.build_index(str(path))
    monkeypatch.setattr(totaler, "PART_SIZE", 20_000)
    monkeypatch.setattr(totaler, "PARALLEL_MIN", 1)
    with pytest.raises(totaler.InputError, match="more than 500 events"):
        totaler.build_index(str(path), jobs=2)  # in parts: each fits, together they do not
    monkeypatch.setattr(totaler, "MAX_INDEXED", 10**6)
    assert totaler.build_index(str(path), jobs=2).events == path.read_bytes().count(b"\n")


ZONE_HOURS = {"+00": 0, "Z": 0, "": 0, "-08:00": -8, "+0500": 5, "+00:00": 0}


def test_runs_of_rows_are_indexed_by_their_times_alone(tmp_path: Path, monkeypatch) -> None:
    """Clean runs in whole-hour zones, bare or quoted, LF or CRLF, colons in a field: read by run_times."""
    rng = random.Random(5)
    rows = []
    for run in range(400):
        who, zone = rng.choice(["a", "b", "c9"]), rng.choice(list(ZONE_HOURS))
        hour = datetime(2021, 3, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(30))
        for _ in range(rng.randrange(1, 9)):
            moment = hour + timedelta(microseconds=rng.randrange(3600 * 10**6))
            local = moment + timedelta(hours=ZONE_HOURS[zone])  # written as local time with the zone's offset
            fraction = rng.choice(["", f".{moment.microsecond // 1000:03d}", f".{moment.microsecond:06d}"])
            stamp = local.strftime("%Y-%m-%d %H:%M:%S") + fraction + zone
            rows.append((who, "API:CALL:00:00", f"t{run}", stamp))
    for quoted, newline in [(False, "\n"), (True, "\r\n")]:
        text = "".join((",".join(f'"{f}"' if quoted else f for f in row)) + newline for row in rows)
        path = tmp_path / f"runs-{quoted}.csv"
        path.write_text(text)
        used: list = []
        read_runs = totaler.run_times
        monkeypatch.setattr(totaler, "run_times", lambda *a, seen=used, f=read_runs: seen.append(f(*a)) or seen[-1])
        index = totaler.build_index(str(path))
        monkeypatch.undo()
        assert used and all(found is not None for found in used)  # every block read by runs
        with open(path, "rb") as stream:
            events = list(totaler.plain_events(stream))
        assert index.events == len(events) == len(rows)
        assert index.first_seen == tuple(dict.fromkeys(event[0] for event in events))
        for _ in range(60):  # bounds on an event's microsecond, or one beside it
            start = rng.choice(events)[1] + rng.choice([-1, 0, 1])
            window = totaler.Window(start, rng.choice(events)[1] + rng.choice([-1, 0, 1]) + 3600 * 10**6)
            expected = totaler.by_bucket(totaler.count_events(events, window), window)
            assert totaler.by_bucket(index.counts(window), window) == expected


def cut_windows(index: totaler.Index, count: int, seed: int) -> list[totaler.Window]:
    """COUNT windows over INDEX's hours, both ends cut at random microseconds, some for one customer."""
    rng, customers = random.Random(seed), [None, SEED_CUSTOMER, "nobody"]
    first, last = index.buckets[0], index.buckets[-1] + totaler.HOUR
    windows = []
    for _ in range(count):
        start = rng.randrange(first, last)
        windows.append(totaler.Window(start, start + rng.randrange(1, 30 * totaler.HOUR), rng.choice(customers)))
    return windows


def test_events_csv_file_backed_answers_like_the_command_line() -> None:
    with patched(LAZY_MIN=0):  # the real segment size and the real probes
        index = totaler.build_index(str(EVENTS), jobs=2)
    assert index.files is not None and len(index.files.segments) == 60
    in_memory = totaler.build_index(str(EVENTS), jobs=2, in_memory=True)
    assert index.customer_order() == in_memory.first_seen
    assert totaler.customer_summary(index) == totaler.customer_summary(in_memory)
    for window in cut_windows(index, 40, seed=5):
        answer = totaler.count_file(str(EVENTS), window).counts
        assert totaler.by_bucket(index.counts(window), window) == totaler.by_bucket(answer, window)


def shuffled_log(path: Path, rows: int) -> None:
    """ROWS of events.csv, from all over it, in random order."""
    lines = EVENTS.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(random.Random(8).sample(lines, rows)))


def test_a_log_out_of_time_order_is_indexed_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "shuffled.csv"
    shuffled_log(path, 20_000)
    with patched(LAZY_MIN=0):  # the first segment holds far more hours than PROBE_HOURS
        assert totaler.build_index(str(path), jobs=1).files is None
    with file_backed(LAZY_SPAN=1 << 16):  # past the probe, an hour's rows lie in more than LAZY_SPAN bytes
        assert totaler.build_index(str(path), jobs=1).files is None
    with file_backed():
        assert totaler.build_index(str(path), jobs=1).files is not None


def test_a_log_changed_under_a_file_backed_index_is_an_error_not_a_wrong_answer(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(EVENTS.read_bytes()[: 1 << 20])
    with file_backed(SEGMENT_SIZE=1 << 14):
        index = totaler.build_index(str(path), jobs=1)
    window = totaler.Window(index.buckets[3] + 1, index.buckets[3] + totaler.HOUR - 1)
    rows = path.read_bytes().splitlines(keepends=True)
    rows = [b"zzzz" + row[4:] for row in rows]  # the same size, other customers
    path.write_bytes(b"".join(rows))
    with pytest.raises(totaler.InputError, match="changed since it was indexed; send SIGHUP"):
        index.counts(window)
    path.write_bytes(b"")
    with pytest.raises(totaler.InputError, match="changed since it was indexed"):
        index.counts(window)


def test_a_file_backed_index_reads_the_log_it_indexed_after_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(EVENTS.read_bytes()[: 1 << 20])
    with file_backed(SEGMENT_SIZE=1 << 14):
        index = totaler.build_index(str(path), jobs=1)
    windows = cut_windows(index, 10, seed=6)
    answers = [totaler.count_file(str(path), window).counts for window in windows]
    path.rename(tmp_path / "log.csv.1")  # logrotate: the old file moved away, a new one begun
    path.write_bytes(b"a,INGEST,t,2021-03-01 00:00:00+00\n")
    for window, answer in zip(windows, answers, strict=True):
        assert totaler.by_bucket(index.counts(window), window) == totaler.by_bucket(answer, window)


def test_rotated_files_file_backed_are_the_files_in_memory(tmp_path: Path) -> None:
    lines = EVENTS.read_bytes().splitlines(keepends=True)[:30_000]
    lines[100:100] = [b"broken\n"]
    (tmp_path / "logs").mkdir()
    for number, start in enumerate(range(0, len(lines), 7_000)):
        (tmp_path / "logs" / f"events.{9 - number}.csv").write_bytes(b"".join(lines[start : start + 7_000]))
    name = str(tmp_path / "logs")
    in_memory = totaler.build_index(name, jobs=2, in_memory=True)
    with file_backed(SEGMENT_SIZE=1 << 15, PART_SIZE=1 << 18, PARALLEL_MIN=1):
        index = totaler.build_index(name, jobs=2)
    assert index.files is not None and len(index.files.files) == 5
    assert (index.events, index.customers, index.buckets) == (in_memory.events, in_memory.customers, in_memory.buckets)
    assert (index.skipped.count, index.skipped.first) == (in_memory.skipped.count, in_memory.skipped.first)
    assert index.customer_order() == in_memory.first_seen
    for window in cut_windows(index, 30, seed=7):
        assert totaler.by_bucket(index.counts(window), window) == totaler.by_bucket(in_memory.counts(window), window)


def test_hours_read_again_are_kept_within_their_budget(tmp_path: Path) -> None:
    with file_backed(CACHED_EVENTS=3_000):
        index = totaler.build_index(str(EVENTS), jobs=1)
        for window in cut_windows(index, 40, seed=9):
            index.counts(window)
            kept = index.files.kept
            assert index.files.kept_events == sum(sum(hour.counts.values()) for hour in kept.values())
            assert index.files.kept_events <= 3_000 or len(kept) == 1


def test_a_customer_list_that_would_read_too_much_of_the_file_waits_for_the_index_in_memory() -> None:
    with file_backed():  # 60 segments of 256 KiB
        index = totaler.build_index(str(EVENTS), jobs=1)
        # 7 customers: more than 3 segments hold their first and last hours
        with patched(SUMMARY_READS=3), pytest.raises(totaler.InputError, match="comes with the index in memory"):
            totaler.customer_summary(index)
        listed = totaler.customer_summary(index)
    assert listed == totaler.customer_summary(totaler.build_index(str(EVENTS), jobs=1, in_memory=True))


def test_what_cannot_be_read_again_is_indexed_in_memory_or_refused_as_before(tmp_path: Path) -> None:
    packed = tmp_path / "events.csv.gz"
    packed.write_bytes(gzip.compress(EVENTS.read_bytes()[: 1 << 20]))
    with file_backed():
        assert totaler.build_index(str(packed), jobs=2).files is None  # gzip: no segment can be read again
        with pytest.raises(totaler.InputError, match="no such file"):
            totaler.build_index(str(tmp_path / "missing.csv"), jobs=2)
