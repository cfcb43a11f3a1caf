"""Benchmark: the server's index of the 10-million-row file against DuckDB loading it into a table.

    python bench/index.py [--program totaler.py] [--workers 2] [--rounds 1] [--customers 100000]

With --customers N, the log is the same rows with each customer one of N UUID-shaped ids
(bench/data/events-10m-N.csv, made by make_big.py if missing).
totaler: seconds from start until /healthz answers (the index built, the workers
forked), and until it says every event is in memory (a big log in time order is served
first from a survey, hours read from the file); the median and 99th percentile of
/counts queries of 1 to 8 hours cut at random seconds, half of them for one customer,
before that and after; then the proportional set size (PSS, /proc/PID/smaps_rollup) of
the whole server process tree, per event, idle (once the workers of the file-backed phase
have exited) and after the queries (each worker's reads dirty its copies of the pages they
touch), and the peak from a SIGHUP reload of the same file until every event is in memory
again.
DuckDB: `CREATE TABLE e AS SELECT customer_id, ts FROM read_csv(...)`, its wall time
and peak RSS (os.wait4).  Alternating.  Not a test: compare within one run.
"""

import argparse
import http.client
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from procs import descendants, pss_bytes
from run import BIG, HERE, ROOT

DUCKDB = """
import sys, duckdb
con = duckdb.connect()
con.execute('''CREATE TABLE e AS SELECT customer_id, ts FROM read_csv(?, header = false, auto_detect = false,
    columns = {'customer_id': 'VARCHAR', 'event_type': 'VARCHAR', 'transaction_id': 'VARCHAR', 'ts': 'TIMESTAMPTZ'})''',
    [sys.argv[1]])
print(con.execute('SELECT count(*) FROM e').fetchone()[0])
"""


def health(port: int) -> dict | None:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        return json.loads(response.read()) if response.status == 200 else None
    except OSError:
        return None


CUSTOMERS: list[str] = []  # customers of the log, to ask about one


def latencies(port: int, count: int, until_in_memory: bool) -> list[float]:
    """Seconds each of COUNT /counts queries took, windows of 1 to 8 hours cut at random seconds within the log's
    first 200 days, half of them for one customer; stopping early once the index is in memory if UNTIL_IN_MEMORY."""
    chance, took = random.Random(len(str(port))), []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    first = datetime(2021, 3, 1, tzinfo=UTC)
    for k in range(count):
        start = first + timedelta(seconds=chance.randrange(200 * 86400))
        end = start + timedelta(seconds=chance.randrange(3600, 8 * 3600))
        customer = {"customer_id": chance.choice(CUSTOMERS)} if k % 2 else {}
        query = urlencode({"start": start.isoformat(), "end": end.isoformat(), **customer})
        began = time.perf_counter()
        try:
            connection.request("GET", f"/counts?{query}")
            connection.getresponse().read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # A worker retiring (its index replaced) closed this idle keep-alive connection as the request
            # left: a GET is retried on a new one, as browsers and HTTP libraries do (RFC 9112, 9.3.1).
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", f"/counts?{query}")
            connection.getresponse().read()
        took.append(time.perf_counter() - began)
        if until_in_memory and k % 10 == 0 and (health(port) or {}).get("cut_hours", "in memory") == "in memory":
            break
    connection.close()
    return took


def wait_in_memory(port: int, server: subprocess.Popen, peak: list[int]) -> None:
    """Wait until the server's index keeps cut hours in memory, noting the highest PSS of its tree in PEAK."""
    while (health(port) or {}).get("cut_hours", "in memory") != "in memory":
        peak[0] = max(peak[0], pss_bytes(server.pid))
        time.sleep(0.05)


def settle(pid: int, workers: int) -> None:
    """Half a second, then until the workers that served the file-backed index have exited (at most 10 s):
    idle is the master and WORKERS workers (0: not known, half a second only)."""
    time.sleep(0.5)
    deadline = time.monotonic() + 10
    while workers and len(descendants(pid)) > workers and time.monotonic() < deadline:
        time.sleep(0.05)


def totaler_run(program: Path, workers: str, log_path: Path) -> dict:
    """Ready time (file-backed or not), time until cut hours are in memory, query times before and after,
    bytes per event (PSS of the tree, in memory) and the PSS peak around a reload."""
    log = tempfile.NamedTemporaryFile(suffix=".log", delete=False)  # noqa: SIM115 - read below
    started = time.monotonic()
    command = [sys.executable, str(program), str(log_path), "--serve", "--port", "0", "--quiet"]
    if workers:
        command += ["--workers", workers]
    server = subprocess.Popen(command, stderr=log)
    try:
        while "serving http://" not in Path(log.name).read_text():
            if server.poll() is not None:
                raise SystemExit(Path(log.name).read_text())
            time.sleep(0.01)
        port = int(re.search(r"127\.0\.0\.1:(\d+)", Path(log.name).read_text()).group(1))
        while (state := health(port)) is None:
            time.sleep(0.01)
        ready = time.monotonic() - started
        early = latencies(port, 200, until_in_memory=True)
        wait_in_memory(port, server, [0])
        in_memory = time.monotonic() - started
        settle(server.pid, int(workers) if workers else 0)
        idle = pss_bytes(server.pid)
        late = latencies(port, 200, until_in_memory=False)
        pss = pss_bytes(server.pid)
        server.send_signal(signal.SIGHUP)
        peak, deadline = [pss], time.monotonic() + 300
        while "reloaded" not in Path(log.name).read_text() and time.monotonic() < deadline:  # surveyed again
            peak[0] = max(peak[0], pss_bytes(server.pid))
            time.sleep(0.05)
        wait_in_memory(port, server, peak)
        return {
            "ready": ready,
            "in memory": in_memory,
            "events": state["events"],
            "idle": idle,
            "pss": pss,
            "reload peak": peak[0],
            "early": early,
            "late": late,
        }
    finally:
        server.terminate()
        server.wait()


def spread(took: list[float]) -> str:
    """Median and 99th percentile of TOOK, in milliseconds, and how many."""
    if not took:
        return "-"
    took = sorted(took)
    return f"{statistics.median(took) * 1e3:.1f} / {took[int(len(took) * 0.99)] * 1e3:.1f} ms ({len(took)})"


def duckdb_run(log_path: Path) -> dict[str, float]:
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", DUCKDB, str(log_path)], stdout=subprocess.DEVNULL)
    _, _, usage = os.wait4(process.pid, 0)
    return {"seconds": time.perf_counter() - started, "peak": usage.ru_maxrss * 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--program", type=Path, default=ROOT / "totaler.py")
    parser.add_argument("--workers", default="2", help="'' for a totaler without --workers")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--customers", type=int, default=0, help="UUID-shaped customers (default: events.csv's 7)")
    args = parser.parse_args()
    log_path = BIG if not args.customers else BIG.with_name(f"events-10m-{args.customers // 1000}k.csv")
    if not log_path.exists():
        extra = ["--customers", str(args.customers)] if args.customers else []
        subprocess.run([sys.executable, str(HERE / "make_big.py"), str(log_path), *extra], check=True)
    with open(log_path, "rb") as stream:  # customers to ask about: those of the first rows
        CUSTOMERS.extend(dict.fromkeys(next(stream).split(b",")[0].decode() for _ in range(200)))
    print(
        "| round | totaler ready | cut hours in memory | query median / p99 before, after | "
        "bytes/event (PSS, all processes), idle / after the queries | reload peak | DuckDB load | DuckDB peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for number in range(1, args.rounds + 1):
        ours = totaler_run(args.program, args.workers, log_path)
        theirs = duckdb_run(log_path)
        idle, busy = ours["idle"] / ours["events"], ours["pss"] / ours["events"]
        print(
            f"| {number} | {ours['ready']:.1f} s | {ours['in memory']:.1f} s | "
            f"{spread(ours['early'])}, {spread(ours['late'])} | "
            f"{idle:.1f} / {busy:.1f} ({ours['pss'] / 2**20:.0f} MiB) | "
            f"{ours['reload peak'] / 2**20:.0f} MiB | {theirs['seconds']:.1f} s | {theirs['peak'] / 2**20:.0f} MiB |",
            flush=True,
        )


if __name__ == "__main__":
    main()
