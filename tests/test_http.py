"""The HTTP service: a real server on a free port, real requests, answers checked against the command line.

Reaches inside for the file-backed sizes (shrunk so that small logs take that path) and for the
HTTP helpers checked on their own (`_parse_query`, `_asks_csv`, `_reply_key`, `_date_at`).
"""

import email.utils
import http.client
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import EVENTS, EXPECTED, ROOT, SEED, SEED_CUSTOMER, children, kill_group, random_windows, run_cli, spawn

import totaler


class Server:
    """A `totaler FILE --serve --port 0` process, its address read from its first line on stderr."""

    def __init__(self, path: Path, *args: str, patch: str | None = None) -> None:
        """Serve PATH; with PATCH, a statement run on the totaler module first (e.g. smaller sizes)."""
        self.log = path.with_suffix(".log")
        self.log_file = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        program = [str(ROOT / "totaler.py")]
        if patch is not None:
            program = ["-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); import totaler; {patch}; totaler.run()"]
        self.process = spawn(
            [sys.executable, *program, str(path), "--serve", "--port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=self.log_file,
        )
        try:
            deadline = time.monotonic() + 20
            while "serving http://" not in self.stderr():
                assert self.process.poll() is None, self.stderr()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.02)
        except BaseException:
            kill_group(self.process)  # a server that did not start is not left behind
            self.log_file.close()
            raise
        self.port = int(self.stderr().split("serving http://127.0.0.1:")[1].split("/")[0])

    def stderr(self) -> str:
        return self.log.read_text()

    def request(self, method: str, target: str) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, target)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def get(self, target: str) -> tuple[int, bytes]:
        status, _, body = self.request("GET", target)
        return status, body

    def stop(self, signum: int = signal.SIGTERM) -> float:
        """Send SIGNUM; return how long the server took to exit."""
        started = time.monotonic()
        self.process.send_signal(signum)
        self.process.wait(timeout=10)
        self.log_file.close()
        return time.monotonic() - started


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    path = tmp_path_factory.mktemp("serve") / "events.csv"
    shutil.copy(EVENTS, path)
    running = Server(path, "--quiet", "--max-hours", "1000")
    yield running
    running.stop()
    assert "Traceback" not in running.stderr(), running.stderr()


def counts_url(start: str, end: str, customer: str | None = None) -> str:
    params = {"start": start, "end": end} | ({"customer_id": customer} if customer else {})
    return "/counts?" + urlencode(params)


def cli_json(start: str, end: str, customer: str | None = None) -> bytes:
    """What the command line prints with --json, computed in this process."""
    window = totaler.parse_window(start, end, customer, 100_000)
    return totaler.render_json(window, totaler._count_file(str(EVENTS), window).counts).encode()


def test_seed_query_is_the_seed_json_byte_for_byte(server: Server) -> None:
    status, headers, body = server.request("GET", counts_url(*SEED))
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert body == (EXPECTED / "seed.json").read_bytes()
    assert server.get(counts_url(*SEED, SEED_CUSTOMER)) == (
        200,
        run_cli("events.csv", *SEED, SEED_CUSTOMER, "--json").stdout,
    )


def iso_windows(n: int) -> list[tuple[str, str, str | None]]:
    """random_windows as query strings: a customer, many, or one with no events."""
    customers = ["b4f9279a0196e40632e947dd1a88e857", SEED_CUSTOMER, "nobody", None]
    return [(start.isoformat(), end.isoformat(), who) for start, end, who in random_windows(n, 7, customers)]


@pytest.mark.parametrize("start, end, customer", iso_windows(40))
def test_random_windows_match_the_command_line(server: Server, start: str, end: str, customer: str | None) -> None:
    assert server.get(counts_url(start, end, customer)) == (200, cli_json(start, end, customer))


def test_bounds_in_any_accepted_form(server: Server) -> None:
    seed = (EXPECTED / "seed.json").read_bytes()
    for start, end in [
        ("2021-03-01 04:00:00 UTC", "2021-03-01T12:00:00+05:30"),
        ("2021-03-01T04:00:00", "2021-03-01 06:30:00+00"),
    ]:
        assert server.get(counts_url(start, end)) == (200, seed)


def error_reply(server: Server, target: str, method: str = "GET") -> tuple[int, str, dict[str, str]]:
    status, headers, body = server.request(method, target)
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(body)["error"], headers


@pytest.mark.parametrize(
    "target, says",
    [
        ("/counts?end=2021-03-01", "start is missing"),
        ("/counts?start=2021-03-01", "end is missing"),
        ("/counts?start=x&end=2021-03-01", "start 'x' is not an ISO 8601 timestamp"),
        ("/counts?start=2021-03-01&end=tomorrow", "end 'tomorrow' is not an ISO 8601"),
        ("/counts?start=2021-03-01&start=2021-03-02&end=2021-03-03", "start is given 2 times"),
        ("/counts?start=2021-03-02&end=2021-03-01", "start '2021-03-02' is not before end '2021-03-01'"),
        ("/counts?start=2021-03-01&end=2021-06-01", "longer than --max-hours 1000"),
        ("/counts?start=2021-03-01&end=2021-03-02&customer=x", "unknown parameter 'customer'"),
        ("/counts?start=2021-03-01&end=2021-03-02&customer_id=", "customer_id is empty"),
        ("/counts?start=0001-01-01T00:00:00%2B05:00&end=2021-03-02", "start '0001-01-01T00:00:00+05:00' falls outside"),
        ("/counts?start=9999-12-31T00:00:00Z&end=9999-12-31T23:30:00-01:00", "end '9999-12-31T23:30:00-01:00' falls"),
        ("/counts?start=2021-03-01%2004:00:00%20PM&end=2021-03-02", "give a 24-hour time"),
        ("/counts?start=2021-03-01T09:30:00+05:30&end=2021-03-02", "a '+' in a URL must be written %2B"),
        ("/counts?start=2021-03-01T09:30+0530&end=2021-03-02", "a '+' in a URL must be written %2B"),
        (
            "/counts?start=2021-03-01&end=2021-03-02%27%3BDROP%20TABLE%20events%3B--",
            """end "2021-03-02';DROP TABLE events;--" is not""",
        ),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(server: Server, target: str, says: str) -> None:
    status, error, _ = error_reply(server, target)
    assert status == 400
    assert says in error


def test_a_space_between_a_date_and_a_time_is_no_lost_plus(server: Server) -> None:
    """Only a space after a time may be an offset's '+' read as a space: not the one before the time."""
    target = "/counts?start=9999-12-31%2020:00&end=9999-12-31%2023:00&tz=America/New_York"
    status, error, _ = error_reply(server, target)
    assert status == 400 and "falls outside the years 1 to 9999" in error and "%2B" not in error


def test_unknown_path_is_404_and_other_methods_405(server: Server) -> None:
    for target in ("/index.html", "/counts/../../etc/passwd", "/events.csv", "/healthz/x"):
        assert error_reply(server, target)[0] == 404
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"):
        status, error, headers = error_reply(server, counts_url(*SEED), method)
        assert (status, headers["Allow"]) == (405, "GET, HEAD")
        assert method in error


def test_head_sends_the_headers_of_get_without_a_body(server: Server) -> None:
    status, headers, body = server.request("HEAD", counts_url(*SEED))
    assert status == 200 and body == b""
    assert headers["Content-Length"] == str(len((EXPECTED / "seed.json").read_bytes()))


@pytest.mark.parametrize("second", [0, 1, 86_399, 951_782_400, 1_709_164_800, 4_102_444_799, 253_402_300_799])
def test_date_header_is_rfc_9110s_imf_fixdate(second: int) -> None:
    assert totaler._date_at(second) == email.utils.formatdate(second, usegmt=True)


def test_a_reply_carries_todays_date(server: Server) -> None:
    _, headers, _ = server.request("GET", "/healthz")
    sent = email.utils.parsedate_to_datetime(headers["Date"]).timestamp()
    assert abs(sent - time.time()) < 60


def test_healthz(server: Server) -> None:
    status, body = server.get("/healthz")
    health = json.loads(body)
    assert status == 200
    assert (health["status"], health["events"], health["customers"], health["skipped"]) == ("ok", 147_370, 7, 0)


def test_garbled_request_line_is_a_json_400(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"NONSENSE\r\n\r\n")
        reply = raw.recv(65536)
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert b'"error": "bad request line' in reply


def test_keep_alive_serves_many_requests_on_one_connection(server: Server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for _ in range(50):
        connection.request("GET", counts_url(*SEED))
        response = connection.getresponse()
        assert response.status == 200 and response.read() == (EXPECTED / "seed.json").read_bytes()
    connection.close()


def test_clients_that_reset_or_vanish_leave_no_traceback(server: Server) -> None:
    for payload in (b"GET /counts?start=2021-03-01", b"", b"GET " + counts_url(*SEED).encode() + b" HTTP/1.1\r\n\r\n"):
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        raw.sendall(payload)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        raw.close()
    assert server.get("/healthz")[0] == 200
    assert "Traceback" not in server.stderr(), server.stderr()


def test_concurrent_clients_all_get_right_answers(server: Server) -> None:
    windows = iso_windows(20)
    expected = {counts_url(*w): cli_json(*w) for w in windows}
    targets = list(expected)
    failures: list[str] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for _ in range(63):
            target = rng.choice(targets)
            connection.request("GET", target)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200 or body != expected[target]:
                failures.append(f"{target}: {response.status}")
        connection.close()

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(32)]  # 32 x 63 = 2016 requests
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def wait_for(running: Server, text: str, count: int = 1) -> None:
    """Wait until the server's stderr holds TEXT COUNT times."""
    deadline = time.monotonic() + 20
    while running.stderr().count(text) < count:
        assert time.monotonic() < deadline, running.stderr()
        time.sleep(0.02)


def test_sighup_reloads_and_a_reload_that_would_lose_data_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"a,INGEST,t1,2021-03-01 04:05:00+00\n")
    running = Server(path, "--workers", "2")
    target = counts_url("2021-03-01T04:00:00Z", "2021-03-01T05:00:00Z")
    both = {"2021-03-01 04:00:00 +0000": {"a": 1, "b": 1}}
    try:
        assert json.loads(running.get(target)[1]) == {"2021-03-01 04:00:00 +0000": {"a": 1}}
        with open(path, "ab") as log:
            log.write(b"b,INGEST,t2,2021-03-01 04:06:00+00\n")
        running.process.send_signal(signal.SIGHUP)
        wait_for(running, "reloaded")
        assert json.loads(running.get(target)[1]) == both
        assert json.loads(running.get("/healthz")[1])["last_reload"]["applied"] is True
        refused = [
            (lambda: path.unlink(), "no such file"),
            (lambda: path.write_bytes(b""), "now has no events (truncated?)"),  # copy-truncate rotation
            (lambda: path.write_bytes(b"garbage\n" * 10 + b"a,I,t,2021-03-01 04:05:00+00\n"), "malformed rows"),
            (lambda: (path.unlink(), path.symlink_to("/dev/zero")), "not a regular file"),
        ]
        for number, (damage, why) in enumerate(refused, 1):
            damage()
            running.process.send_signal(signal.SIGHUP)
            wait_for(running, "reload refused, still serving the old index", number)
            assert why in running.stderr().splitlines()[-1]
            assert json.loads(running.get(target)[1]) == both
            reload = json.loads(running.get("/healthz")[1])["last_reload"]
            assert reload["applied"] is False and why in reload["reason"]
        assert '"GET /counts?' in running.stderr()  # the access log, when not --quiet
    finally:
        took = running.stop(signal.SIGINT)
    assert took < 1.0
    assert "Traceback" not in running.stderr(), running.stderr()


def test_sigterm_stops_it_within_a_second_even_with_an_open_connection(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    shutil.copy(EVENTS, path)
    running = Server(path, "--quiet")
    idle = socket.create_connection(("127.0.0.1", running.port), timeout=10)
    assert running.get("/healthz")[0] == 200
    took = running.stop(signal.SIGTERM)
    idle.close()
    assert took < 1.0
    assert running.process.returncode == 0


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stopped_while_it_builds_its_first_index_it_exits_as_a_count_does(signum: int, status: int) -> None:
    """Not serving yet: the exit status of a stopped count (the README says which), within a second."""
    slow = "import time; b = totaler.build_index; totaler.build_index = lambda *a, **k: time.sleep(20) or b(*a, **k)"
    command = ["-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); import totaler; {slow}; totaler.run()"]
    process = spawn([sys.executable, *command, str(EVENTS), "--serve", "--port", "0"], stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)  # well into the build
        began = time.monotonic()
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=5)
        took = time.monotonic() - began
    finally:
        kill_group(process)
    assert process.returncode == status and took < 1.0
    assert b"Traceback" not in stderr and not children(process.pid)


@pytest.mark.parametrize(
    "args, status, says",
    [
        (["events.csv", "--serve", "2021-03-01"], 2, "--serve takes only FILE"),
        (["nope.csv", "--serve"], 1, "nope.csv: no such file"),
        (["-", "--serve"], 2, "--serve needs a file"),
    ],
)
def test_serve_refuses_bad_starts(args: list[str], status: int, says: str) -> None:
    result = run_cli(*args)
    assert result.returncode == status
    assert says in result.stderr.decode() and b"Traceback" not in result.stderr


def test_port_in_use_is_an_error(server: Server) -> None:
    result = run_cli("events.csv", "--serve", "--port", str(server.port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{server.port}" in result.stderr.decode()


def test_totaler_host_sets_the_default_address() -> None:
    env = dict(os.environ, TOTALER_HOST="0.0.0.0")
    shown = subprocess.run([sys.executable, str(ROOT / "totaler.py"), "--help"], capture_output=True, env=env)
    assert b"default 0.0.0.0; env TOTALER_HOST" in b" ".join(shown.stdout.split())
    unset = {name: value for name, value in os.environ.items() if name != "TOTALER_HOST"}
    plain = subprocess.run([sys.executable, str(ROOT / "totaler.py"), "--help"], capture_output=True, env=unset)
    assert b"default 127.0.0.1;" in b" ".join(plain.stdout.split())


def test_a_body_closes_the_connection_after_the_reply(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nGET ")
        reply = b""
        while chunk := raw.recv(65536):  # the server closes: the stray body is never read as a request
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.count(b"HTTP/1.1") == 1
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:  # an empty body keeps it open
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" * 2)
        reply = b""
        while reply.count(b'"status": "ok"') < 2:
            reply += raw.recv(65536)
    assert reply.count(b"HTTP/1.1 200 ") == 2


# A big log in time order is served at once from an index that reads cut hours from the
# file, while the index that keeps them in memory is built.  The servers below make any
# log big (FILE_BACKED_MIN = 0) and read it in parallel parts, so that the in-memory build runs
# on worker processes, as it does on a big log.
FILE_BACKED = (
    "totaler._FILE_BACKED_MIN = 0; totaler._SEGMENT_SIZE = 1 << 14; totaler._PARALLEL_MIN = 1;"
    " totaler._RANGE_SIZE = 1 << 19; totaler._FILE_HOURS = 1 << 62"
)


def events_head(size: int) -> bytes:
    """The lines of events.csv in its first SIZE bytes."""
    data = EVENTS.read_bytes()[:size]
    return data[: data.rfind(b"\n") + 1]


def open_on(pid: int, path: Path) -> int:
    """How many descriptors process PID has open on PATH (Linux)."""
    descriptors = Path(f"/proc/{pid}/fd")
    return sum(1 for fd in descriptors.iterdir() if os.path.realpath(fd) == str(path.resolve()))


def cut_queries(path: Path, count: int, seed: int) -> list[tuple[str, bytes]]:
    """COUNT /counts targets cutting hours of the log at PATH, and the command line's JSON for each."""
    rng, found = random.Random(seed), []
    for _ in range(count):
        start = datetime(2021, 3, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(5 * 86400))
        end = start + timedelta(seconds=rng.randrange(1, 3 * 86400))
        customer = rng.choice([None, SEED_CUSTOMER])
        window = totaler.parse_window(start.isoformat(), end.isoformat(), customer, 100_000)
        answer = totaler.render_json(window, totaler._count_file(str(path), window).counts).encode()
        found.append((counts_url(start.isoformat(), end.isoformat(), customer), answer))
    return found


def test_a_big_log_is_served_from_the_file_at_once_then_from_memory(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(events_head(1 << 22))
    queries = cut_queries(path, 30, seed=11)
    running = Server(path, "--workers", "2", "--jobs", "2", "--quiet", patch=FILE_BACKED)
    try:
        assert "hours read from the file until every event is kept in memory" in running.stderr().splitlines()[0]
        for target, answer in queries:  # while the in-memory index is being built, or after
            assert running.get(target) == (200, answer)
        wait_for(running, "kept in memory: indexed")
        assert json.loads(running.get("/healthz")[1])["cut_hours"] == "in memory"
        assert open_on(running.process.pid, path) == 0  # the file-backed index, and its file, let go
        with open(path, "ab") as log:
            log.write(b"b,INGEST,t2,2021-03-06 04:06:00+00\n")
        statuses: list[int] = []
        done = threading.Event()

        def ask() -> None:  # new connections all through the reload's two swaps of workers
            while not done.is_set():
                target, _ = queries[len(statuses) % len(queries)]
                statuses.append(running.get(target)[0])

        asking = threading.Thread(target=ask)
        asking.start()
        running.process.send_signal(signal.SIGHUP)
        wait_for(running, "kept in memory: indexed", 2)  # reloaded from the file, then in memory again
        done.set()
        asking.join()
        assert "reloaded: surveyed" in running.stderr()
        assert len(statuses) > 10 and set(statuses) == {200}
        health = json.loads(running.get("/healthz")[1])
        assert (health["cut_hours"], health["last_reload"]["applied"]) == ("in memory", True)
        target = counts_url("2021-03-06T04:06:00Z", "2021-03-06T04:07:00Z")
        assert json.loads(running.get(target)[1]) == {"2021-03-06 04:00:00 +0000": {"b": 1}}
    finally:
        running.stop()
    assert "Traceback" not in running.stderr(), running.stderr()


def test_a_log_changed_under_a_file_backed_server_is_a_503_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(events_head(1 << 21))
    rows = path.read_bytes().splitlines(keepends=True)
    middle = datetime.fromisoformat(rows[len(rows) // 2].split(b",")[3].decode().strip())
    target = counts_url((middle - timedelta(minutes=5)).isoformat(), (middle + timedelta(minutes=5)).isoformat())
    [(first, answer)] = cut_queries(path, 1, seed=12)
    never = "totaler._Master.moved_into_memory = lambda self: True"  # kept file-backed: the in-memory index never comes
    running = Server(path, "--workers", "1", "--quiet", patch=f"{FILE_BACKED}; {never}")
    try:
        assert json.loads(running.get("/healthz")[1])["cut_hours"] == "read from the file"
        assert running.get(first) == (200, answer)
        path.write_bytes(b"".join(b"zzzz" + row[4:] for row in rows))  # the same size, other customers
        status, body = running.get(target)
        assert status == 503
        assert json.loads(body)["error"] == f"{path} changed since it was indexed; send SIGHUP to read it again"
    finally:
        running.stop()
    assert "Traceback" not in running.stderr(), running.stderr()


# --- the questions billing asks: bucket, tz, event_type, format ------------------------------------------


QUESTIONS = [
    (["2021-03-01T09:00", "2021-03-02T09:00"], {"tz": "Asia/Kolkata"}),
    (["2021-03-01", "2021-03-04"], {"tz": "America/New_York", "bucket": "1d"}),
    (["2021-03-01T04:10:00Z", "2021-03-01T06:50:00Z"], {"bucket": "15m"}),
    (["2021-03-01", "2021-03-04"], {"event_type": ["INGEST-WITH-PROXY", "nothing"]}),
    (["2021-03-01T04:10:00Z", "2021-03-01T09:50:00Z"], {"bucket": "2h", "tz": "+05:45", "event_type": ["INGEST"]}),
]


def question_url(bounds: list[str], options: dict, customer: str | None = None, path: str = "/counts") -> str:
    params = [("start", bounds[0]), ("end", bounds[1])] + ([("customer_id", customer)] if customer else [])
    for name, value in options.items():
        params += [(name, v) for v in value] if isinstance(value, list) else [(name, value)]
    return path + "?" + urlencode(params)


def cli_options(options: dict) -> list[str]:
    args = []
    for name, value in options.items():
        flag = {"tz": "--tz", "bucket": "--bucket", "event_type": "--event-type"}[name]
        for v in value if isinstance(value, list) else [value]:
            args += [flag, v]
    return args


@pytest.mark.parametrize("bounds, options", QUESTIONS)
@pytest.mark.parametrize("customer", [None, SEED_CUSTOMER])
def test_a_question_of_any_buckets_zone_and_types_is_the_command_lines_answer(server, bounds, options, customer):
    args = [*bounds, *([customer] if customer else []), *cli_options(options)]
    status, headers, body = server.request("GET", question_url(bounds, options, customer))
    assert (status, body) == (200, run_cli("events.csv", *args, "--json").stdout)
    status, headers, body = server.request("GET", question_url(bounds, {**options, "format": "csv"}, customer))
    assert (status, headers["Content-Type"], body) == (
        200,
        "text/csv; charset=utf-8",
        run_cli("events.csv", *args, "--format", "csv").stdout,
    )


def test_a_bucket_a_change_of_offset_begins_and_the_last_of_the_year_9999_are_answered_as_the_command_line(
    tmp_path: Path,
) -> None:
    """Chatham's 02:45-03:00 +1245 after its clocks go back, and Paris's last hour of the year 9999 (the bucket after
    it has no date): the index's answers, JSON and CSV, are the command line's; no traceback, no dropped reply."""
    path = tmp_path / "odd.csv"
    path.write_text("a,INGEST,t1,2021-04-03T14:05:00Z\nb,INGEST,t2,9999-12-31T22:30:00Z\n")
    running = Server(path, "--quiet", "--workers", "1")
    try:
        for bounds, zone in [(["2021-04-03T12:00Z", "2021-04-03T16:00Z"], "Pacific/Chatham"),
                             (["9999-12-31T22:00Z", "9999-12-31T23:00Z"], "Europe/Paris")]:  # fmt: skip
            for form, flags in [("json", ["--json"]), ("csv", ["--format", "csv"])]:
                status, body = running.get(question_url(bounds, {"tz": zone, "format": form}))
                assert (status, body) == (200, run_cli(str(path), *bounds, "--tz", zone, *flags).stdout)
                assert b"a,1" in body or b'"a": 1' in body or b"b,1" in body or b'"b": 1' in body
    finally:
        running.stop()
    assert "Traceback" not in running.stderr()


def test_accept_text_csv_asks_for_csv_and_the_cache_keeps_the_two_apart(server) -> None:
    url = counts_url(*SEED)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for accept, kind in [
            ("text/csv", "text/csv"),
            ("application/json", "application/json"),
            ("text/csv", "text/csv"),
        ]:
            connection.request("GET", url, headers={"Accept": accept})
            response = connection.getresponse()
            body = response.read()
            assert response.getheader("Content-Type").startswith(kind) and response.getheader("Vary") == "Accept"
            assert body.startswith(b"bucket,customer_id,count\n" if kind == "text/csv" else b"{\n")
    finally:
        connection.close()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"bucket": "7m"}, "bucket '7m' is not a bucket width: give Nm with N dividing 60"),
        ({"bucket": "0h"}, "bucket '0h' is not a bucket width"),
        ({"tz": "Mars/Olympus"}, "tz 'Mars/Olympus' is not a time zone: give an IANA name"),
        ({"format": "xml"}, "format 'xml' is not json or csv"),
        ({"tz": ["UTC", "UTC"]}, "tz is given 2 times"),
        ({"tz": "America/New_York"}, "start '2021-03-14T02:30' does not exist in America/New_York"),
    ],
)
def test_a_bad_bucket_zone_or_format_is_a_400_naming_the_parameter(server, options: dict, message: str) -> None:
    status, body = server.get(question_url(["2021-03-14T02:30", "2021-03-15"], options))
    assert status == 400 and json.loads(body)["error"].startswith(message)


def test_a_wall_time_bound_outside_the_years_in_utc_is_a_400_not_a_dropped_connection(server) -> None:
    status, body = server.get(question_url(["0001-01-01T00:00", "0001-01-01T03:00"], {"tz": "Asia/Tokyo"}))
    assert status == 400 and "falls outside the years 1 to 9999 in UTC" in json.loads(body)["error"]


def test_healthz_names_the_event_types_a_question_may_ask_for(server) -> None:
    assert json.loads(server.get("/healthz")[1])["event_types"] == ["INGEST", "INGEST-WITH-PROXY"]


# --- the customer list, a page at a time ---------------------------------------------------------------


def test_customer_pages_chained_by_their_cursor_list_every_customer_once_in_the_order_asked(server) -> None:
    events: dict[str, int] = {}
    for line in EVENTS.read_bytes().splitlines():
        events[line.split(b",")[0].decode()] = events.get(line.split(b",")[0].decode(), 0) + 1
    for order, want in [("events", sorted(events, key=lambda c: -events[c])), ("id", sorted(events))]:
        found, cursor = [], None
        while True:
            status, body = server.get(
                "/customers?" + urlencode({"order": order, "limit": 2, **({"cursor": cursor} if cursor else {})})
            )
            page = json.loads(body)
            assert status == 200 and len(page["customers"]) <= 2 and page["matching"] == 7
            found += [(c["customer"], c["events"]) for c in page["customers"]]
            if (cursor := page["next"]) is None:
                break
        assert found == [(c, events[c]) for c in want]


def test_a_prefix_finds_customers_by_the_start_of_their_id(server) -> None:
    page = json.loads(server.get("/customers?" + urlencode({"prefix": "30", "order": "id"}))[1])
    assert [c["customer"] for c in page["customers"]] == [SEED_CUSTOMER] and page["matching"] == 1
    first, last = page["customers"][0]["first"], page["customers"][0]["last"]
    rows = [line for line in EVENTS.read_bytes().splitlines() if line.startswith(SEED_CUSTOMER.encode())]
    instants = sorted(totaler._parse_event_time(row.rsplit(b",", 1)[1].decode()) for row in rows)
    assert (first, last) == (totaler._format_utc(instants[0]), totaler._format_utc(instants[-1]))
    assert json.loads(server.get("/customers?prefix=zz")[1])["customers"] == []


@pytest.mark.parametrize(
    "query, message",
    [
        ("limit=0", "limit '0' is not a whole number from 1 to 10,000"),
        ("limit=10001", "limit '10001' is not a whole number"),
        ("order=name", "order 'name' is not events or id"),
        ("cursor=abc", "cursor 'abc' is not one this server gave"),
        ("limit=5&limit=6", "limit is given 2 times"),
        ("sort=id", "unknown parameter 'sort'"),
    ],
)
def test_a_bad_page_is_a_400_naming_the_parameter(server, query: str, message: str) -> None:
    status, body = server.get("/customers?" + query)
    assert status == 400 and json.loads(body)["error"].startswith(message)


@pytest.mark.parametrize(
    "accept, csv",
    [
        ("text/csv", True),
        ("TEXT/CSV; q=0.9", True),
        ("application/json;q=0.5, text/csv", True),
        ("text/csv;q=0", False),
        ("application/json, text/csv;q=0", False),
        ("text/csv, application/json", False),  # equal: JSON, the default
        ("text/csvx", False),
        ("text/csv;q=abc", False),
        ("*/*", False),
        ("", False),
    ],
)
def test_csv_is_answered_only_where_the_accept_header_prefers_it(accept: str, csv: bool) -> None:
    assert totaler._asks_csv(accept) is csv
    query = "start=2021-03-01T04:00:00Z&end=2021-03-01T05:00:00Z"
    assert totaler._parse_query(query, 1000, accept).format == ("csv" if csv else "json")
    assert totaler._reply_key("/counts", query, accept).endswith("\0csv") is csv
