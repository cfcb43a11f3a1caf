"""The HTTP service under attack: strict RFC 9112 heads, deadlines, caps, floods and amplification.

Bounded versions of bench/attack.py: hundreds of connections, not thousands; every loop
has a count and a deadline.  Timings here are generous bounds on behaviour (a deadline
that never fires, a server that stops answering), not speed measurements.

Reaches inside for the worker's limits and caches (`_Limits`, `_ReplyCache`, `_Worker`), shrunk so that
an attack reaches them with hundreds of requests, not millions.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import EVENTS, EXPECTED, SEED, children, file_backed
from test_http import Server, counts_url

SEED_JSON = (EXPECTED / "seed.json").read_bytes()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    path = tmp_path_factory.mktemp("attacks") / "events.csv"
    shutil.copy(EVENTS, path)
    running = Server(path, "--quiet", "--workers", "2", "--max-hours", "200000")
    yield running
    running.stop()
    assert "Traceback" not in running.stderr(), running.stderr()


def exchange(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send PAYLOAD on a new connection and read until the server closes it (or TIMEOUT)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        raw.sendall(payload)
        reply = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = raw.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                return reply
            reply += chunk
    raise AssertionError(f"the server did not close the connection: {reply[:200]!r}")


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


SEED_TARGET = counts_url(*SEED).encode()


@pytest.mark.parametrize(
    "payload, status",
    [
        (b"GET / HTTP/1.9\r\nHost: x\r\n\r\n", 505),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /healthz HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET  /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # two spaces
        (b"GET\xa0/healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # NBSP between words
        (b"GET /healthz\x1cHTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),  # obs-fold
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", 400),  # space before the colon
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\nContent-Length: 0\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"b" * 9000 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"GET /healthz HTTP/1.1\rHost: x\r\r", 400),  # bare CRs as line ends: at once, not at the 408
        (b"GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: <script>\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: a/b@c\r\n\r\n", 400),
        (b"GET ftp://x/healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET http://u:p@x/healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET http://[::1/healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET //[ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /healthz#top HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b" \r\n" * 200 + b"\r\n", 431),  # lines of spaces count
    ],
    ids=[
        "http-1.9",
        "http-2.0",
        "no-host",
        "two-hosts",
        "double-space",
        "nbsp",
        "0x1c",
        "obs-fold",
        "no-colon",
        "space-before-colon",
        "control-in-value",
        "two-content-lengths",
        "length-and-chunked",
        "negative-length",
        "101-fields",
        "long-header",
        "long-target",
        "5000-digit-length",
        "te-gzip",
        "te-gzip-chunked",
        "bare-cr-line-ends",
        "two-hosts-1.0",
        "host-with-space",
        "host-markup",
        "host-userinfo",
        "ftp-scheme",
        "absolute-userinfo",
        "bad-ipv6",
        "slash-slash-bracket",
        "no-slash",
        "fragment",
        "asterisk-get",
        "connect",
        "space-lines",
    ],
)
def test_a_bad_head_is_refused_with_connection_close(server: Server, payload: bytes, status: int) -> None:
    reply = exchange(server.port, payload + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(reply) == status, reply[:300]
    head = reply.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nConnection: close" in head and b"Content-Type: application/json" in head
    assert reply.count(b"\r\nServer: totaler") == 1  # what follows is never answered as another request


def test_the_body_of_a_smuggling_attempt_is_never_a_second_request(server: Server) -> None:
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    payload = f"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: {len(smuggled)}\r\n\r\n".encode() + smuggled
    reply = exchange(server.port, payload)
    assert status_of(reply) == 200 and reply.count(b"\r\nServer: totaler") == 1 and b"Connection: close" in reply


def test_http_1_0_closes_unless_asked_and_pipelined_requests_are_answered_in_order(server: Server) -> None:
    reply = exchange(server.port, b"GET " + SEED_TARGET + b" HTTP/1.0\r\n\r\n")
    assert status_of(reply) == 200 and reply.endswith(SEED_JSON) and b"Connection: close" in reply
    pipelined = b"".join(
        b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + close + b"\r\n"
        for target, close in [(SEED_TARGET, b""), (b"/nope", b""), (SEED_TARGET, b"Connection: close\r\n")]
    )
    reply = exchange(server.port, pipelined)
    assert [status_of(b"HTTP/1.1 " + part) for part in reply.split(b"HTTP/1.1 ")[1:]] == [200, 404, 200]
    assert reply.endswith(SEED_JSON)


def test_a_long_customer_cannot_amplify_the_reply(server: Server) -> None:
    before = server_rss(server)
    huge = counts_url("2021-03-01T00:00:00Z", "2021-04-12T16:00:00Z", "x" * 60_000)  # 1,000 hours
    long = counts_url("2021-03-01T00:00:00Z", "2021-09-01T00:00:00Z", "x" * 7_000)  # 4,416 hours: 31 MB
    for _ in range(20):
        assert server.get(huge)[0] == 414  # the request line is over 8 KiB
        status, body = server.get(long)
        assert status == 400
        assert "over the limit of 16,777,216: ask a shorter window or a real customer_id" in json.loads(body)["error"]
    assert server_rss(server) - before < 100 << 20


def test_a_100000_hour_window_is_answered_byte_for_byte(server: Server) -> None:
    start, end = "2011-03-01T00:00:00Z", "2022-07-27T16:00:00Z"  # 100,000 hours around the log
    status, body = server.get(counts_url(start, end))
    assert status == 200
    doc = json.loads(body)
    assert len(doc) == 100_000 and sum(sum(row.values()) for row in doc.values()) == 147_370
    assert doc["2021-03-01 05:00:00 +0000"] == json.loads(SEED_JSON)["2021-03-01 05:00:00 +0000"]


def server_rss(server: Server) -> int:
    """Resident bytes of the server and its workers, from /proc."""
    total = 0
    for pid in [server.process.pid, *children(server.process.pid)]:
        with open(f"/proc/{pid}/status") as status:
            total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) * 1024
    return total


def test_a_header_trickled_a_byte_at_a_time_is_cut_off_by_the_deadline(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    shutil.copy(EVENTS, path)
    running = Server(path, "--quiet", "--workers", "1", "--header-timeout", "1", "--idle-timeout", "1")
    try:
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as raw:
            began = time.monotonic()
            reply = b""
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                try:
                    raw.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    break
                time.sleep(0.1)
                raw.setblocking(False)
                try:
                    reply += raw.recv(65536)
                except BlockingIOError:
                    pass
                finally:
                    raw.setblocking(True)
                if reply:
                    break
            took = time.monotonic() - began
        assert status_of(reply) == 408 and b"Connection: close" in reply
        assert 0.9 < took < 3.0  # the whole head had one second, not each byte
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as idle:
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.2)
            assert status_of(idle.recv(65536)) == 200
            began = time.monotonic()
            assert idle.recv(65536) == b""  # the idle keep-alive connection is closed
            assert time.monotonic() - began < 3.0
    finally:
        running.stop()


def test_at_the_cap_idle_connections_make_room_and_busy_ones_leave_newcomers_in_the_backlog(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    shutil.copy(EVENTS, path)
    running = Server(path, "--quiet", "--workers", "1", "--max-connections", "5")
    holders = [socket.create_connection(("127.0.0.1", running.port), timeout=5) for _ in range(5)]
    try:
        time.sleep(0.3)  # the worker has taken the five, silent: each may be closed to make room
        began = time.monotonic()
        newcomer = socket.create_connection(("127.0.0.1", running.port), timeout=5)
        newcomer.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(newcomer.recv(65536)) == 200 and time.monotonic() - began < 1.0
        assert holders[0].recv(65536) == b""  # the longest silent, closed for it
        for holder in holders[1:]:  # the others now busy: a request under way
            holder.sendall(b"GET /healthz HTTP/1.1\r\n")
        newcomer.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # kept alive: idle once answered
        assert status_of(newcomer.recv(65536)) == 200
        time.sleep(0.2)
        waiting = socket.create_connection(("127.0.0.1", running.port), timeout=0.5)
        waiting.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(waiting.recv(65536)) == 200  # the idle newcomer made room
        assert newcomer.recv(65536) == b""
        late = socket.create_connection(("127.0.0.1", running.port), timeout=0.5)
        late.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)  # waiting is idle now: it makes room for late
        assert status_of(late.recv(65536)) == 200
        holders[1].sendall(b"Host: x\r\n\r\n")  # a busy one was never closed: its request is answered
        assert status_of(holders[1].recv(65536)) == 200
    finally:
        for holder in holders:
            holder.close()
        running.stop()


def test_hundreds_of_half_sent_connections_closed_at_once_stop_nobody(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    shutil.copy(EVENTS, path)
    running = Server(path, "--quiet", "--workers", "2")
    try:
        half = []
        for _ in range(400):
            raw = socket.create_connection(("127.0.0.1", running.port), timeout=5)
            raw.sendall(b"GET /counts?start=2021-03-01&end=2021-03-0")
            half.append(raw)
        for raw in half:
            raw.close()
        began = time.monotonic()
        assert running.get(counts_url(*SEED)) == (200, SEED_JSON)
        assert time.monotonic() - began < 1.0
        took = running.stop(signal.SIGTERM)
        assert took < 1.0 and running.process.returncode == 0
    finally:
        if running.process.poll() is None:
            running.stop()


ODD = 'é<"x'


def test_a_request_with_an_odd_customer_is_escaped_in_json(server: Server) -> None:
    status, body = server.get(counts_url(*SEED, ODD))
    assert status == 200
    assert json.loads(body) == {
        "2021-03-01 04:00:00 +0000": {ODD: 0},
        "2021-03-01 05:00:00 +0000": {ODD: 0},
        "2021-03-01 06:00:00 +0000": {ODD: 0},
    }


def test_long_windows_asked_back_to_back_wait_their_turn_and_keep_their_order(server: Server) -> None:
    long = [counts_url(f"2011-03-01T00:00:00.00000{i}Z", "2022-07-27T15:00:00Z").encode() for i in range(3)]
    pipelined = b"".join(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n" for target in long)
    reply = exchange(server.port, pipelined + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 30)
    parts = reply.split(b"HTTP/1.1 ")[1:]
    assert [status_of(b"HTTP/1.1 " + part) for part in parts] == [200, 200, 200, 200]
    assert all(len(json.loads(part.split(b"\r\n\r\n", 1)[1])) == 99_999 for part in parts[:3])
    assert b'"status": "ok"' in parts[3]


def test_a_worker_that_dies_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    shutil.copy(EVENTS, path)
    running = Server(path, "--quiet", "--workers", "1")
    try:
        assert running.get("/healthz")[0] == 200  # answered: the worker is there
        (worker,) = children(running.process.pid)
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while "starting another" not in running.stderr():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert running.get(counts_url(*SEED)) == (200, SEED_JSON)
        assert children(running.process.pid) != [worker]
    finally:
        running.stop()


def test_a_head_that_never_ends_is_cut_off_at_its_size_not_buffered(server: Server) -> None:
    """Lines of spaces only, 4 KiB a send: a 431 once the head passes 32 KiB, long before the deadline."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        began, reply = time.monotonic(), b""
        for _ in range(64):
            try:
                raw.sendall(b" " * 4093 + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            raw.settimeout(0.01)
            try:
                reply += raw.recv(65536)
                break
            except TimeoutError:
                pass
        raw.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            reply += raw.recv(65536)
    assert status_of(reply) == 431 and time.monotonic() - began < 3.0


def test_a_client_that_half_closes_gets_every_answer(server: Server) -> None:
    """nc -N: requests, then the write side closed; the answers still come, even behind a long window."""
    long = counts_url("2000-01-01T00:00:00Z", "2020-01-01T00:00:00Z").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        for target in (long, long, SEED_TARGET, b"/healthz"):
            raw.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        raw.shutdown(socket.SHUT_WR)
        replies = b""
        while chunk := raw.recv(1 << 20):
            replies += chunk
    assert replies.count(b"HTTP/1.1 200 OK") == 4 and SEED_JSON in replies


def test_pipelined_requests_of_one_client_leave_others_their_turn(tmp_path: Path) -> None:
    """Forty requests in one send, each two days in another zone for one event type (tens of milliseconds each,
    none cached), their replies read: a client beside them on the same worker is answered within a turn."""
    path = tmp_path / "events.csv"
    shutil.copy(EVENTS, path)
    server = Server(path, "--quiet", "--workers", "1")
    targets = [
        f"/counts?start=2021-03-01T00:00:{second:02d}Z&end=2021-03-03T00:00:00Z&tz=Asia/Kolkata&event_type=INGEST"
        for second in range(40)
    ]
    flood = b"".join(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n" for target in targets)
    answered = []
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as piper:

            def read() -> None:
                while sum(answered) < len(targets) and (chunk := piper.recv(1 << 20)):
                    answered.append(chunk.count(b"HTTP/1.1 200"))

            reader = threading.Thread(target=read)
            reader.start()
            piper.sendall(flood)
            time.sleep(0.05)
            began = time.monotonic()
            assert server.get("/healthz")[0] == 200
            beside = time.monotonic() - began
            reader.join(timeout=20)
    finally:
        server.stop()
    assert sum(answered) == len(targets) and beside < 0.5


def test_replies_nobody_reads_are_held_within_a_budget(tmp_path: Path) -> None:
    """Clients that ask big answers and never read them: past the budget of unsent bytes (16 MiB here), a 503;
    a reader beside them is answered; the unread are cut off at their deadline."""
    path = tmp_path / "events.csv"
    shutil.copy(EVENTS, path)
    budget = "d = totaler._Limits.__new__.__defaults__; totaler._Limits.__new__.__defaults__ = (*d[:-1], 16 << 20)"
    running = Server(path, "--quiet", "--workers", "1", "--idle-timeout", "2", "--max-hours", "200000", patch=budget)
    big = counts_url("2000-01-01T00:00:00Z", "2020-01-01T00:00:00Z", "x" * 40).encode()  # about 9 MB
    try:
        sleepers = []
        for _ in range(4):
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the reply stays with us
            raw.connect(("127.0.0.1", running.port))
            raw.sendall(b"GET " + big + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            sleepers.append(raw)
            time.sleep(0.3)
        assert running.get(counts_url(*SEED)) == (200, SEED_JSON)
        statuses = [status_of(raw.recv(4096)) for raw in sleepers]
        assert statuses[0] == 200 and 503 in statuses  # the first is held; past the budget, refused
        time.sleep(3)  # the idle deadline: the unread reply is dropped, its connection reset
        with pytest.raises((ConnectionResetError, AssertionError)):
            while sleepers[0].recv(1 << 20):
                pass
            raise AssertionError("closed cleanly")
    finally:
        for raw in sleepers:
            raw.close()
        running.stop()
    assert "Traceback" not in running.stderr()


def test_a_path_from_two_slashes_is_a_path_not_a_host(server: Server) -> None:
    assert server.get("//x/healthz")[0] == 404
    assert server.get("http://x/healthz")[0] == 200  # absolute-form: the host, then the path


@pytest.mark.parametrize("start", ["2021-03-01T04:00:00Z%00junk", "%EF%BC%92021-03-01", "2021-03-01T%D9%A004:00"])
def test_a_time_of_anything_but_printable_ascii_is_a_400(server: Server, start: str) -> None:
    """A NUL and what follows it, fullwidth or Arabic-Indic digits: fromisoformat would read some of them."""
    status, body = server.get(f"/counts?start={start}&end=2021-03-02")
    assert status == 400 and "is not an ISO 8601 timestamp" in json.loads(body)["error"]


def test_the_reply_cache_charges_what_its_replies_really_cost() -> None:
    """Many small replies, the cheapest to ask: what the cache holds, traced, stays within its budget."""
    import tracemalloc

    import totaler

    budget = 4 << 20
    cache = totaler._ReplyCache(budget)
    tracemalloc.start()
    for n in range(60_000):
        query = f"start=2021-03-01T04:00:{n % 60:02d}Z&end=2021-03-01T05:00:00Z&customer_id={n}"
        payload = b'{\n  "2021-03-01 04:00:00 +0000": {\n    "%d": 1\n  }\n}\n' % n
        cache.put(query, totaler._Reply(payload, headers="Totaler-Window: 2021-03-01T04:00:00Z/x\r\nVary: Accept\r\n"))
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert cache.used <= budget and held <= budget * 1.1 and len(cache.replies) > 5000


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """A worker of the seed log, not serving: its routes and its turns, called directly."""
    import totaler

    path = tmp_path_factory.mktemp("worker") / "events.csv"
    shutil.copy(EVENTS, path)
    index = totaler.build_index(str(path), in_memory=True)
    settings = totaler.ServeSettings(str(path), max_hours=200_000, quiet=True, jobs=1, workers=1)
    with socket.socket() as unused:
        yield totaler._Worker(index, unused, settings, None)


def test_a_window_is_long_by_its_hours_the_size_of_its_answer_or_the_events_it_reaches(worker, monkeypatch) -> None:
    import totaler

    def window(start: str, end: str, customer: str = "") -> totaler.Window:
        query = f"start={start}&end={end}" + (f"&customer_id={customer}" if customer else "")
        return totaler._parse_query(query, 200_000).window

    assert not totaler._is_long(window("2021-03-01T04:00:00Z", "2021-03-01T05:00:00Z"), worker.index)
    assert totaler._is_long(window("2021-01-01T00:00:00Z", "2021-04-01T00:00:00Z"), worker.index)  # 2,160 hours
    quiet_day = ("2000-03-01T00:00:00Z", "2000-03-02T00:00:00Z")  # no events: only the size of its answer
    assert not totaler._is_long(window(*quiet_day, "x" * 4000), worker.index)
    one_day = ("2021-03-01T00:00:00Z", "2021-03-02T00:00:00Z")
    assert totaler._is_long(window("2021-01-01T00:00:00Z", "2021-03-20T00:00:00Z", "x" * 8000), worker.index)
    busiest = max(worker.index.events_by_hour.values())
    monkeypatch.setattr(totaler, "_LONG_EVENTS", busiest - 1)
    assert totaler._is_long(window(*one_day), worker.index)
    monkeypatch.setattr(totaler, "_LONG_EVENTS", 24 * busiest)
    assert not totaler._is_long(window(*one_day), worker.index)


def test_a_big_answer_is_refused_before_it_is_built_when_unread_replies_fill_the_room(worker) -> None:
    import totaler

    query = "start=2000-01-01T00:00:00Z&end=2001-01-01T00:00:00Z&customer_id=" + "x" * 40  # ~700 KB
    limits = totaler._Limits()
    with pytest.raises(totaler.InputError, match="too many replies wait to be read"):
        totaler._counts_reply(worker.index, query, 200_000, limits, room=lambda: 100_000)
    assert len(totaler._counts_reply(worker.index, query, 200_000, limits, room=lambda: 1 << 30).payload) > 100_000
    small = totaler._counts_reply(worker.index, "start=2021-03-01T04:00:00Z&end=2021-03-01T06:00:00Z", 200_000, limits)
    assert small.payload.startswith(b"{")
    under_big_reply = query.replace("2001-01-01", "2000-01-02")  # 24 buckets: written whatever waits
    assert totaler._counts_reply(worker.index, under_big_reply, 200_000, limits, room=lambda: 0).payload


def test_customers_replies_are_kept_and_an_uncached_one_waits_behind_a_slow_reply(worker) -> None:
    first = worker.route("/customers", "limit=3")
    assert worker.route("/customers", "limit=3") is first and json.loads(first.payload)["customers"]
    worker.long_after = time.monotonic() + 10
    try:
        assert worker.turn_of("/customers?limit=3") == 0.0  # kept: costs nothing
        assert 9 < worker.turn_of("/customers?limit=4") <= 10
        assert worker.turn_of("/healthz") == 0.0
        assert worker.turn_of("/counts?start=2021-03-01T04:00:00Z&end=2021-03-01T05:00:00Z") == 0.0
        assert worker.turn_of("/counts?start=2000-01-01T00:00:00Z&end=2021-03-01T05:00:00Z") > 9
    finally:
        worker.long_after = 0.0


def test_a_long_window_waits_while_others_are_answered_and_one_pass_of_the_loop_when_none_is(worker) -> None:
    """A client alone asking long windows one after another is not kept to a third of the CPU: each waits
    one pass of the loop (requests sent meanwhile are read first), then goes, unless one was answered."""
    import totaler

    long = "/counts?start=2000-01-01T00:00:00Z&end=2021-03-01T05:00:00Z"
    try:
        worker.long_waits(10)
        ended = worker.long_ended
        assert worker.wait_for_turn(long) == totaler._ONE_PASS  # first, the requests already sent
        assert worker.wait_for_turn(long, "", deferred_at=ended - 1e-6) == totaler._ONE_PASS  # put off before it
        assert worker.wait_for_turn(long, "", deferred_at=ended + 1e-6) == 0.0  # a pass after it, none answered
        assert worker.wait_for_turn("/healthz") == 0.0
        worker.last_asked.mark()  # another client's request answered since, by any worker: the long one waits
        assert 9 < worker.wait_for_turn(long, "", deferred_at=ended + 1e-6) <= 10
        assert 9 < worker.wait_for_turn(long) <= 10
    finally:
        worker.long_after = 0.0


def test_a_connection_taken_counts_as_another_client_asking(worker) -> None:
    """A newcomer's request is read passes of the loop after its connection is taken: from then, long windows
    wait their turn (they went meanwhile, and kept a newcomer 0.3-1.2 s)."""
    import asyncio

    import totaler

    long = "/counts?start=2000-01-01T00:00:00Z&end=2021-03-01T05:00:00Z"
    mine, theirs = socket.socketpair()
    try:
        worker.long_waits(10)
        assert worker.wait_for_turn(long) == totaler._ONE_PASS
        worker.adopt(theirs)
        assert 9 < worker.wait_for_turn(long) <= 10
    finally:
        worker.loop.run_until_complete(asyncio.sleep(0.01))  # its transport made, then closed
        for connection in list(worker.connections):
            connection.close()
        worker.loop.run_until_complete(asyncio.sleep(0.01))
        mine.close()
        worker.long_after = 0.0


def test_a_request_another_worker_answers_is_seen_by_every_worker() -> None:
    """The moment of the last answer lives in memory the forked workers share, not in each one's copy."""
    import totaler

    last_asked, before = totaler._LastAsked(), time.monotonic()
    assert not last_asked.since(before)
    if (pid := os.fork()) == 0:
        last_asked.mark()
        os._exit(0)
    os.waitpid(pid, 0)
    assert last_asked.since(before)


def test_a_big_reply_makes_long_requests_wait_for_its_bytes_even_when_it_was_kept(worker, monkeypatch) -> None:
    import totaler

    monkeypatch.setattr(totaler, "_LONG_REPLY_BYTES", 100_000)
    monkeypatch.setattr(totaler, "_LONG_BYTES_PER_SECOND", 100_000)
    big = "start=2020-01-01T00:00:00Z&end=2020-01-20T00:00:00Z&customer_id=" + "y" * 300  # 456 buckets: ~150 KB
    try:
        before = time.monotonic()
        reply = worker.route("/counts", big)
        assert 100_000 < len(reply.payload) < 1 << 20
        assert worker.long_after >= before + len(reply.payload) / 100_000  # bytes / rate: a second or more
        assert worker.turn_of("/counts?" + big) > 0.5  # kept, yet big: it waits too
        small = "start=2021-03-01T04:00:00Z&end=2021-03-01T05:00:00Z"
        worker.route("/counts", small)
        assert worker.turn_of("/counts?" + small) == 0.0
    finally:
        worker.long_after = 0.0


def test_a_window_whose_hours_must_be_read_from_the_file_is_long_until_they_are_kept(tmp_path: Path) -> None:
    import totaler

    path = tmp_path / "events.csv"
    shutil.copy(EVENTS, path)
    with file_backed(SEGMENT_SIZE=4096):
        index = totaler.build_index(str(path))
    assert isinstance(index.hours, totaler._FileHours)
    window = totaler._parse_query("start=2021-03-01T04:10:00Z&end=2021-03-01T05:20:00Z", 200_000).window
    assert totaler._is_long(window, index)
    index.counts(window)  # its two hours read, and kept
    assert not totaler._is_long(window, index)
    empty = totaler._parse_query("start=1990-03-01T04:10:00Z&end=1990-03-01T05:20:00Z", 200_000).window
    assert not totaler._is_long(empty, index)  # no hour with events: nothing to read


def test_a_counts_query_is_never_answered_with_a_customers_page_kept_under_the_same_text(worker) -> None:
    worker.route("/customers", "limit=1")
    with pytest.raises(Exception, match="unknown parameter"):
        worker.route("/counts", "/customers?limit=1")


def test_a_long_window_asked_as_csv_waits_its_turn_though_its_json_was_kept(worker) -> None:
    long = "start=2021-01-01T00:00:00Z&end=2021-04-01T00:00:00Z"  # 2,160 hours; 78 KB: kept
    worker.route("/counts", long)
    worker.long_after = time.monotonic() + 10
    try:
        assert worker.turn_of("/counts?" + long) == 0.0  # kept
        assert worker.turn_of("/counts?" + long, "text/csv") > 9  # not kept as CSV: it would be built
    finally:
        worker.long_after = 0.0


def test_a_refusal_that_took_long_makes_long_requests_wait_too(worker) -> None:
    import totaler

    def slow_refusal() -> totaler._Reply:
        time.sleep(0.05)
        raise totaler._BadRequest("refused after 50 ms of work")

    try:
        with pytest.raises(totaler._BadRequest):
            worker.cached("a key never kept", slow_refusal)
        assert worker.long_after > time.monotonic() + 0.05
    finally:
        worker.long_after = 0.0


def test_an_answer_over_the_limit_is_refused_before_anything_is_counted(worker, monkeypatch) -> None:
    import totaler

    def never(*_: object) -> None:
        raise AssertionError("counted")

    monkeypatch.setattr(totaler.Index, "counts", never)
    ten_years = "start=2021-01-01T00:00:00Z&end=2031-01-01T00:00:00Z&bucket=10m"  # 525,600 buckets: 19 MB
    with pytest.raises(totaler._BadRequest, match="over the limit of 16,777,216"):
        totaler._counts_reply(worker.index, ten_years, 10**6, totaler._Limits())


def test_many_buckets_in_a_zone_that_changes_its_offset_are_refused_before_counting(worker, monkeypatch) -> None:
    """130 bytes asked a worker for 466,000 minutes in Denver: 4.5 s of its loop for a 25-byte CSV answer."""
    import totaler

    def never(*_: object) -> None:
        raise AssertionError("counted")

    limits = totaler._Limits()
    allowed = "start=2030-01-01T00:00Z&end=2030-01-14T21:00Z&bucket=1m&tz=America/Denver"  # 19,981 buckets
    assert totaler._bucket_count(totaler._parse_query(allowed, 10**6).window) <= limits.zone_buckets
    assert len(json.loads(totaler._counts_reply(worker.index, allowed, 10**6, limits).payload)) == 19_980
    fixed = "start=2030-01-01T00:00Z&end=2030-11-15T00:00Z&bucket=1m&format=csv"  # 457,920 minutes in UTC: cheap
    assert totaler._counts_reply(worker.index, fixed, 10**6, limits).payload == b"bucket,customer_id,count\n"
    monkeypatch.setattr(totaler.Index, "counts", never)
    for query in [allowed.replace("01-14T21", "11-15T00") + "&format=csv", allowed.replace("01-14T21", "01-14T22")]:
        with pytest.raises(totaler._BadRequest, match=r"over the limit of 20,000 in a zone that changes its offset"):
            totaler._counts_reply(worker.index, query, 10**6, limits)


def test_a_file_backed_index_answers_a_day_from_the_file_and_leaves_longer_windows_to_the_index_in_memory(
    tmp_path: Path,
) -> None:
    import totaler

    with file_backed(SEGMENT_SIZE=4096):
        index = totaler.build_index(str(EVENTS))
    window = totaler._parse_query("start=2021-03-01T00:10:00Z&end=2021-03-02T00:20:00Z", 200_000).window  # 25 h
    assert sum(index.counts(window).values()) > 0
    week = totaler._parse_query("start=2021-03-01T00:10:00Z&end=2021-03-08T00:00:00Z", 200_000).window
    with pytest.raises(totaler.InputError, match="reads over 26 hours from the file comes with the index in memory"):
        index.counts(week)


def test_long_windows_waiting_their_turn_when_the_server_stops_are_answered(tmp_path: Path) -> None:
    """The one waiting its turn is answered, with Connection: close (a client asks again what comes after)."""
    path = tmp_path / "events.csv"
    shutil.copy(EVENTS, path)
    slow_wire = "totaler._LONG_BYTES_PER_SECOND = 1000"  # after the first 3.6 MB answer, the next waits an hour
    running = Server(path, "--quiet", "--workers", "1", "--max-hours", "200000", patch=slow_wire)
    long = [counts_url(f"2011-03-01T00:00:00.00000{i}Z", "2022-07-27T15:00:00Z").encode() for i in range(2)]
    asked = [long[0], b"/healthz", long[1]]  # a short request answered between: the second long one waits
    try:
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as raw:
            raw.sendall(b"".join(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n" for target in asked))
            time.sleep(0.3)  # the first answered, the second waits its turn
            running.process.send_signal(signal.SIGTERM)
            replies = b""
            while chunk := raw.recv(1 << 20):
                replies += chunk
        assert replies.count(b"HTTP/1.1 200 OK") == 3 and replies.count(b"Connection: close") == 1
    finally:
        running.stop()
    assert "Traceback" not in running.stderr()


def test_many_buckets_in_a_zone_that_changes_its_offset_make_a_window_long(worker) -> None:
    import totaler

    def window(zone: str) -> totaler.Window:
        query = f"start=2020-01-01T00:00:00Z&end=2020-03-23T00:00:10Z&bucket=5m&tz={zone}"  # no events; 23,618
        return totaler._parse_query(query, 200_000).window

    assert totaler._is_long(window("America/New_York"), worker.index)
    assert not totaler._is_long(window("UTC"), worker.index) and not totaler._is_long(window("%2B05:30"), worker.index)
    day = "start=2020-01-01T00:00:00Z&end=2020-01-02T00:00:00Z&tz=America/New_York"  # 26 buckets at most
    assert not totaler._is_long(totaler._parse_query(day, 200_000).window, worker.index)


def test_every_long_request_waiting_when_the_server_stops_gets_a_reply(tmp_path: Path) -> None:
    """Answered while half the stop's time is left, then a 503 saying to ask again: never nothing."""
    path = tmp_path / "events.csv"
    shutil.copy(EVENTS, path)
    slow_wire = "totaler._LONG_BYTES_PER_SECOND = 1000"  # after one 3.6 MB answer, long requests wait an hour
    running = Server(path, "--quiet", "--workers", "1", "--max-hours", "200000", patch=slow_wire)
    first = counts_url("2011-03-01T00:00:00Z", "2022-07-27T15:00:00Z").encode()
    try:
        assert status_of(exchange(running.port, b"GET " + first + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        waiting = []
        for i in range(10):  # each a quarter of a second or so: 19,010 buckets in New York, each labelled
            raw = socket.create_connection(("127.0.0.1", running.port), timeout=10)
            target = f"/counts?start=2020-01-01T00:00:00.{i:06d}Z&end=2020-03-07T00:00:10Z&bucket=5m"
            raw.sendall(b"GET " + target.encode() + b"&tz=America/New_York HTTP/1.1\r\nHost: x\r\n\r\n")
            waiting.append(raw)
        time.sleep(0.5)  # each waits its turn
        running.process.send_signal(signal.SIGTERM)
        statuses = []
        for raw in waiting:
            reply = b""
            while chunk := raw.recv(1 << 20):
                reply += chunk
            statuses.append(status_of(reply) if reply else None)
            raw.close()
        assert None not in statuses and set(statuses) == {200, 503}, statuses
    finally:
        running.stop()
    assert "Traceback" not in running.stderr()


@pytest.mark.parametrize(
    "host, allowed",
    [
        (b"localhost:8000", True),
        (b"127.0.0.1:8000", True),
        (b"[::1]:8000", True),
        (b"10.1.2.3", True),
        (b"totaler:8000", True),  # a compose service: no dot, never a name an attacker's DNS answers
        (b"app.localhost", True),
        (b"", True),  # HTTP/1.1's empty Host of a target with no authority
        (b"rebind.attacker.example:8000", False),
        (b"REBIND.attacker.example.", False),  # case and a final dot change nothing
        (b"127.0.0.1.nip.io", False),  # a name that resolves to loopback is still a name
        (b"counts.example.com", True),  # given with --allow-host
        (b"totaler.default.svc.cluster.local", True),  # names public DNS never answers
        (b"host.docker.internal:8000", True),
        (b"evil%2eexample", False),  # no literal dot, but percent-encoded: no browser sends it, refused all the same
        (b"..", False),
    ],
)
def test_a_dotted_host_name_is_answered_only_when_allowed(host: bytes, allowed: bool) -> None:
    import totaler

    name = totaler._host_name(host)
    assert totaler._allowed_host(name, ("counts.example.com",)) is allowed
    assert totaler._allowed_host(name, ("*",))


def test_a_dns_rebinding_request_is_a_403_unless_the_name_is_allowed(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "events.csv"
    shutil.copy(EVENTS, path)
    target = b"GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
    refused = Server(path, "--quiet", "--workers", "1")
    try:
        reply = exchange(refused.port, target % b"rebind.attacker.example:8000")
        assert status_of(reply) == 403 and b"--allow-host rebind.attacker.example" in reply, reply
        assert status_of(exchange(refused.port, target % b"localhost")) == 200
        absolute = b"GET http://%s/healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
        assert status_of(exchange(refused.port, absolute % (b"rebind.attacker.example", b"localhost"))) == 403
        assert status_of(exchange(refused.port, absolute % (b"localhost:8000", b"rebind.attacker.example"))) == 200
    finally:
        refused.stop()
    allowed = Server(path, "--quiet", "--workers", "1", "--allow-host", "Counts.Example.com")
    try:
        assert status_of(exchange(allowed.port, target % b"counts.example.com:443")) == 200
        assert status_of(exchange(allowed.port, target % b"rebind.attacker.example")) == 403
    finally:
        allowed.stop()
    monkeypatch.setenv("TOTALER_ALLOW_HOSTS", "counts.example.com, Other.Example:8000")  # a port is no part of it
    by_environment = Server(path, "--quiet", "--workers", "1", "--allow-host", "flag.example")
    try:
        for name in (b"other.example", b"counts.example.com:8000", b"flag.example"):  # the flag adds to the list
            assert status_of(exchange(by_environment.port, target % name)) == 200, name
        assert status_of(exchange(by_environment.port, target % b"rebind.attacker.example")) == 403
        empty = b"GET http:///healthz HTTP/1.1\r\nHost: rebind.attacker.example\r\n\r\n"  # a target naming no host
        assert status_of(exchange(by_environment.port, empty)) == 400
    finally:
        by_environment.stop()


def test_a_pool_started_within_niced_pools_reads_at_a_lower_priority_and_others_do_not() -> None:
    """A server's build in the background leaves the CPU to the workers answering: its pool's workers are nicer."""
    import multiprocessing

    import totaler

    context = multiprocessing.get_context("fork")
    mine = os.nice(0)
    with totaler._niced_pools(3), totaler._worker_pool(context, 1) as pool:
        assert pool.apply(os.nice, (0,)) == min(mine + 3, 19)
    assert totaler._niceness == 0
    with totaler._worker_pool(context, 1) as pool:
        assert pool.apply(os.nice, (0,)) == mine


def test_the_master_builds_in_the_background_on_niced_pools(worker, monkeypatch) -> None:
    """Kept in memory or reloaded: the index is read within _niced_pools, and the niceness is put back after."""
    import totaler

    seen = []

    def load(*arguments: object) -> totaler.Index:
        seen.append(totaler._niceness)
        return worker.index

    monkeypatch.setattr(totaler, "_load_index", load)
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    try:
        master = totaler._Master(worker.index, worker.sock, worker.settings)
        assert master.built(in_memory=True) == (worker.index, "")
        assert master.built(in_memory=False) == (worker.index, "")
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for number, handler in handlers.items():
            signal.signal(number, handler)
    assert seen == [totaler._BUILD_NICENESS] * 2 and totaler._niceness == 0
