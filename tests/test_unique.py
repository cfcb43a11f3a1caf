"""--unique: each transaction_id counted once, against a model written the obvious way.

The model reads the rows one at a time with a set of the ids seen: a valid row whose id is
empty or not in the set counts (if the window asks for it), and its id goes in the set.
Every way the input is read must give the model's counts and its number of duplicates:
the plain path, the fast path, parts read by workers (parts shrunk so that small files
have many), blocks shrunk so that a part has many, directories, globs, compressed files,
standard input and the command line.

Reaches inside for the --unique machinery held to the model on its own (`_PartIds`, `_Transactions`,
`_KeyTable`, `_id_key`), whose boundaries a whole file reaches only at millions of ids.
"""

import gzip
import io
import json
import random
import uuid
from collections import Counter
from pathlib import Path

import pytest
from conftest import EVENTS, run_cli, sizes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import totaler

HOUR = 3_600_000_000
START = totaler.parse_instant("2021-03-01T00:00:00Z")


def model(lines: list[str], window: totaler.Window) -> tuple[dict, int]:
    """The counts and duplicates of --unique over LINES, a row at a time, by the plain reader and a set."""
    seen: set[str] = set()
    counts: dict = {}
    duplicates = 0
    for line in lines:
        try:
            customer, moment, event_type, transaction = totaler._parse_row(line.encode())
        except totaler._Malformed:
            continue
        first = transaction == "" or transaction not in seen
        seen.add(transaction)
        asked = window.start <= moment < window.end and totaler._wanted(window, customer, event_type)
        if asked and first:
            key = (window.buckets.floor(moment), customer)
            counts[key] = counts.get(key, 0) + 1
        duplicates += asked and not first
    return counts, duplicates


def unique_window(start: int = START, end: int = START + 6 * HOUR, **options) -> totaler.Window:
    return totaler.Window(start, end, unique=True, **options)


def counted(path: str, window: totaler.Window, jobs: int = 1) -> tuple[dict, int]:
    """count_files's counts and duplicates for PATH."""
    tally = totaler.count_files(totaler._input_files(path), window, jobs=jobs)
    return tally.counts, tally.duplicates


def plain(data: bytes, window: totaler.Window) -> dict:
    """The plain path's --unique: count_events over first_events over plain_events."""
    events = totaler.plain_events(io.BytesIO(data))
    return totaler.count_events(totaler._first_events(events, totaler._PartIds(), totaler._Transactions()), window)


# Ids shaped every way the table keys them: UUIDs, 32 hex digits (and their upper case, which
# is another id), short ones (a key each, padded), long ones (kept as they are), empty ones.
ID_POOL = [
    "401938ed-f16c-407a-9c99-e7132856e7bf",
    "401938ED-F16C-407A-9C99-E7132856E7BF",
    "401938edf16c407a9c99e7132856e7bf",
    "7",
    "x" * 15,
    "x" * 16,
    "txn-2021-03-01-000001-abcdef",
    "é",
    "",
]


def row(customer: str, transaction: str, moment: int, event_type: str = "INGEST", spaces: bool = False) -> str:
    stamp = totaler._format_iso(moment)
    if spaces:
        return f" {customer} , {event_type} , {transaction} , {stamp} "
    return f"{customer},{event_type},{transaction},{stamp}"


@st.composite
def logs(draw) -> list[str]:
    """Rows over six hours from a few customers, ids from a small pool (so they repeat), some malformed."""
    ids = draw(st.lists(st.sampled_from(ID_POOL) | st.uuids().map(str), min_size=1, max_size=6))
    lines = []
    for _ in range(draw(st.integers(0, 60))):
        kind = draw(st.sampled_from(["row"] * 8 + ["spaced", "bad"]))
        if kind == "bad":
            lines.append(
                draw(st.sampled_from(["c1,INGEST,7", "c1,INGEST,7,not a time", ",INGEST,7,2021-03-01T00:00Z"]))
            )
            continue
        moment = START + draw(st.integers(-HOUR, 7 * HOUR))
        customer = draw(st.sampled_from(["c1", "c2", "c3"]))
        event_type = draw(st.sampled_from(["INGEST", "QUERY"]))
        lines.append(row(customer, draw(st.sampled_from(ids)), moment, event_type, kind == "spaced"))
    return lines


WINDOWS = st.builds(
    unique_window,
    st.integers(START - HOUR, START + 3 * HOUR),
    st.integers(START + 3 * HOUR, START + 8 * HOUR),
    customer=st.sampled_from([None, "c1", "c2"]),
    event_types=st.sampled_from([None, frozenset({"QUERY"})]),
    buckets=st.sampled_from([totaler._UTC_HOURS, totaler.Buckets(15 * 60_000_000, "Asia/Kolkata")]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs(), WINDOWS)
def test_every_path_counts_as_the_model(tmp_path_factory, lines: list[str], window: totaler.Window) -> None:
    data = ("\n".join(lines) + "\n").encode() if lines else b""
    want, duplicates = model(lines, window)
    assert plain(data, window) == want
    path = tmp_path_factory.mktemp("log") / "log.csv"
    path.write_bytes(data)
    assert counted(str(path), window) == (want, duplicates)  # one block, the fast path
    with sizes(block=64, max_line=1 << 20, part=200):  # many blocks a part, many parts
        assert counted(str(path), window, jobs=2) == (want, duplicates)


@st.composite
def logs_in_runs(draw) -> list[str]:
    """Rows in runs of one customer, event type and hour, in time order (events.csv's shape, which --unique reads
    by runs), ids from a small pool; now and then a bad row, or a run of two customers taking turns."""
    ids = draw(st.lists(st.sampled_from(ID_POOL) | st.uuids().map(str), min_size=1, max_size=8))
    lines, hour = [], START - HOUR
    for _ in range(draw(st.integers(0, 12))):
        hour += draw(st.sampled_from([0, HOUR, 2 * HOUR]))
        customer, event_type = draw(st.sampled_from(["c1", "c2", "c3"])), draw(st.sampled_from(["INGEST", "QUERY"]))
        offsets = sorted(draw(st.lists(st.integers(0, HOUR - 1), min_size=4, max_size=12)))
        mixed = draw(st.integers(0, 9)) == 0
        for k, offset in enumerate(offsets):
            who = "c2" if mixed and k % 2 else customer
            lines.append(row(who, draw(st.sampled_from(ids)), hour + offset, event_type))
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.sampled_from(["c1,INGEST,7", "c1,INGEST,7,2021-02-30T00:00Z", " ,INGEST,7,x"])))
    if draw(st.booleans()):  # every field quoted, as csv.QUOTE_ALL writes: no field here holds a comma or quote
        lines = ['"' + line.replace(",", '","') + '"' for line in lines]
    return lines


WHOLE_HOUR_WINDOWS = st.builds(
    unique_window,
    st.sampled_from([START - HOUR, START, START + HOUR, START + HOUR + 1, START + 2 * HOUR - 1]),
    st.sampled_from([START + 3 * HOUR, START + 5 * HOUR, START + 5 * HOUR + HOUR // 2, START + 30 * HOUR]),
    customer=st.sampled_from([None, "c1", "c2"]),
    event_types=st.sampled_from([None, frozenset({"QUERY"})]),
    buckets=st.sampled_from(
        [
            totaler._UTC_HOURS,
            totaler.Buckets(2 * HOUR, "UTC"),
            totaler.Buckets(24 * HOUR, "America/New_York"),
            totaler.Buckets(HOUR, "Asia/Kolkata"),  # no bucket holds a UTC hour whole: rows timed
            totaler.Buckets(HOUR // 4, "UTC"),
        ]
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs_in_runs(), WHOLE_HOUR_WINDOWS)
def test_rows_in_runs_count_as_the_model(tmp_path_factory, lines: list[str], window: totaler.Window) -> None:
    """--unique reads long runs by run, without their times, where the window and its buckets hold each run's
    hour whole or not at all: the same counts as the model, in one block, many blocks and many parts."""
    data = ("\n".join(lines) + "\n").encode() if lines else b""
    want = model(lines, window)
    path = tmp_path_factory.mktemp("log") / "log.csv"
    path.write_bytes(data)
    assert counted(str(path), window) == want
    with sizes(block=256, max_line=1 << 20, part=700):
        assert counted(str(path), window, jobs=2) == want


def test_runs_are_read_by_run_only_where_every_hour_is_whole_in_the_window_and_a_bucket() -> None:
    lines = [row(customer, f"t{k}", START + h * HOUR + k) for h, customer in enumerate(["c1", "c2"]) for k in range(9)]
    data = ("\n" + "\n".join(lines) + "\n").encode()
    runs = totaler._block_runs(totaler._Block(data, 0, len(data)))
    assert runs is not None and runs.sizes == (9, 9) and runs.hours == [START, START + HOUR]
    asked, pairs = totaler._asked_runs(runs, unique_window(START + HOUR, START + 2 * HOUR))
    assert asked == [False, True] and pairs == [(START + HOUR, "c2")]
    day = totaler.Buckets(24 * HOUR, "America/New_York")  # 2021-03-01 begins at 05:00 UTC
    assert totaler._asked_runs(runs, unique_window(START, START + 2 * HOUR, buckets=day))[1] == [
        (START - 19 * HOUR, "c1"),
        (START - 19 * HOUR, "c2"),
    ]
    assert totaler._asked_runs(runs, unique_window(START + 1, START + 2 * HOUR)) is None  # an hour cut
    assert totaler._asked_runs(runs, unique_window(buckets=totaler.Buckets(HOUR // 2, "UTC"))) is None
    turns = [line for pair in zip(lines[:9], lines[9:], strict=True) for line in pair]  # runs of one row
    taking_turns = ("\n" + "\n".join(turns) + "\n").encode()
    assert totaler._block_runs(totaler._Block(taking_turns, 0, len(taking_turns))) is None


def test_the_options_compose_and_answers_add_up(tmp_path: Path) -> None:
    """Two adjacent windows sum to their union; one customer's answer is the whole answer restricted to it."""
    rng = random.Random(25)
    lines = [
        row(rng.choice(["c1", "c2"]), rng.choice(ID_POOL), START + rng.randrange(6 * HOUR), rng.choice(["A", "B"]))
        for _ in range(3000)
    ]
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    for buckets in (totaler._UTC_HOURS, totaler.Buckets(HOUR // 4, "Asia/Kolkata"), totaler.Buckets(HOUR, "-03:30")):
        for types in (None, frozenset({"A"})):
            whole = counted(str(path), unique_window(START, START + 6 * HOUR, buckets=buckets, event_types=types))
            cut = START + 2 * HOUR  # inside a bucket at +05:30 and -03:30: the bucket is the sum of its two halves
            early = counted(str(path), unique_window(START, cut, buckets=buckets, event_types=types))
            late = counted(str(path), unique_window(cut, START + 6 * HOUR, buckets=buckets, event_types=types))
            assert Counter(early[0]) + Counter(late[0]) == Counter(whole[0]) and early[1] + late[1] == whole[1]
            for customer in ("c1", "c2"):
                one = counted(str(path), unique_window(buckets=buckets, event_types=types, customer=customer))
                assert one[0] == {key: n for key, n in whole[0].items() if key[1] == customer}
            assert whole == model(lines, unique_window(buckets=buckets, event_types=types))


def test_a_duplicate_counts_nowhere_even_when_its_first_row_is_outside_the_window(tmp_path: Path) -> None:
    lines = [
        row("c1", "t1", START - HOUR),  # before the window: the transaction
        row("c1", "t1", START + 10),  # a duplicate inside it
        row("c2", "t2", START + 2 * HOUR),  # the transaction, for c2
        row("c1", "t2", START + 20),  # the same id for another customer, earlier in time but later in the file
        row("c1", "", START + 30),  # empty ids are never duplicates
        row("c1", "", START + 40),
        row("c1", " t3 ", START + 50),  # spaces around a field are no part of it
        row("c1", "t3", START + 60),
        row("c1", "T3", START + 70),  # compared exactly: another id
    ]
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    counts, duplicates = counted(str(path), unique_window())
    assert counts == {(START, "c1"): 4, (START + 2 * HOUR, "c2"): 1}
    assert duplicates == 3
    done = run_cli(str(path), "2021-03-01T00:00:00Z", "2021-03-01T06:00:00Z", "--unique", "--json")
    answer = {bucket: row for bucket, row in json.loads(done.stdout).items() if row}
    assert answer == {"2021-03-01 00:00:00 +0000": {"c1": 4}, "2021-03-01 02:00:00 +0000": {"c2": 1}}
    assert done.stderr.decode() == "totaler: note: 3 duplicate rows not counted (--unique)\n"
    without = run_cli(str(path), "2021-03-01T00:00:00Z", "2021-03-01T06:00:00Z", "--json")
    assert json.loads(without.stdout)["2021-03-01 00:00:00 +0000"] == {"c1": 7}
    assert without.stderr == b""  # no note without --unique


def test_duplicates_across_files_of_a_directory_compressed_or_not_and_standard_input(tmp_path: Path) -> None:
    rng = random.Random(7)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(50)] + ["7", ""]
    lines = [row(rng.choice(["c1", "c2"]), rng.choice(ids), START + rng.randrange(6 * HOUR)) for _ in range(2000)]
    window = unique_window()
    want = model(lines, window)
    folder = tmp_path / "logs"
    folder.mkdir()
    pieces = [lines[:500], lines[500:1200], lines[1200:1700], lines[1700:]]  # files in name order: a, b.gz, c, d.gz
    for name, piece in zip(["a.csv", "b.csv.gz", "c.csv", "d.csv.gz"], pieces, strict=True):
        text = ("\n".join(piece) + "\n").encode()
        (folder / name).write_bytes(gzip.compress(text) if name.endswith(".gz") else text)
    assert counted(str(folder), window) == want
    assert counted(str(folder / "*.csv*"), window) == want
    with sizes(block=256, max_line=1 << 20, part=2000):
        assert counted(str(folder), window, jobs=2) == want
    stdin = run_cli(
        "-",
        "2021-03-01T00:00:00Z",
        "2021-03-01T06:00:00Z",
        "--unique",
        "--json",
        stdin=b"".join((folder / name).read_bytes() for name in ["a.csv", "c.csv"]),
    )
    first_half = model(pieces[0] + pieces[2], window)[0]
    assert {bucket: row for bucket, row in json.loads(stdin.stdout).items() if row} == {
        totaler._format_bucket(bucket): {customer: n for (b, customer), n in sorted(first_half.items()) if b == bucket}
        for bucket in sorted({bucket for bucket, _ in first_half})
    }


def test_parts_reach_their_boundaries(tmp_path: Path) -> None:
    """Parts of a few rows each, so that a duplicate sits on every side of every boundary; in time order and not."""
    rng = random.Random(3)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(40)]
    lines = [row(f"c{rng.randrange(3)}", rng.choice(ids), START + i * 10**6) for i in range(1500)]
    for shuffled in (False, True):
        if shuffled:
            rng.shuffle(lines)
        path = tmp_path / f"log-{shuffled}.csv"
        path.write_text("\n".join(lines) + "\n")
        window = unique_window()
        want = model(lines, window)
        for part in (100, 101, 333, 4096):
            with sizes(block=128, max_line=1 << 20, part=part):
                assert counted(str(path), window, jobs=2) == want, part


def test_the_table_of_ids_is_exact_as_it_grows() -> None:
    """Keys of every shape, many more than the table's first slots, asked again and again."""
    rng = random.Random(11)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))).encode() for _ in range(3000)]
    ids += [uuid.UUID(int=rng.getrandbits(128)).hex.encode() for _ in range(3000)]
    ids += [str(n).encode() for n in range(3000)] + [b"long id %d of no digit shape" % n for n in range(500)]
    ids += [b"\x00", b"\x00\x00", b"x" * 15, b"x" * 16]  # a NUL pads short keys: its length tells them apart
    seen: set[bytes] = set()
    transactions = totaler._Transactions()
    for _ in range(40):
        batch = list(dict.fromkeys(rng.choices(ids, k=rng.randrange(1, 800))))
        assert transactions.added(batch) == [key not in seen for key in batch]
        seen.update(batch)
    assert transactions.held == len(seen)
    assert totaler._KeyTable().cells * 4 < transactions.keys.cells  # it grew
    assert transactions.keys.count * 10 <= transactions.keys.cells * 7  # never more than 7 in 10 cells taken


def test_the_table_makes_room_at_once_for_the_ids_the_rest_of_a_file_will_likely_add() -> None:
    """After a file's second part, room for the rest at the last part's rate of new ids, in one growth; none where
    later parts repeat the first's ids.  Exact either way."""
    rng = random.Random(13)
    parts = [[str(uuid.UUID(int=rng.getrandbits(128))).encode() for _ in range(1000)] for _ in range(10)]
    distinct = totaler._Transactions()
    for number, ids in enumerate(parts, 1):
        assert distinct.added(ids) == [True] * 1000
        distinct.expect(1000 * number, 10_000)  # bytes: a thousand a part
        if number == 1:
            assert distinct.keys.cells == 2048  # the first part's ids are all new: no guess from them
        else:
            assert distinct.keys.cells == 16384  # 10,000 keys 7 in 10 cells at most: 14,286, a power of two
    assert distinct.added(parts[3]) == [False] * 1000 and distinct.held == 10_000
    repeated = totaler._Transactions()
    for number in range(1, 11):
        assert repeated.added(parts[0]) == [number == 1] * 1000
        repeated.expect(1000 * number, 10_000)
        assert repeated.keys.cells == 2048
    again = totaler._Transactions()
    again.added(parts[0])
    again.expect(5000, 10_000)
    again.added(parts[1])
    again.expect(100, 10_000)  # a new file's first part: no rate from the file before
    assert again.keys.cells == 4096


def test_keys_of_a_batch_are_those_of_each_id() -> None:
    """id_keys reads a whole batch of one shape in C: it must give id_key's key for each, or see it cannot."""
    one = str(uuid.UUID(int=5)).encode()
    batches = [
        [one, one.upper()],
        [one, one.replace(b"-", b"")],
        [one[:8] + one[9:13] + b"-" + one[13:]],  # a hyphen moved
        [one[:35] + b"-"],
        [one[:35] + b"g"],
        [b"-" * 36],
        [b"0" * 32, b"0" * 31 + b"-"],
        [one, b"x" * 36],
        [one, one + b"-0", str(uuid.UUID(int=6)).encode(), b"7", b""],  # most are UUIDs: keyed together
        [one.replace(b"-", b""), b"0" * 32, one, one.upper().replace(b"-", b"")],  # most are 32 digits, one is not
        [one, one + b"-0", one.upper()],  # most have a UUID's length, and one is none
    ]
    for batch in batches:
        assert each_key(totaler._id_keys(batch)) == list(map(totaler._id_key, batch)), batch
    assert isinstance(totaler._id_keys([one, one.replace(b"-", b""), b"7"]), bytes)  # each has a key: joined
    keys = totaler._id_keys([one, one.replace(b"-", b""), b"7", b"x" * 16])
    assert keys[0] != keys[1] and keys[2] != totaler._id_key(b"7\x00") and keys[3] is None


def each_key(keys: list | bytes) -> list:
    """_id_keys's answer as a list of keys (or None)."""
    return totaler._split_keys(keys) if isinstance(keys, bytes) else keys


def test_events_csv_with_duplicates_injected_against_duckdb(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    rng = random.Random(19)
    lines = EVENTS.read_text().splitlines()
    for _ in range(3000):  # a row again at a later place, or its id on another row
        at = rng.randrange(len(lines))
        copy = lines[at]
        if rng.random() < 0.5:
            customer, event_type, _, stamp = lines[rng.randrange(len(lines))].split(",")
            copy = ",".join([customer, event_type, lines[at].split(",")[2], stamp])
        lines.insert(rng.randrange(at + 1, len(lines) + 1), copy)
    path = tmp_path / "events-with-duplicates.csv"
    path.write_text("\n".join(lines) + "\n")
    rows = duckdb.sql(
        f"""
        WITH lines AS (
            SELECT row_number() OVER () AS line, trim(customer_id) AS customer, trim(transaction_id) AS id, ts
            FROM read_csv('{path}', header = false, auto_detect = false,
                          columns = {{'customer_id': 'VARCHAR', 'event_type': 'VARCHAR',
                                     'transaction_id': 'VARCHAR', 'ts': 'TIMESTAMPTZ'}})
        ), firsts AS (SELECT *, row_number() OVER (PARTITION BY id ORDER BY line) AS k FROM lines)
        SELECT epoch_us(date_trunc('hour', ts)), customer, count(*) FROM firsts
        WHERE k = 1 AND ts >= '2021-03-01 00:00:00+00' AND ts < '2021-03-04 00:00:00+00' GROUP BY ALL
        """
    ).fetchall()
    window = unique_window(START, START + 72 * HOUR)
    counts, duplicates = counted(str(path), window)
    assert sorted(counts.items()) == sorted(((bucket, customer), n) for bucket, customer, n in rows)
    assert duplicates == len(lines) - sum(n for _, _, n in rows) > 2500
    with sizes(block=1 << 16, max_line=1 << 20, part=1 << 20):
        assert counted(str(path), window, jobs=2) == (counts, duplicates)


# --- the server: its index in memory, file-backed, over HTTP ------------------------------------------------


def with_duplicates(count: int, seed: int, size: int | None = None) -> list[str]:
    """events.csv's lines (its first SIZE bytes), with COUNT rows again at later places or their ids on others."""
    rng = random.Random(seed)
    text = EVENTS.read_text() if size is None else EVENTS.read_text()[:size]
    lines = text[: text.rfind("\n")].splitlines()
    for _ in range(count):
        at = rng.randrange(len(lines))
        copy = lines[at]
        if rng.random() < 0.5:  # the id on another row: another customer, time or event type
            customer, event_type, _, stamp = lines[rng.randrange(len(lines))].split(",")
            copy = ",".join([customer, event_type, lines[at].split(",")[2], stamp])
        lines.insert(rng.randrange(at + 1, len(lines) + 1), copy)
    return lines


def questions(count: int, seed: int) -> list[totaler.Window]:
    """COUNT --unique windows over events.csv's days: any bounds, buckets, zones, customers and event types."""
    rng = random.Random(seed)
    windows = []
    for _ in range(count):
        start = START + rng.randrange(-HOUR, 72 * HOUR)
        end = start + rng.choice([rng.randrange(1, HOUR), rng.randrange(HOUR, 30 * HOUR), 72 * HOUR])
        buckets = rng.choice(
            [
                totaler._UTC_HOURS,
                totaler.Buckets(HOUR // 4, "Asia/Kolkata"),
                totaler.Buckets(totaler._DAY, "America/New_York"),
            ]
        )
        customer = rng.choice([None, None, "30330c9c4e7173ba9474c46ee5191570"])
        types = rng.choice([None, None, frozenset({"INGEST-WITH-PROXY"})])
        windows.append(unique_window(start, end, customer=customer, buckets=buckets, event_types=types))
    return windows


def test_the_index_in_memory_answers_as_the_command_line_built_in_one_part_or_many(tmp_path: Path) -> None:
    lines = with_duplicates(2000, seed=5, size=1 << 20)
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.csv").write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    (folder / "b.csv.gz").write_bytes(gzip.compress(("\n".join(lines[len(lines) // 2 :]) + "\n").encode()))
    whole = unique_window(START - HOUR, START + 80 * HOUR)
    for name in (str(folder), str(folder / "a.csv")):
        want = {window: counted(name, window) for window in [whole, *questions(40, seed=8)]}
        with sizes(block=1 << 14, max_line=1 << 20, part=1 << 16):
            for jobs in (1, 3):
                index = totaler.build_index(name, jobs=jobs, in_memory=True)
                assert index.duplicates == want[whole][1] > 0
                for window, (counts, duplicates) in want.items():
                    assert list(index.counts(window).items()) == list(counts.items())  # counts and their order
                    plain = sum(index.counts(window._replace(unique=False)).values())
                    assert plain - sum(counts.values()) == duplicates


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from test_http import Server

    path = tmp_path_factory.mktemp("unique") / "log.csv"
    path.write_text("\n".join(with_duplicates(3000, seed=9)) + "\n")
    running = Server(path, "--quiet", "--max-hours", "1000")
    yield running, path
    running.stop()
    assert "Traceback" not in running.stderr(), running.stderr()


@pytest.mark.parametrize(
    "bounds, options",
    [
        (["2021-03-01", "2021-03-04"], ["--tz", "America/New_York", "--bucket", "1d"]),
        (["2021-03-01T04:10:00Z", "2021-03-01T09:50:00Z"], ["--bucket", "15m", "--event-type", "INGEST"]),
        (["2021-03-01T04:00:00Z", "2021-03-03T06:30:00Z"], ["30330c9c4e7173ba9474c46ee5191570"]),
    ],
)
def test_unique_true_over_http_is_the_command_lines_unique(served, bounds: list[str], options: list[str]) -> None:
    from urllib.parse import urlencode

    running, path = served
    cli = run_cli(str(path), *bounds, *options, "--unique", "--json")
    params = [("start", bounds[0]), ("end", bounds[1]), ("unique", "true")]
    for flag, value in zip(options[::2], options[1::2], strict=False):
        params.append(({"--tz": "tz", "--bucket": "bucket", "--event-type": "event_type"}[flag], value))
    if len(options) == 1:
        params.append(("customer_id", options[0]))
    status, headers, body = running.request("GET", "/counts?" + urlencode(params))
    assert (status, body) == (200, cli.stdout)
    said = cli.stderr.decode().split("note: ")[1].split(" duplicate")[0].replace(",", "")
    assert headers["Totaler-Duplicates"] == said and int(said) > 0
    status, headers, body = running.request("GET", "/counts?" + urlencode(params[:2] + params[3:]))
    assert status == 200 and "Totaler-Duplicates" not in headers  # unique=false is the default
    assert body == run_cli(str(path), *bounds, *options, "--json").stdout != cli.stdout


def test_healthz_says_how_many_duplicates_the_log_holds_and_unique_must_be_true_or_false(served) -> None:
    running, path = served
    every = run_cli(str(path), "2021-01-01", "2022-01-01", "--unique", "--json")
    assert json.loads(running.get("/healthz")[1])["duplicates"] == 3000
    assert b"note: 3,000 duplicate rows" in every.stderr
    status, body = running.get("/counts?start=2021-03-01&end=2021-03-02&unique=yes")
    assert status == 400 and json.loads(body)["error"] == "unique 'yes' is not true or false"


def test_a_file_backed_server_answers_unique_once_the_index_is_in_memory(tmp_path: Path) -> None:
    from test_http import FILE_BACKED, Server

    path = tmp_path / "log.csv"
    path.write_text("\n".join(with_duplicates(500, seed=2, size=1 << 21)) + "\n")
    never = "totaler._Master.moved_into_memory = lambda self: True"  # kept file-backed: the in-memory index never comes
    target = "/counts?start=2021-03-01T04:00:00Z&end=2021-03-01T06:00:00Z&unique=true"
    running = Server(path, "--workers", "1", "--quiet", patch=f"{FILE_BACKED}; {never}")
    try:
        assert json.loads(running.get("/healthz")[1])["duplicates"] is None
        status, body = running.get(target)
        assert status == 503 and "unique=true comes with the index in memory" in json.loads(body)["error"]
        assert running.get(target.removesuffix("&unique=true"))[0] == 200
    finally:
        running.stop()
    running = Server(path, "--workers", "1", "--quiet", patch=FILE_BACKED)
    try:
        from test_http import wait_for

        wait_for(running, "kept in memory: indexed")
        cli = run_cli(str(path), "2021-03-01T04:00:00Z", "2021-03-01T06:00:00Z", "--unique", "--json")
        assert running.get(target) == (200, cli.stdout)
        with open(path, "a") as log:  # a reload reads the duplicates again
            log.write(with_duplicates(0, seed=2, size=1 << 21)[0] + "\n")
        running.process.send_signal(__import__("signal").SIGHUP)
        wait_for(running, "kept in memory: indexed", 2)
        assert json.loads(running.get("/healthz")[1])["duplicates"] == 501
    finally:
        running.stop()
    assert "Traceback" not in running.stderr(), running.stderr()
