"""Benchmark: totaler against DuckDB on a 10-million-row log, and events.csv end to end.

    python bench/run.py [--rounds 3] [--jobs N] [--customers 100000]

Builds bench/data/events-10m.csv (68 shifted copies of events.csv, kept out of git) if
it is missing (with --customers N, the same rows with N UUID-shaped customers, and a
window of one day as well as the year), then times each command ROUNDS times, alternating, and prints the median
wall time, the ratio to DuckDB, rows per second and the peak RSS (from os.wait4: the
largest single process of the command, workers included). Not a test: machines are
shared and noisy, so compare the ratios of one run, not absolute times across runs.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIG = HERE / "data" / "events-10m.csv"
WINDOW = ["2021-01-01T00:00:00Z", "2022-01-01T00:00:00Z"]  # every event of the big file
ONE_DAY = ["2021-03-01T00:00:00Z", "2021-03-02T00:00:00Z"]
CUSTOMER = "30330c9c4e7173ba9474c46ee5191570"
SEED = ["2021-03-01T04:00:00Z", "2021-03-01T06:30:00Z"]

DUCKDB = """
import sys, duckdb
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
rows = con.execute('''
    SELECT date_trunc('hour', ts) AS bucket, customer_id, count(*) AS calls
    FROM read_csv(?, header = false, auto_detect = false,
                  columns = {'customer_id': 'VARCHAR', 'event_type': 'VARCHAR',
                             'transaction_id': 'VARCHAR', 'ts': 'TIMESTAMPTZ'})
    WHERE ts >= ?::TIMESTAMPTZ AND ts < ?::TIMESTAMPTZ
    GROUP BY ALL ORDER BY bucket
''', [sys.argv[1], sys.argv[2], sys.argv[3]]).fetchall()
print(len(rows))
"""


def count_lines(path: Path) -> int:
    """Lines in PATH."""
    with open(path, "rb") as stream:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 24), b""))


def run_once(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS in KiB of one run of COMMAND, its output discarded."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}")
    return wall, usage.ru_maxrss


def measure(commands: dict[str, list[str]], rounds: int) -> dict[str, tuple[float, int]]:
    """Median wall and largest peak RSS of each command, run in alternation ROUNDS times."""
    walls: dict[str, list[float]] = {name: [] for name in commands}
    peaks: dict[str, int] = dict.fromkeys(commands, 0)
    for _ in range(rounds):
        for name, command in commands.items():
            wall, peak = run_once(command)
            walls[name].append(wall)
            peaks[name] = max(peaks[name], peak)
    return {name: (statistics.median(walls[name]), peaks[name]) for name in commands}


def race_row(name: str, ours: list[str], duckdb: list[str], rounds: int) -> str:
    """A Markdown row: NAME, then the median wall of totaler's command OURS and of DUCKDB's, their ratio and peaks."""
    results = measure({"totaler": ours, "duckdb": duckdb}, rounds)
    (mine, my_peak), (theirs, their_peak) = results["totaler"], results["duckdb"]
    return (
        f"| {name} | {mine:.2f} s | {theirs:.2f} s | {mine / theirs:.2f} | "
        f"{my_peak / 1024:.0f} MiB | {their_peak / 1024:.0f} MiB |"
    )


def table(title: str, results: dict[str, tuple[float, int]], rows: int, baseline: str | None) -> str:
    """A Markdown table of RESULTS."""
    lines = [f"### {title}", "", "| program | median wall | vs DuckDB | rows/s | peak RSS |", "|---|---|---|---|---|"]
    base = results[baseline][0] if baseline in results else None
    for name, (wall, peak) in results.items():
        ratio = f"{wall / base:.2f}x" if base else "-"
        lines.append(f"| {name} | {wall:.3f} s | {ratio} | {rows / wall / 1e6:.1f} M | {peak / 1024:.0f} MiB |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=0, help="totaler --jobs (default: one per CPU)")
    parser.add_argument(
        "--scheduler",
        action="store_true",
        help="start `dask scheduler` and two `dask worker` here and time --scheduler against --jobs 2",
    )
    parser.add_argument("--customers", type=int, default=0, help="UUID-shaped customers (default: events.csv's 7)")
    args = parser.parse_args()
    if args.scheduler:
        return cluster_overhead(args.rounds)
    log = BIG if not args.customers else BIG.with_name(f"events-10m-{args.customers // 1000}k.csv")
    if not log.exists():
        print(f"building {log} ...", file=sys.stderr)
        extra = ["--customers", str(args.customers)] if args.customers else []
        subprocess.run([sys.executable, str(HERE / "make_big.py"), str(log), *extra], check=True)
    rows = count_lines(log)
    python = sys.executable
    totaler = [python, str(ROOT / "totaler.py")]
    jobs = ["--jobs", str(args.jobs)] if args.jobs else []
    with open(log, "rb") as stream:
        customer = next(stream).split(b",")[0].decode()
    big = {
        "totaler, all customers": [*totaler, str(log), *WINDOW, "--json", *jobs],
        "totaler, one customer": [*totaler, str(log), *WINDOW, customer, "--json", *jobs],
    }
    have_duckdb = subprocess.run([python, "-c", "import duckdb"], capture_output=True).returncode == 0
    if have_duckdb:
        big["DuckDB, all customers"] = [python, "-c", DUCKDB, str(log), *WINDOW]
    else:
        print("DuckDB is not installed here (pip install duckdb): no ratio", file=sys.stderr)
    if args.customers:
        big["totaler, one day"] = [*totaler, str(log), *ONE_DAY, "--json", *jobs]
        if have_duckdb:
            big["DuckDB, one day"] = [python, "-c", DUCKDB, str(log), *ONE_DAY]
    print(f"{rows:,} rows, {log.stat().st_size / 1e9:.2f} GB, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print()
    print(table(f"{log.name}, median of {args.rounds}", measure(big, args.rounds), rows, "DuckDB, all customers"))
    if args.customers:
        return None
    small = {
        "totaler, seed example": [*totaler, "events.csv", *SEED],
        "totaler, seed example, one customer": [*totaler, "events.csv", *SEED, CUSTOMER],
    }
    if have_duckdb:
        small["DuckDB, seed example"] = [python, "-c", DUCKDB, "events.csv", *SEED]
    print()
    rounds = max(args.rounds, 5)
    results = measure(small, rounds)
    print(
        table(
            f"events.csv end to end, median of {rounds}",
            results,
            count_lines(ROOT / "events.csv"),
            "DuckDB, seed example",
        )
    )


def cluster_overhead(rounds: int) -> None:
    """totaler on a two-worker Dask cluster on this machine against --jobs 2: the engine's overhead."""
    import socket

    from dask.distributed import Client

    if not BIG.exists():
        subprocess.run([sys.executable, str(HERE / "make_big.py"), str(BIG)], check=True)
    dask = str(Path(sys.executable).parent / "dask")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet
    )
    worker = [dask, "worker", address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"]
    workers = [subprocess.Popen(worker, **quiet) for _ in range(2)]
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        totaler = [sys.executable, str(ROOT / "totaler.py"), str(BIG), *WINDOW, "--json"]
        commands = {
            "totaler --jobs 2": [*totaler, "--jobs", "2"],
            "totaler --scheduler (2 workers)": [*totaler, "--scheduler", address],
        }
        results = measure(commands, rounds)
        rows = count_lines(BIG)
        print(
            table(f"{BIG.name}, median of {rounds}", results, rows, "totaler --jobs 2").replace(
                "vs DuckDB", "vs --jobs 2"
            )
        )
    finally:
        for process in [*workers, scheduler]:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
