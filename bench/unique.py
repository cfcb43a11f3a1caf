"""Benchmark: `--unique` (each transaction counted once), totaler against DuckDB.

    python bench/unique.py [--rounds 3] [--only copies|distinct] [--before OLD_TOTALER.py]

Two logs of 10 million rows: the bench file as it is (its 68 copies of events.csv repeat
each of its 147,370 transaction ids 68 times, so only the first copy counts), and a
variant built here whose rows carry 10 million distinct UUIDs, with 5% of them repeated
at a random later place (10.5 million rows).  Checks first that both programs give the
same counts, then prints the median wall time, the ratio and the peak RSS of each, and
the memory totaler's table of ids takes a distinct id (traced, in this process).  DuckDB
answers with row_number() OVER (PARTITION BY transaction_id ORDER BY the line); an empty
id is never a duplicate.  --before times another totaler.py's --unique in the same
alternation (the code before a change).  Not a test: compare the ratios of one run.
"""

import argparse
import json
import random
import subprocess
import sys
import uuid
from pathlib import Path

from run import BIG, HERE, ROOT, measure

YEAR = ["2021-01-01T00:00:00Z", "2022-01-01T00:00:00Z"]
DISTINCT = HERE / "data" / "events-10m-distinct.csv"
REPEATED = 0.05

DUCKDB = """
import json, sys, duckdb
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute("SET enable_progress_bar = false")
rows = con.execute('''
    WITH lines AS (
        SELECT row_number() OVER () AS line, trim(customer_id) AS customer, trim(transaction_id) AS id, ts
        FROM read_csv(?, header = false, auto_detect = false,
                      columns = {'customer_id': 'VARCHAR', 'event_type': 'VARCHAR',
                                 'transaction_id': 'VARCHAR', 'ts': 'TIMESTAMPTZ'})
    ), firsts AS (
        SELECT *, row_number() OVER (PARTITION BY id ORDER BY line) AS k FROM lines
    )
    SELECT epoch_us(time_bucket(INTERVAL '1 hour', ts)), customer, count(*)
    FROM firsts
    WHERE (k = 1 OR coalesce(id, '') = '') AND ts >= ?::TIMESTAMPTZ AND ts < ?::TIMESTAMPTZ
    GROUP BY ALL
''', [sys.argv[1], sys.argv[2], sys.argv[3]]).fetchall()
if len(sys.argv) > 4:
    json.dump(sorted(rows), open(sys.argv[4], 'w'))
print(len(rows))
"""


def make_distinct(source: Path, target: Path, seed: int = 25) -> None:
    """Write SOURCE with a distinct UUID a row, and REPEATED of its rows again at a random later line."""
    chance = random.Random(seed)
    lines = source.read_bytes().splitlines(keepends=True)
    later: dict[int, list[bytes]] = {}
    tmp = target.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        for at, line in enumerate(lines):
            customer, event_type, _, ts = line.split(b",")
            row = b",".join([customer, event_type, str(uuid.UUID(int=chance.getrandbits(128))).encode(), ts])
            out.write(row)
            out.writelines(later.pop(at, ()))
            if chance.random() < REPEATED:
                later.setdefault(chance.randrange(at, len(lines)), []).append(row)
    tmp.replace(target)


def agree(log: Path) -> int:
    """Check that totaler --unique and DuckDB give the same (hour, customer, count); the duplicates totaler noted."""
    import totaler

    done = subprocess.run(
        [sys.executable, str(ROOT / "totaler.py"), str(log), *YEAR, "--unique", "--json"],
        capture_output=True,
        check=True,
    )
    window = totaler.parse_window(*YEAR, None, 100_000)
    labels = {window.buckets.label(bucket): bucket for bucket in totaler._bucket_starts(window)}
    ours = sorted(
        (labels[label], customer, n) for label, row in json.loads(done.stdout).items() for customer, n in row.items()
    )
    answer = HERE / "data" / "duckdb-unique.json"
    subprocess.run([sys.executable, "-c", DUCKDB, str(log), *YEAR, str(answer)], capture_output=True, check=True)
    theirs = sorted(tuple(row) for row in json.loads(answer.read_text()))
    if ours != theirs:
        raise SystemExit(f"counts differ on {log.name}: {len(ours)} pairs against DuckDB's {len(theirs)}")
    print(f"{log.name}: the same {len(ours)} (hour, customer) counts; {done.stderr.decode().strip()}")
    return sum(n for _, _, n in ours)


def table_bytes(count: int, batch: int = 1 << 16) -> tuple[float, float]:
    """Bytes a distinct id the Transactions table holds after COUNT distinct UUIDs (its slots), and at its peak
    (tracemalloc, growth included; tracemalloc slows it tenfold: not timed)."""
    import tracemalloc

    import totaler

    chance = random.Random(23)
    transactions = totaler._Transactions()
    tracemalloc.start()
    for done in range(0, count, batch):
        transactions.added(
            [str(uuid.UUID(int=chance.getrandbits(128))).encode() for _ in range(min(batch, count - done))]
        )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return len(transactions.keys.table) / count, peak / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["copies", "distinct", "table"])
    parser.add_argument("--ids", type=int, default=10_000_000, help="distinct ids for the table's memory")
    parser.add_argument("--before", type=Path, help="another totaler.py, timed alongside (--unique)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if not BIG.exists():
        subprocess.run([sys.executable, str(HERE / "make_big.py"), str(BIG)], check=True)
    if not DISTINCT.exists():
        print(f"building {DISTINCT} ...", file=sys.stderr)
        make_distinct(BIG, DISTINCT)
    logs = {"copies": BIG, "distinct": DISTINCT}
    if args.only in (None, "table"):
        slots, peak = table_bytes(args.ids)
        print(f"table of {args.ids:,} distinct UUIDs: {slots:.1f} bytes an id in its slots, {peak:.1f} at its peak")
        if args.only:
            return
    print(f"median of {args.rounds} alternating runs, Python {sys.version.split()[0]}")
    print()
    before = " | before --unique | ratio before" if args.before else ""
    head = "| log | totaler --unique | totaler (all rows) | DuckDB | ratio | totaler peak RSS | DuckDB peak RSS"
    print(f"{head}{before} |")
    print("|---|---|---|---|---|---|---|" + "---|---|" * bool(args.before))
    for name, log in logs.items():
        if args.only and name != args.only:
            continue
        agree(log)
        totaler = [sys.executable, str(ROOT / "totaler.py"), str(log), *YEAR, "--json"]
        commands = {
            "unique": [*totaler, "--unique"],
            "all": totaler,
            "duckdb": [sys.executable, "-c", DUCKDB, str(log), *YEAR],
        }
        if args.before:
            commands["before"] = [sys.executable, str(args.before), str(log), *YEAR, "--json", "--unique"]
        results = measure(commands, args.rounds)
        (ours, our_peak), (plain, _), (theirs, their_peak) = results["unique"], results["all"], results["duckdb"]
        old = f" {results['before'][0]:.2f} s | {results['before'][0] / theirs:.2f} |" if args.before else ""
        print(
            f"| {name} | {ours:.2f} s | {plain:.2f} s | {theirs:.2f} s | {ours / theirs:.2f} | "
            f"{our_peak / 1024:.0f} MiB | {their_peak / 1024:.0f} MiB |{old}",
            flush=True,
        )


if __name__ == "__main__":
    main()
