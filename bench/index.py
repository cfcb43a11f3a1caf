"""Benchmark: the server's index of the 10-million-row file against DuckDB loading it into a table.

    python bench/index.py [--program totaler.py] [--workers 2] [--rounds 1]

totaler: seconds from start until /healthz answers (the index built, the workers
forked), then the proportional set size (PSS, /proc/PID/smaps_rollup) of the whole
server process tree, per event, and after a SIGHUP reload of the same file the peak.
DuckDB: `CREATE TABLE e AS SELECT customer_id, ts FROM read_csv(...)`, its wall time
and peak RSS (os.wait4).  Alternating.  Not a test: compare within one run.
"""

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procs import pss_bytes
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


def totaler_run(program: Path, workers: str) -> dict[str, float]:
    """Ready time, bytes per event (PSS of the tree) and the PSS peak around a reload."""
    log = tempfile.NamedTemporaryFile(suffix=".log", delete=False)  # noqa: SIM115 - read below
    started = time.monotonic()
    command = [sys.executable, str(program), str(BIG), "--serve", "--port", "0", "--quiet"]
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
        time.sleep(0.5)
        pss = pss_bytes(server.pid)
        server.send_signal(signal.SIGHUP)
        peak, deadline = pss, time.monotonic() + 300
        while "reload" not in Path(log.name).read_text() and time.monotonic() < deadline:
            peak = max(peak, pss_bytes(server.pid))
            time.sleep(0.05)
        return {"ready": ready, "events": state["events"], "pss": pss, "reload peak": peak}
    finally:
        server.terminate()
        server.wait()


def duckdb_run() -> dict[str, float]:
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", DUCKDB, str(BIG)], stdout=subprocess.DEVNULL)
    _, _, usage = os.wait4(process.pid, 0)
    return {"seconds": time.perf_counter() - started, "peak": usage.ru_maxrss * 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--program", type=Path, default=ROOT / "totaler.py")
    parser.add_argument("--workers", default="2", help="'' for a totaler without --workers")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    if not BIG.exists():
        subprocess.run([sys.executable, str(HERE / "make_big.py"), str(BIG)], check=True)
    print("| round | totaler ready | bytes/event (PSS, all processes) | reload peak | DuckDB load | DuckDB peak RSS |")
    print("|---|---|---|---|---|---|")
    for number in range(1, args.rounds + 1):
        ours = totaler_run(args.program, args.workers)
        theirs = duckdb_run()
        per_event = ours["pss"] / ours["events"]
        print(
            f"| {number} | {ours['ready']:.1f} s | {per_event:.1f} ({ours['pss'] / 2**20:.0f} MiB) | "
            f"{ours['reload peak'] / 2**20:.0f} MiB | {theirs['seconds']:.1f} s | {theirs['peak'] / 2**20:.0f} MiB |",
            flush=True,
        )


if __name__ == "__main__":
    main()
