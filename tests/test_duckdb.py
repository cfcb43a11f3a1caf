"""The real events.csv against an independent engine: DuckDB must give the same counts, in the same order.

Reaches inside for `_count_file` (one file, fast or plain, with its skipped rows) and `_by_bucket`
(the answer in printed order, to compare customer order too).
"""

import random
from datetime import UTC, datetime, timedelta

import pytest
from conftest import EVENTS, random_windows

import totaler

duckdb = pytest.importorskip("duckdb")  # a test-only dependency: pip install -e '.[test]'

# The same SQL the README gives under "Beyond one machine".
LOAD = """
SET TimeZone = 'UTC';
CREATE TABLE events AS
SELECT row_number() OVER () AS line, trim(customer_id) AS customer_id, ts
FROM read_csv(?, header = false, auto_detect = false,
              columns = {'customer_id': 'VARCHAR', 'event_type': 'VARCHAR',
                         'transaction_id': 'VARCHAR', 'ts': 'TIMESTAMPTZ'});
"""
QUERY = """
SELECT strftime(date_trunc('hour', ts), '%Y-%m-%d %H:%M:%S +0000') AS bucket, customer_id, count(*) AS calls
FROM events
WHERE ts >= ?::TIMESTAMPTZ AND ts < ?::TIMESTAMPTZ AND (? IS NULL OR customer_id = ?)
GROUP BY ALL
ORDER BY bucket, min(line)
"""


@pytest.fixture(scope="module")
def db():
    con = duckdb.connect()
    con.execute("SET threads = 1")  # row_number() OVER () in file order
    con.execute(LOAD, [str(EVENTS)])
    yield con
    con.close()


CUSTOMERS: list[str | None] = [
    "b4f9279a0196e40632e947dd1a88e857",
    "30330c9c4e7173ba9474c46ee5191570",
    "210e40d08e40d3df067757f2ce128910",
]


@pytest.mark.parametrize("start, end, customer", random_windows(30, 20210301, CUSTOMERS))
def test_totaler_agrees_with_duckdb(db, start: datetime, end: datetime, customer: str | None) -> None:
    window = totaler.Window(totaler._to_micros(start), totaler._to_micros(end), customer)
    tally = totaler._count_file(str(EVENTS), window, jobs=1)  # no fork beside DuckDB's threads
    counts, skipped = tally.counts, tally.skipped
    ours = [(totaler._format_bucket(b), c, n) for b, rows in totaler._by_bucket(counts, window) for c, n in rows if n]
    theirs = db.execute(QUERY, [start.isoformat(), end.isoformat(), customer, customer]).fetchall()
    assert ours == theirs
    assert skipped.count == 0


def test_the_whole_file_agrees(db) -> None:
    start, end = datetime(2021, 2, 1, tzinfo=UTC), datetime(2021, 4, 1, tzinfo=UTC)
    window = totaler.Window(totaler._to_micros(start), totaler._to_micros(end))
    counts = totaler._count_file(str(EVENTS), window, jobs=1).counts  # no fork beside DuckDB's threads
    ours = [(totaler._format_bucket(b), c, n) for b, rows in totaler._by_bucket(counts, window) for c, n in rows]
    theirs = db.execute(QUERY, [start.isoformat(), end.isoformat(), None, None]).fetchall()
    assert ours == theirs
    assert sum(n for _, _, n in ours) == 147_370


def rewritten(zone_hours: float | None, sep: str, quoted: bool, crlf: bool, shuffle: bool) -> bytes:
    """events.csv with each timestamp in the local time of a zone (None: as it is), quoted, CRLF or shuffled."""
    rows = EVENTS.read_bytes().decode().splitlines()
    if shuffle:
        random.Random(7).shuffle(rows)
    out = []
    for row in rows:
        customer, event, txid, stamp = row.split(",")
        if zone_hours is not None:
            moment = datetime.fromisoformat(stamp).astimezone(totaler.timezone(timedelta(hours=zone_hours)))
            stamp = moment.isoformat(sep=sep)
        fields = [customer, event, txid, stamp]
        out.append('"' + '","'.join(fields) + '"' if quoted else ",".join(fields))
    newline = "\r\n" if crlf else "\n"
    return (newline.join(out) + newline).encode()


SHAPES = {
    "+05:30": (5.5, " ", False, False, False),
    "-08:00, T": (-8, "T", False, False, False),
    "+05:45, quoted": (5.75, " ", True, False, False),
    "-09:30, CRLF": (-9.5, "T", False, True, False),
    "quoted, shuffled": (None, " ", True, False, True),
    "+01:00, shuffled": (1, " ", False, False, True),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_log_shape_agrees_with_duckdb_on_the_real_events(tmp_path, shape: str) -> None:
    """The same 147,370 events in each shape the fast path reads, against DuckDB reading that very file."""
    path = tmp_path / "events.csv"
    path.write_bytes(rewritten(*SHAPES[shape]))
    con = duckdb.connect()
    con.execute("SET threads = 1")
    con.execute(LOAD, [str(path)])
    for start, end, customer in random_windows(12, 20210301, CUSTOMERS):
        window = totaler.Window(totaler._to_micros(start), totaler._to_micros(end), customer)
        tally = totaler._count_file(str(path), window, jobs=1)
        ours = [
            (totaler._format_bucket(b), c, n) for b, rows in totaler._by_bucket(tally.counts, window) for c, n in rows
        ]
        theirs = con.execute(QUERY, [start.isoformat(), end.isoformat(), customer, customer]).fetchall()
        assert [row for row in ours if row[2]] == theirs, (start, end, customer)
        assert tally.skipped.count == 0
    con.close()


def test_the_readme_sql_run_as_it_stands_gives_the_seed_answer(monkeypatch) -> None:
    """The README's two SQL blocks, run in the clone's folder as a reader would: the seed window's counts."""
    import re

    from conftest import ROOT, SEED

    load, query = re.findall(r"^```sql\n(.*?)^```\n", (ROOT / "README.md").read_text(), re.MULTILINE | re.DOTALL)
    monkeypatch.chdir(ROOT)
    con = duckdb.connect()
    con.execute(load)
    found = con.execute(query).fetchall()
    con.close()
    window = totaler.parse_window(*SEED, None, 1000)
    counts = totaler._count_file(str(EVENTS), window, jobs=1).counts
    assert found == [(totaler._format_bucket(bucket), customer, n) for (bucket, customer), n in counts.items()]


ZONED = """
SELECT strftime(timezone('{zone}', b), '%Y-%m-%d %H:%M:%S'), customer_id, calls FROM (
  SELECT time_bucket(INTERVAL '{width}', ts, '{zone}') AS b, customer_id, count(*) AS calls, min(line) AS first
  FROM events_shifted
  WHERE ts >= ?::TIMESTAMPTZ AND ts < ?::TIMESTAMPTZ
  GROUP BY ALL
) ORDER BY b, first
"""


@pytest.fixture(scope="module")
def shifted(db, tmp_path_factory):
    """events.csv moved to the days New York's clocks change (copies 250 and 1 days later), in one table."""
    path = tmp_path_factory.mktemp("shifted") / "events.csv"
    lines = EVENTS.read_bytes().splitlines(keepends=True)
    with open(path, "wb") as out:
        for days in (250, 12):  # 2021-11-06..08 and 2021-03-13..15
            for line in lines:
                head, stamp = line.rsplit(b",", 1)
                moment = datetime.fromisoformat(stamp.decode().strip()) + timedelta(days=days)
                out.write(head + b"," + moment.isoformat(sep=" ").encode() + b"\n")
    db.execute(LOAD.replace("TABLE events", "TABLE events_shifted"), [str(path)])
    return path


@pytest.mark.parametrize("zone, width", [("America/New_York", "1 day"), ("America/New_York", "1 hour"),
                                         ("Asia/Tokyo", "1 hour"), ("Europe/Berlin", "1 day")])  # fmt: skip
def test_days_and_hours_in_a_zone_agree_with_duckdbs_time_bucket(db, shifted, zone: str, width: str) -> None:
    """DuckDB computes the same buckets where it can: days in any zone, hours in whole-hour zones (it too keeps
    New York's two 01:00 hours apart).  Its labels carry no offset; ours do, and are compared without it."""
    buckets = totaler.Buckets(totaler._DAY if width == "1 day" else totaler._HOUR, zone)
    for start, end in [("2021-11-06T00:00:00-04:00", "2021-11-09T00:00:00-05:00"),
                       ("2021-03-13T00:00:00-05:00", "2021-03-16T00:00:00-04:00")]:  # fmt: skip
        window = totaler.Window(totaler.parse_instant(start), totaler.parse_instant(end), None, buckets)
        counts = totaler._count_file(str(shifted), window, jobs=1).counts
        ours = [(buckets.label(b)[:19], c, n) for b, rows in totaler._by_bucket(counts, window) for c, n in rows if n]
        theirs = db.execute(ZONED.format(width=width, zone=zone), [start, end]).fetchall()
        assert ours == theirs
