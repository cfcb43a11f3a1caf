"""Benchmark: the questions billing asks (a zone, a width, an event type), totaler against DuckDB.

    python bench/questions.py [--rounds 3] [--only N ...] [--log PATH]

On the 10-million-row bench file (built by run.py if missing), each question is asked of
both, alternately: totaler on the command line, DuckDB in a Python process of its own
reading the same CSV (time_bucket with the zone, or a WHERE on event_type). Checks first
that both give the same counts, then prints the median wall time, the ratio and the peak
RSS.  Not a test: compare the ratios of one run, not absolute times across runs.
"""

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

from run import BIG, HERE, ROOT, race_row

YEAR = ["2021-01-01T00:00:00Z", "2022-01-01T00:00:00Z"]
# (what is asked, totaler's options, DuckDB's bucket expression, DuckDB's filter)
QUESTIONS = [
    ("UTC hours (the default)", [], "time_bucket(INTERVAL '1 hour', ts)", "TRUE"),
    ("`--tz Asia/Kolkata`", ["--tz", "Asia/Kolkata"], "time_bucket(INTERVAL '1 hour', ts, 'Asia/Kolkata')", "TRUE"),
    (
        "`--tz America/New_York --bucket 1d`",
        ["--tz", "America/New_York", "--bucket", "1d"],
        "time_bucket(INTERVAL '1 day', ts, 'America/New_York')",
        "TRUE",
    ),
    ("`--bucket 15m`", ["--bucket", "15m"], "time_bucket(INTERVAL '15 minutes', ts)", "TRUE"),
    (
        "`--event-type INGEST-WITH-PROXY`",
        ["--event-type", "INGEST-WITH-PROXY"],
        "time_bucket(INTERVAL '1 hour', ts)",
        "trim(event_type) = 'INGEST-WITH-PROXY'",
    ),
]

DUCKDB = """
import json, sys, duckdb
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
rows = con.execute('''
    SELECT epoch_us({bucket}) AS b, trim(customer_id), count(*)
    FROM read_csv(?, header = false, auto_detect = false,
                  columns = {{'customer_id': 'VARCHAR', 'event_type': 'VARCHAR',
                             'transaction_id': 'VARCHAR', 'ts': 'TIMESTAMPTZ'}})
    WHERE ts >= ?::TIMESTAMPTZ AND ts < ?::TIMESTAMPTZ AND {where}
    GROUP BY ALL
''', [sys.argv[1], sys.argv[2], sys.argv[3]]).fetchall()
if len(sys.argv) > 4:
    json.dump(sorted(rows), open(sys.argv[4], 'w'))
print(len(rows))
"""


def agree(log: Path, options: list[str], bucket: str, where: str) -> None:
    """Check that totaler and DuckDB give the same (bucket, customer, count) for the question."""
    import totaler

    window = totaler.parse_window(*YEAR, None, 100_000, buckets=totaler.Buckets(*bucket_args(options)))
    mine = json.loads(
        subprocess.run(
            [sys.executable, str(ROOT / "totaler.py"), str(log), *YEAR, *options, "--json"],
            capture_output=True,
            check=True,
        ).stdout
    )
    labels = {window.buckets.label(b): b for b in totaler._bucket_starts(window)}
    ours = sorted((labels[label], customer, n) for label, row in mine.items() for customer, n in row.items())
    answer = HERE / "data" / "duckdb-question.json"
    script = DUCKDB.format(bucket=bucket, where=where)
    subprocess.run([sys.executable, "-c", script, str(log), *YEAR, str(answer)], capture_output=True, check=True)
    theirs = sorted(tuple(row) for row in json.loads(answer.read_text()))
    if ours != theirs:
        raise SystemExit(f"counts differ for {options}: {len(ours)} pairs against DuckDB's {len(theirs)}")


def bucket_args(options: list[str]) -> tuple[int, str]:
    """The width and zone OPTIONS ask for."""
    import totaler

    width, zone = totaler._HOUR, "UTC"
    for flag, value in itertools.pairwise(options):
        if flag == "--bucket":
            width = totaler.parse_width(value)
        if flag == "--tz":
            zone = value
    return width, zone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", type=int, help="question numbers (1-5) to run")
    parser.add_argument("--log", type=Path, default=BIG, help="the log to ask (default: the 10-million-row file)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if not args.log.exists():
        subprocess.run([sys.executable, str(HERE / "make_big.py"), str(args.log)], check=True)
    print(f"{args.log.name}, median of {args.rounds} alternating runs, Python {sys.version.split()[0]}")
    print()
    print("| question | totaler | DuckDB | ratio | totaler peak RSS | DuckDB peak RSS |")
    print("|---|---|---|---|---|---|")
    for number, (name, options, bucket, where) in enumerate(QUESTIONS, 1):
        if args.only and number not in args.only:
            continue
        agree(args.log, options, bucket, where)
        ours = [sys.executable, str(ROOT / "totaler.py"), str(args.log), *YEAR, *options, "--json"]
        duckdb = [sys.executable, "-c", DUCKDB.format(bucket=bucket, where=where), str(args.log), *YEAR]
        print(race_row(name, ours, duckdb, args.rounds), flush=True)


if __name__ == "__main__":
    main()
