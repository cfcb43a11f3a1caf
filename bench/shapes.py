"""Benchmark: the same events written in each shape real logs use, totaler against DuckDB on each.

    python bench/shapes.py [--rows 2000000] [--rounds 3] [--only NAME ...]

Takes the first ROWS rows of the 10-million-row bench file (built by run.py), writes
them in each shape into bench/data/shapes/ (kept out of git), checks that totaler's
and DuckDB's counts agree on each, then times both alternately and prints the median
wall time, the ratio and the peak RSS (os.wait4).  Not a test: compare the ratios of
one run, not absolute times across runs.
"""

import argparse
import csv
import json
import random
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from run import BIG, HERE, ROOT, race_row

SHAPES_DIR = HERE / "data" / "shapes"
YEAR = ["2021-01-01T00:00:00Z", "2022-01-01T00:00:00Z"]
DAY = ["2021-03-01T00:00:00Z", "2021-03-02T00:00:00Z"]

DUCKDB = """
import json, sys, duckdb
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
rows = con.execute('''
    SELECT strftime(date_trunc('hour', ts), '%Y-%m-%d %H:%M:%S +0000'), trim(customer_id), count(*)
    FROM read_csv(?, header = false, auto_detect = false, quote = '"',
                  columns = {'customer_id': 'VARCHAR', 'event_type': 'VARCHAR',
                             'transaction_id': 'VARCHAR', 'ts': 'TIMESTAMPTZ'})
    WHERE ts >= ?::TIMESTAMPTZ AND ts < ?::TIMESTAMPTZ
    GROUP BY ALL
''', [sys.argv[1], sys.argv[2], sys.argv[3]]).fetchall()
if len(sys.argv) > 4:
    json.dump(sorted(rows), open(sys.argv[4], 'w'))
print(len(rows))
"""


def source_rows(count: int) -> list[list[str]]:
    """The first COUNT rows of the bench file, as fields."""
    rows = []
    with open(BIG, newline="") as stream:
        for row in csv.reader(stream):
            rows.append(row)
            if len(rows) == count:
                break
    return rows


def local(stamp: str, hours: float, sep: str) -> str:
    """STAMP (UTC, '+00') written in the local time of a zone HOURS ahead, with that zone's offset."""
    moment = datetime.fromisoformat(stamp).astimezone(timezone(timedelta(hours=hours)))
    text = moment.isoformat(sep=sep, timespec="microseconds")
    return text if hours % 1 else text.replace("000+", "+").replace("000-", "-")  # .055-08:00, .055000+05:30


def shuffled(rows: list[list[str]]) -> list[list[str]]:
    rows = list(rows)
    random.Random(10).shuffle(rows)
    return rows


def uuid_customers(rows: list[list[str]], order: bool = False) -> list[list[str]]:
    """ROWS with each customer one of 100,000 UUID-shaped ids, shuffled (or left in time order, if ORDER)."""
    chance = random.Random(11)
    names = [str(uuid.UUID(int=chance.getrandbits(128))).replace("-", "") for _ in range(100_000)]
    renamed = [[chance.choice(names), *row[1:]] for row in rows]
    return renamed if order else shuffled(renamed)


SHAPES: dict[str, tuple[Callable[[list[list[str]]], Iterator[str]], list[str]]] = {
    "as they are (`2021-03-01 00:01:11.055+00`, runs of one customer)": (
        lambda rows: (",".join(row) + "\n" for row in rows),
        YEAR,
    ),
    "`2021-03-01T00:01:11.055Z`": (
        lambda rows: (f"{c},{e},{t},{ts.replace(' ', 'T').replace('+00', 'Z')}\n" for c, e, t, ts in rows),
        YEAR,
    ),
    "CRLF line ends": (lambda rows: (",".join(row) + "\r\n" for row in rows), YEAR),
    "rows in random order": (lambda rows: (",".join(row) + "\n" for row in shuffled(rows)), YEAR),
    "100,000 UUID customers, random order (one day)": (
        lambda rows: (",".join(row) + "\n" for row in uuid_customers(rows)),
        DAY,
    ),
    "every field quoted (`csv.QUOTE_ALL`)": (lambda rows: ('"' + '","'.join(row) + '"\n' for row in rows), YEAR),
    "`2021-03-01 05:31:11.055000+05:30`": (
        lambda rows: (f"{c},{e},{t},{local(ts, 5.5, ' ')}\n" for c, e, t, ts in rows),
        YEAR,
    ),
    "`2021-02-28T16:01:11.055-08:00`": (
        lambda rows: (f"{c},{e},{t},{local(ts, -8, 'T')}\n" for c, e, t, ts in rows),
        YEAR,
    ),
    "100,000 UUID customers, in time order (one day)": (
        lambda rows: (",".join(row) + "\n" for row in uuid_customers(rows, order=True)),
        DAY,
    ),
}


def written(name: str, number: int, rows: list[list[str]], rows_count: int) -> Path:
    """The file of shape NAME, written if missing."""
    path = SHAPES_DIR / f"shape-{number}-{rows_count}.csv"
    if not path.exists():
        make, _ = SHAPES[name]
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as out:
            out.writelines(make(rows))
        tmp.rename(path)
    return path


def agree(path: Path, window: list[str]) -> int:
    """Check totaler's counts equal DuckDB's for PATH; return the number of (bucket, customer) pairs."""
    mine = json.loads(
        subprocess.run(
            [sys.executable, str(ROOT / "totaler.py"), str(path), *window, "--json"], capture_output=True, check=True
        ).stdout
    )
    answer = SHAPES_DIR / "duckdb.json"
    subprocess.run([sys.executable, "-c", DUCKDB, str(path), *window, str(answer)], capture_output=True, check=True)
    theirs = sorted(tuple(row) for row in json.loads(answer.read_text()))
    ours = sorted((bucket, customer, n) for bucket, row in mine.items() for customer, n in row.items())
    if ours != theirs:
        raise SystemExit(f"counts differ on {path}: {len(ours)} pairs against DuckDB's {len(theirs)}")
    return len(ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", type=int, help="shape numbers (1-9) to run")
    parser.add_argument("--write", action="store_true", help="only write the files (run in a process of its own)")
    args = parser.parse_args()
    if args.write:
        rows = source_rows(args.rows)
        for number, name in enumerate(SHAPES, 1):
            written(name, number, rows, len(rows))
        return
    if not BIG.exists():
        subprocess.run([sys.executable, str(HERE / "make_big.py"), str(BIG)], check=True)
    SHAPES_DIR.mkdir(parents=True, exist_ok=True)
    # Written by another process: a child forked from one holding the rows would count them in its peak RSS.
    subprocess.run([sys.executable, __file__, "--write", "--rows", str(args.rows)], check=True)
    print(f"{args.rows:,} events, median of {args.rounds} alternating runs, Python {sys.version.split()[0]}")
    print()
    print("| the same events, written as | totaler | DuckDB | ratio | totaler peak RSS | DuckDB peak RSS |")
    print("|---|---|---|---|---|---|")
    for number, (name, (_, window)) in enumerate(SHAPES.items(), 1):
        if args.only and number not in args.only:
            continue
        path = SHAPES_DIR / f"shape-{number}-{args.rows}.csv"
        agree(path, window)
        ours = [sys.executable, str(ROOT / "totaler.py"), str(path), *window, "--json"]
        print(race_row(name, ours, [sys.executable, "-c", DUCKDB, str(path), *window], args.rounds), flush=True)


if __name__ == "__main__":
    main()
