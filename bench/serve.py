"""Benchmark the HTTP service with wrk: the seed query on one and on 50 connections, then varied queries.

    python bench/serve.py [--seconds 15]

Starts `totaler.py events.csv --serve --quiet` on a free port, times how long it takes
to answer /healthz, checks the seed answer byte for byte, runs wrk (Debian package
`wrk`) and prints requests/s, p50/p99, non-2xx answers and the server's peak RSS
(VmHWM). The load generator shares the machine with the server. Not a test.
"""

import argparse
import http.client
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procs import children, pss_bytes

ROOT = Path(__file__).resolve().parent.parent
SEED = "/counts?start=2021-03-01T04:00:00Z&end=2021-03-01T06:30:00Z"
# Windows all over the log, most of them never asked before: no reply is reused.
VARIED = """
math.randomseed(42)
request = function()
  local start = 1614556800 + math.random(0, 3 * 86400)
  local finish = start + math.random(60, 12 * 3600)
  local path = "/counts?start=" .. os.date("!%Y-%m-%dT%H:%M:%SZ", start)
            .. "&end=" .. os.date("!%Y-%m-%dT%H:%M:%SZ", finish)
  return wrk.format("GET", path)
end
"""


def start_server(
    program: Path = ROOT / "totaler.py", extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen, int, float]:
    """The server, its port, and seconds from start until /healthz answered."""
    log = tempfile.NamedTemporaryFile(suffix=".log", delete=False)  # noqa: SIM115 - read below
    started = time.monotonic()
    command = [sys.executable, str(program), "events.csv", "--serve", "--port", "0", "--quiet", *extra]
    server = subprocess.Popen(command, cwd=ROOT, stderr=log)
    while "serving http://" not in Path(log.name).read_text():
        if server.poll() is not None or time.monotonic() - started > 30:
            raise SystemExit(Path(log.name).read_text())
        time.sleep(0.005)
    port = int(re.search(r"127\.0\.0\.1:(\d+)", Path(log.name).read_text()).group(1))
    connection = http.client.HTTPConnection("127.0.0.1", port)
    connection.request("GET", "/healthz")
    health = connection.getresponse()
    assert health.status == 200 and health.read()
    ready = time.monotonic() - started
    connection.request("GET", SEED)
    assert connection.getresponse().read() == (ROOT / "tests" / "expected" / "seed.json").read_bytes()
    connection.close()
    return server, port, ready


def wrk(port: int, threads: int, connections: int, seconds: int, script: str | None = None) -> dict[str, str]:
    """Run wrk; return its requests/s, p50, p99 and errors."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        if script:
            lua.write(script)
            lua.flush()
            command += ["-s", lua.name]
        out = subprocess.run([*command, f"http://127.0.0.1:{port}{SEED}"], capture_output=True, text=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests/s": re.search(r"Requests/sec:\s+([\d.]+)", out).group(1),
        "p50": re.search(r"^\s*50%\s+(\S+)", out, re.MULTILINE).group(1),
        "p99": re.search(r"^\s*99%\s+(\S+)", out, re.MULTILINE).group(1),
        "non-2xx": non_2xx.group(1) if non_2xx else "0",
        "socket errors": socket_errors.group(1) if socket_errors else "none",
    }


def peak_rss(pid: int) -> str:
    """The high-water mark of the resident memory of a process and each of its children, added up."""
    kib = sum(
        int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{p}/status").read_text()).group(1)) for p in [pid, *children(pid)]
    )
    return f"{kib / 1024:.0f} MiB"


def pss(pid: int) -> str:
    """The proportional set size of a process and its children: shared pages counted once."""
    return f"{pss_bytes(pid) / 2**20:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--program", type=Path, default=ROOT / "totaler.py", help="another totaler.py, to compare")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    server, port, ready = start_server(args.program)
    try:
        print(f"ready (index built, /healthz answered) {ready:.2f} s after start")
        runs = {
            "seed query, 1 connection (-t1 -c1)": wrk(port, 1, 1, args.seconds),
            "seed query, 50 connections (-t2 -c50)": wrk(port, 2, 50, args.seconds),
            "varied queries, 50 connections (-t2 -c50)": wrk(port, 2, 50, args.seconds, VARIED),
        }
        print(f"server peak RSS, its processes added up: {peak_rss(server.pid)}; PSS now: {pss(server.pid)}")
        print()
        print("| load | requests/s | p50 | p99 | non-2xx | socket errors |")
        print("|---|---|---|---|---|---|")
        for name, result in runs.items():
            print(f"| {name} | " + " | ".join(result.values()) + " |")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
