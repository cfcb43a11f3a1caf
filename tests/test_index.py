"""The server's index, in process: built in parts or in one, and answering like the plain path."""

import random
from array import array
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import EVENTS, SEED_CUSTOMER
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
                (6, "1 fields, expected 4"),
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
        assert index.first_seen == tuple(dict.fromkeys(customer for customer, _ in events))
        for _ in range(60):  # bounds on an event's microsecond, or one beside it
            start = rng.choice(events)[1] + rng.choice([-1, 0, 1])
            window = totaler.Window(start, rng.choice(events)[1] + rng.choice([-1, 0, 1]) + 3600 * 10**6)
            expected = totaler.by_bucket(totaler.count_events(events, window), window)
            assert totaler.by_bucket(index.counts(window), window) == expected
