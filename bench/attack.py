"""Attack the HTTP service the way an audit did, each attack against a fresh server, and print the figures.

    python bench/attack.py [--program totaler.py] [--workers N] [--only NAME ...]
    python bench/attack.py --audit [../shared/attacks] [--big-csv bench/data/events-10m.csv]

The first audit's attacks are here; the second audit's reproducers (issue 22: sixteen
rows) live beside the project in ../shared/attacks, and --audit runs each of them from a
copy of this checkout and prints what each reports (ratios to a baseline taken in the same
run); the three that need a 10-million-row log run only with --big-csv.

Everything goes to 127.0.0.1 only, every loop is bounded in count and time.  Needs
wrk (Debian package `wrk`) for the load rows.  Memory is the proportional set size
(PSS, /proc/PID/smaps_rollup) of the server's processes added up, so pages the
workers share with the master count once.  Not a test: a shared machine is noisy.
"""

import argparse
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from procs import children, pss_bytes

ROOT = Path(__file__).resolve().parent.parent
SEED = "/counts?start=2021-03-01T04:00:00Z&end=2021-03-01T06:30:00Z"
SEED_JSON = (ROOT / "tests" / "expected" / "seed.json").read_bytes()


class Server:
    """A `totaler FILE --serve` process on a free port, with its log."""

    def __init__(self, program: Path, path: Path, *extra: str, limit_fds: int | None = None) -> None:
        self.log = tempfile.NamedTemporaryFile(suffix=".log", delete=False)  # noqa: SIM115 - read below
        command = [sys.executable, str(program), str(path), "--serve", "--port", "0", "--quiet", *extra]

        def lower_limit() -> None:
            if limit_fds:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit_fds, limit_fds))

        self.process = subprocess.Popen(command, cwd=ROOT, stderr=self.log, preexec_fn=lower_limit)
        deadline = time.monotonic() + 60
        while "serving http://" not in self.text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(self.text())
            time.sleep(0.01)
        self.port = int(re.search(r"127\.0\.0\.1:(\d+)", self.text()).group(1))
        assert self.get(SEED, timeout=10)[1] == SEED_JSON

    def text(self) -> str:
        return Path(self.log.name).read_text()

    def get(self, target: str, timeout: float = 5.0) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", target)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]

    def pss_mib(self) -> float:
        return pss_bytes(self.process.pid) / 2**20

    def threads(self) -> int:
        return sum(
            int(re.search(r"Threads:\s+(\d+)", Path(f"/proc/{p}/status").read_text()).group(1)) for p in self.pids()
        )

    def cpu_seconds(self) -> float:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / ticks

    def stop(self) -> float:
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return time.monotonic() - began


def wrk(port: int, connections: int, seconds: int, path: str = SEED) -> dict[str, str]:
    """wrk's requests/s, p99, timeouts and other socket errors."""
    threads = min(2, connections)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        f"http://127.0.0.1:{port}{path}",
    ]
    out = subprocess.run(command, capture_output=True, text=True).stdout
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "req/s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p99": re.search(r"^\s*99%\s+(\S+)", out, re.MULTILINE).group(1),
        "errors": sum(map(int, errors.groups())) if errors else 0,
        "timeouts": int(errors.group(4)) if errors else 0,
        "non-2xx": int(non_2xx.group(1)) if non_2xx else 0,
    }


def open_connections(port: int, count: int, first_bytes: bytes) -> list[socket.socket]:
    """COUNT connections that sent FIRST_BYTES and wait."""
    opened = []
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        if first_bytes:
            raw.sendall(first_bytes)
        opened.append(raw)
    return opened


def counts_url(start: str, end: str, customer: str | None = None) -> str:
    params = {"start": start, "end": end} | ({"customer_id": customer} if customer else {})
    return "/counts?" + urlencode(params)


# --- the attacks ------------------------------------------------------------


def amplification(server: Server) -> str:
    before = server.pss_mib()
    huge = counts_url("2021-03-01T00:00:00Z", "2021-04-12T16:00:00Z", "x" * 60_000)  # 1,000 hours
    long = counts_url("2021-03-01T00:00:00Z", "2021-09-01T00:00:00Z", "x" * 7_000)  # 4,416 hours
    statuses = {server.get(huge)[0] for _ in range(20)} | {server.get(long)[0] for _ in range(20)}
    return (
        f"60 KB id: {sorted(statuses)[-1]} (request line over 8 KiB); 7 KB id over 4,416 hours: "
        f"{sorted(statuses)[0]} (reply over 16 MiB); PSS {before:.0f} -> {server.pss_mib():.0f} MiB after 40"
    )


def five_hundred_connections(server: Server) -> str:
    result = wrk(server.port, 500, 10)
    return (
        f"{result['req/s']:,.0f} req/s, p99 {result['p99']}, {result['timeouts']} timeouts, {result['errors']} errors"
    )


def close_half_sent_at_once(server: Server) -> str:
    half = open_connections(server.port, 5000, b"GET /counts?start=2021-03-01&end=2021-03-0")
    for raw in half:
        raw.close()
    worst = 0.0
    ended = time.monotonic() + 3
    while time.monotonic() < ended:
        began = time.monotonic()
        assert server.get(SEED, timeout=60) == (200, SEED_JSON)
        worst = max(worst, time.monotonic() - began)
    took = server.stop()
    return f"slowest probe {worst * 1000:.0f} ms; SIGTERM right after: exit in {took:.2f} s"


def slow_connections(server: Server, count: int = 5000) -> str:
    base = wrk(server.port, 50, 5)
    slow = open_connections(server.port, count, b"G")
    time.sleep(1)
    loaded = wrk(server.port, 50, 5)
    pss, threads = server.pss_mib(), server.threads()
    for raw in slow:
        raw.close()
    ratio = loaded["req/s"] / base["req/s"]
    return (
        f"{count:,} slow: 50-connection client {base['req/s']:,.0f} -> {loaded['req/s']:,.0f} req/s ({ratio:.0%}); "
        f"PSS {pss:.0f} MiB, {threads} threads"
    )


def trickle(server: Server) -> str:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw:
        began = time.monotonic()
        reply = b""
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60:
            try:
                raw.sendall(bytes([byte]))
                raw.settimeout(1.0)
                reply = raw.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if reply:
                break
        return (
            f"one byte a second: cut off after {time.monotonic() - began:.1f} s with {reply[:12].decode() or 'nothing'}"
        )


def descriptor_limit(program: Path, path: Path) -> str:
    server = Server(program, path, limit_fds=64)
    try:
        held = []
        for _ in range(100):
            try:
                held.append(socket.create_connection(("127.0.0.1", server.port), timeout=1))
            except OSError:
                break
        cpu = server.cpu_seconds()
        time.sleep(3)
        busy = (server.cpu_seconds() - cpu) / 3
        for raw in held:
            raw.close()
        time.sleep(0.6)
        status = server.get(SEED, timeout=5)[0]
        return (
            f"64 descriptors, {len(held)} connections held: server CPU {busy:.0%} for 3 s; after: new client {status}"
        )
    finally:
        server.stop()


def long_windows(server: Server) -> str:
    """A 1-connection client beside 4 clients asking distinct 100,000-hour windows, at the audit's rate and flat out."""
    base = wrk(server.port, 1, 5)
    results = []
    for rate in (0.6, None):  # the audit's 2.4 requests/s in all, then as fast as answers come
        stop = threading.Event()
        done = [0]
        counter = iter(range(10**9))

        def hammer(
            rate: float | None = rate, stop: threading.Event = stop, done: list[int] = done, counter=counter
        ) -> None:
            while not stop.is_set():
                began = time.monotonic()
                start = f"2010-01-01T00:00:00.{next(counter) % 10**6:06d}Z"  # distinct: no reply is cached
                status, _ = server.get(counts_url(start, "2021-05-29T15:00:00Z"), 60)  # just under 100,000 hours
                done[0] += status == 200
                if rate:
                    stop.wait(max(0.0, 1 / rate - (time.monotonic() - began)))

        hammers = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in hammers:
            thread.start()
        loaded = wrk(server.port, 1, 5)
        stop.set()
        for thread in hammers:
            thread.join()
        results.append((loaded["req/s"], done[0] / 5))
    (audit, audit_rate), (flat, flat_rate) = results
    return (
        f"normal client alone {base['req/s']:,.0f} req/s; beside {audit_rate:.1f} long answers/s "
        f"{audit:,.0f} ({audit / base['req/s']:.0%}); beside {flat_rate:.0f} long answers/s flat out "
        f"{flat:,.0f} ({flat / base['req/s']:.0%})"
    )


def smuggling(server: Server) -> str:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\nContent-Length: 0\r\n\r\n")
        reply = raw.recv(65536)
    return f"{reply.split(b' ')[1].decode()}, Connection: close" + ("" if b"Connection: close" in reply else " MISSING")


def strict_lines(server: Server) -> str:
    statuses = []
    for payload in (
        b"GET /healthz HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.9\r\nHost: x\r\n\r\n",
        b"GET\xa0/healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz\x1cHTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(payload)
            statuses.append(raw.recv(65536).split(b" ")[1].decode())
    return "no Host {}, HTTP/1.9 {}, NBSP {}, 0x1C {}".format(*statuses)


def out_of_range(server: Server) -> str:
    status, body = server.get("/counts?start=0001-01-01T00:00:00%2B05:00&end=2021-03-01")
    return f"{status}: {json.loads(body)['error']}"


def reloads(program: Path, path: Path) -> str:
    log = path.parent / "reload.csv"
    shutil.copy(path, log)
    server = Server(program, log)
    results = []
    try:
        for name, damage in [
            ("truncated", lambda: log.write_bytes(b"")),
            ("garbage", lambda: log.write_bytes(os.urandom(1 << 20))),
            ("/dev/zero", lambda: (log.unlink(), log.symlink_to("/dev/zero"))),
        ]:
            damage()
            server.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while server.text().count("reload refused") < len(results) + 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            kept = server.get(SEED)[1] == SEED_JSON
            applied = json.loads(server.get("/healthz")[1])["last_reload"]["applied"]
            results.append(f"{name}: applied {str(applied).lower()}, answers {'kept' if kept else 'LOST'}")
    finally:
        server.stop()
        log.unlink()
    return "; ".join(results)


ATTACKS: dict[str, tuple[str, Callable]] = {
    "amplification": ("20 requests, 60 KB customer_id over 1,000 hours (and 20 with 7 KB over 4,416)", amplification),
    "500": ("500 connections (wrk -t2 -c500, 10 s)", five_hundred_connections),
    "close": ("close 5,000 half-sent connections at once, then SIGTERM", close_half_sent_at_once),
    "slow": ("5,000 slow connections (one byte sent) beside a 50-connection client", slow_connections),
    "trickle": ("a client trickling its headers one byte a second", trickle),
    "fd-limit": ("at the file-descriptor limit", None),
    "long": ("4 clients asking distinct 100,000-hour windows beside a 1-connection client", long_windows),
    "smuggling": ("Content-Length: 30 then Content-Length: 0", smuggling),
    "strict": ("HTTP/1.1 without Host, HTTP/1.9, NBSP or 0x1C in the request line", strict_lines),
    "range": ("a window before year 1 in UTC", out_of_range),
    "reload": ("SIGHUP after truncation, garbage, or the path pointing at /dev/zero", None),
}


AUDIT = (  # the second audit's reproducers and their arguments, in the order of its table
    ("headbomb.py", "2 short 4096 64"),
    ("deferbuf.py", ""),
    ("noread.py", "big 60"),
    ("noread.py", "pipe 200 1000"),
    ("filebacked.py", "4"),
    ("conns.py", "10000 silent 25"),
    ("cachefill.py", "30 20"),
    ("reload_race.py", "3"),
    ("reload10m.py", "truncate replace"),
    ("strict.py", ""),
    ("customers.py", "100000"),
    ("beside.py", "bypass1999 pipe1000x50 long100k flood500"),
    ("halfclose.py", ""),
    ("stopping2.py", ""),
    ("page.py", ""),
)
NEEDS_BIG_CSV = ("filebacked.py", "reload10m.py", "stopping2.py")


def audit(folder: Path, big_csv: Path | None) -> None:
    """Run each reproducer of FOLDER from a copy of the checkout (the files they read), printing what it reports."""
    with tempfile.TemporaryDirectory() as copy:
        for name in ("totaler.py", "events.csv", "tests/expected/seed.json"):
            (Path(copy) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, Path(copy) / name)
        environment = {**os.environ, "BIG_CSV": str(big_csv.resolve())} if big_csv else dict(os.environ)
        for script, arguments in AUDIT:
            if script in NEEDS_BIG_CSV and not big_csv:
                print(f"## {script} {arguments}: skipped (needs --big-csv)\n", flush=True)
                continue
            command = [sys.executable, str(folder / script), *arguments.split()]
            done = subprocess.run(command, cwd=copy, env=environment, capture_output=True, text=True, timeout=900)
            print(f"## {script} {arguments} (exit {done.returncode})\n{done.stdout.strip()}\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--program", type=Path, default=ROOT / "totaler.py")
    parser.add_argument("--workers", default="2", help="'' to leave it out (a totaler without --workers)")
    parser.add_argument("--only", nargs="*", choices=list(ATTACKS))
    shared = ROOT.parent / "shared" / "attacks"
    parser.add_argument("--audit", type=Path, nargs="?", const=shared, help=f"the reproducers (default {shared})")
    parser.add_argument("--big-csv", type=Path, help="a log of 64 MiB or more in time order (make_big.py)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    if args.audit:
        return audit(args.audit, args.big_csv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of client sockets
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.csv"
        shutil.copy(ROOT / "events.csv", path)
        print("| attack (127.0.0.1, a fresh server each) | result |")
        print("|---|---|")
        for name, (what, attack) in ATTACKS.items():
            if args.only and name not in args.only:
                continue
            if name == "fd-limit":
                result = descriptor_limit(args.program, path)
            elif name == "reload":
                result = reloads(args.program, path)
            else:
                server = Server(args.program, path, *(["--workers", args.workers] if args.workers else []))
                try:
                    result = attack(server)
                finally:
                    if server.process.poll() is None:
                        server.stop()
            print(f"| {what} | {result} |", flush=True)


if __name__ == "__main__":
    main()
