"""What a differential fuzz run found (../shared/fuzz/01-03), and six plausible bugs the suite once let through.

Each finding is reproduced on every path a log can take: a file read in one part and in
several (small parts, so that the tests reach them), standard input, gzip, a directory, and
the server's index in memory and file-backed.

Reaches inside through conftest's `count_stream` (standard input's path) and the first instant a row may hold.
"""

import gzip
import io
import json
import socket
import subprocess

import pytest
from conftest import count_stream, file_backed, run_cli

import totaler


def every_path(tmp_path, data: bytes, *args: str) -> dict[str, subprocess.CompletedProcess[bytes]]:
    """The command line on DATA as one file, in tiny parts, on standard input, gzipped and as a directory."""
    (tmp_path / "log.csv").write_bytes(data)
    (tmp_path / "log.csv.gz").write_bytes(gzip.compress(data))
    (tmp_path / "dir").mkdir(exist_ok=True)
    (tmp_path / "dir" / "a.csv").write_bytes(data)
    return {
        "file": run_cli(str(tmp_path / "log.csv"), *args, "--jobs", "1"),
        "jobs": run_cli(str(tmp_path / "log.csv"), *args, "--jobs", "2"),
        "stdin": run_cli("-", *args, stdin=data),
        "gzip": run_cli(str(tmp_path / "log.csv.gz"), *args),
        "directory": run_cli(str(tmp_path / "dir"), *args),
    }


def index_answers(path, window: totaler.Window) -> dict[str, tuple[int, int, str]]:
    """(events, skipped, JSON answer) of the index of PATH, in memory and file-backed."""
    found = {}
    for name in ("in memory", "file-backed"):
        if name == "file-backed":
            with file_backed():
                index = totaler.build_index(str(path))
            assert index.files is not None
        else:
            index = totaler.build_index(str(path), in_memory=True)
        found[name] = (index.events, index.skipped.count, totaler.render_json(window, index.counts(window)))
    return found


# --- ../shared/fuzz/01: a valid window at the ends of years 1..9999 ----------------------------------


@pytest.mark.parametrize(
    "rows, start, end, bucket",
    [
        ("a,INGEST,t1,2021-03-01T04:05:00Z\nb,INGEST,t2,2021-03-01 05:06:07+05:30\n", "9999-12-31T23:00:00Z",
         "9999-12-31T23:59:59.999999Z", "9999-12-31 23:00:00 +0000"),
        ("a,INGEST,t1,0001-01-01T13:00:00-12:00\na,INGEST,t2,0001-01-01T14:00:00-12:00\n", "0001-01-01T00:00:00Z",
         "0001-01-01T01:00:00Z", "0001-01-01 00:00:00 +0000"),
    ],
    ids=["last-hour-of-9999", "first-hour-of-year-1"],
)  # fmt: skip
def test_a_window_at_the_ends_of_time_is_answered_on_every_path(tmp_path, rows, start, end, bucket) -> None:
    for path, result in every_path(tmp_path, rows.encode(), start, end, "--json").items():
        assert (result.returncode, result.stdout, result.stderr) == (
            0,
            f'{{\n  "{bucket}": {{}}\n}}\n'.encode(),
            b"",
        ), path


# --- ../shared/fuzz/02: a field over the csv reader's limit, whatever the window ---------------------

LIMIT = 131_072


@pytest.mark.parametrize("field", ["customer", "event_type", "transaction_id"])
@pytest.mark.parametrize("length", [LIMIT, LIMIT + 1])
@pytest.mark.parametrize("day", ["2021-03-01", "2021-03-05"], ids=["far-from-the-row", "on-its-date"])
def test_a_field_over_the_limit_is_reported_whatever_the_window(tmp_path, field, length, day) -> None:
    rows = [f"c{i % 3},INGEST,t{i},2021-03-05T0{i}:00:00Z" for i in range(8)]
    long = {"customer": f"{'x' * length},INGEST,t,", "event_type": f"c9,{'x' * length},t,"}
    long["transaction_id"] = f"c9,INGEST,{'x' * length},"
    rows.insert(4, long[field] + "2021-03-05T04:30:00Z")
    data = ("\n".join(rows) + "\n").encode()
    want = "" if length == LIMIT else "totaler: warning: skipped 1 malformed row (line 5: bad CSV: field larger"
    for path, result in every_path(tmp_path, data, f"{day}T00:00:00Z", f"{day}T01:00:00Z", "--json").items():
        assert result.returncode == 0 and result.stderr.decode().startswith(want), (path, result.stderr[:200])
        if not want:
            assert result.stderr == b"", path
    strict = run_cli(str(tmp_path / "log.csv"), f"{day}T00:00:00Z", f"{day}T01:00:00Z", "--strict")
    assert strict.returncode == (0 if length == LIMIT else 1)


def test_leading_spaces_do_not_count_toward_the_limit_on_the_fast_path_either() -> None:
    row = f"c9,{' ' * 10}{'x' * LIMIT},t,2021-03-05T04:30:00Z\n".encode()
    data = b"".join(f"c{i},INGEST,t{i},2021-03-05T0{i}:00:00Z\n".encode() for i in range(8)) + row
    window = totaler.Window(totaler.parse_instant("2021-03-01"), totaler.parse_instant("2021-03-02"))
    for fast in (True, False):
        assert count_stream(io.BytesIO(data), window, fast=fast).skipped.count == 0


# --- ../shared/fuzz/03: a row whose UTC instant is outside years 1..9999 -----------------------------


@pytest.mark.parametrize("stamp", ["0001-01-01 00:30:00+01:00", "9999-12-31 23:30:00-01:00"])
def test_a_row_outside_years_1_to_9999_in_utc_is_malformed_on_every_path(tmp_path, stamp: str) -> None:
    data = f"b,INGEST,t,2021-03-01T04:00:00Z\na,INGEST,t,{stamp}\n".encode()
    reason = f"line 2: timestamp '{stamp}' falls outside the years 1 to 9999 in UTC)"
    for path, result in every_path(tmp_path, data, "2021-03-01", "2021-03-02", "--json").items():
        assert result.returncode == 0 and b'"b": 1' in result.stdout, path
        assert result.stderr.decode().startswith(f"totaler: warning: skipped 1 malformed row ({reason}"), path
    window = totaler.Window(totaler.parse_instant("2021-03-01"), totaler.parse_instant("2021-03-02"))
    for name, (events, skipped, _) in index_answers(tmp_path / "log.csv", window).items():
        assert (events, skipped) == (1, 1), name


def test_the_edge_rows_of_time_go_to_the_plain_path_which_keeps_the_ones_inside() -> None:
    """0001-01-01 00:xx+00:30: minutes 30 and later are in year 1 in UTC, the others are not."""
    data = b"".join(f"a,INGEST,t,0001-01-01 00:{m:02d}:00+00:30\n".encode() for m in range(0, 60, 10)) * 20
    window = totaler.Window(totaler._FIRST_INSTANT, totaler._FIRST_INSTANT + totaler._HOUR)
    for fast in (True, False):
        tally = count_stream(io.BytesIO(data), window, fast=fast)
        assert (tally.counts, tally.skipped.count) == ({(totaler._FIRST_INSTANT, "a"): 60}, 60)


def test_the_server_answers_customers_and_the_page_on_such_a_log(tmp_path) -> None:
    from test_http import Server

    path = tmp_path / "log.csv"
    path.write_bytes(b"a,INGEST,t,0001-01-01 00:30:00+01:00\nb,INGEST,t,2021-03-01T04:00:00Z\n")
    running = Server(path, "--quiet", "--workers", "1")
    try:
        status, body = running.get("/customers")
        assert status == 200 and [c["customer"] for c in json.loads(body)["customers"]] == ["b"]
        assert running.request("GET", "/")[0] == 302
        assert json.loads(running.get("/healthz")[1])["events"] == 1
    finally:
        running.stop()
    assert "Traceback" not in running.stderr() and "Error" not in running.stderr()


# --- six plausible bugs the suite did not catch ----------------------------------------------------


def test_the_file_backed_index_holds_the_last_instant_of_9999(tmp_path) -> None:
    path = tmp_path / "end.csv"
    path.write_bytes(b"a,INGEST,t1,9999-12-31 23:10:00+00\na,INGEST,t2,9999-12-31 23:59:59.999999+00\n")
    window = totaler.Window(
        totaler.parse_instant("9999-12-31T23:00:00Z"), totaler.parse_instant("9999-12-31T23:30:00Z")
    )
    answers = index_answers(path, window)
    for name, (events, skipped, answer) in answers.items():
        assert (events, skipped) == (2, 0), name
        assert answer == '{\n  "9999-12-31 23:00:00 +0000": {\n    "a": 1\n  }\n}\n', name


def test_minutes_of_a_negative_zone_that_is_not_a_whole_or_half_hour() -> None:
    """-05:45: 10:10 local is 15:55 UTC, 10:20 is 16:05 UTC (a formula that is right for -09:30 and -03:30)."""
    data = b"a,INGEST,t,2021-03-01 10:10:00-05:45\n" * 3 + b"a,INGEST,t,2021-03-01 10:20:00-05:45\n" * 3
    window = totaler.Window(
        totaler.parse_instant("2021-03-01T15:00:00Z"), totaler.parse_instant("2021-03-01T17:00:00Z")
    )
    h15 = totaler.parse_instant("2021-03-01T15:00:00Z")
    for fast in (True, False):
        counts = count_stream(io.BytesIO(data * 50), window, fast=fast).counts
        assert counts == {(h15, "a"): 150, (h15 + totaler._HOUR, "a"): 150}, fast


@pytest.mark.parametrize(
    "start, printed",
    [
        ("2021-03-01T04:00:00.05Z", "2021-03-01 04:00:00.050000 UTC"),
        ("2021-03-01T04:00:00.000001Z", "2021-03-01 04:00:00.000001 UTC"),
    ],
)
def test_the_fraction_of_a_printed_bound_is_six_digits(start: str, printed: str) -> None:
    result = run_cli("events.csv", start, "2021-03-01T05:00:00Z")
    assert result.stdout.decode().splitlines()[1] == f"Start time: {printed}"


def test_crlf_after_a_space_after_a_closing_quote() -> None:
    data = b'a,INGEST,t1,"2021-03-01 04:05:00+00" \r\n'
    window = totaler.Window(
        totaler.parse_instant("2021-03-01T04:00:00Z"), totaler.parse_instant("2021-03-01T05:00:00Z")
    )
    for fast in (True, False):
        tally = count_stream(io.BytesIO(data), window, fast=fast)
        assert (sum(tally.counts.values()), tally.skipped.count) == (1, 0)


def test_head_sends_no_body_and_the_next_reply_follows_at_once(tmp_path) -> None:
    from test_http import Server

    path = tmp_path / "events.csv"
    path.write_bytes(b"a,INGEST,t1,2021-03-01 04:05:00+00\n")
    running = Server(path, "--quiet", "--workers", "1")
    try:
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            sock.sendall(
                b"HEAD /counts?start=2021-03-01T04:00:00Z&end=2021-03-01T05:00:00Z HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
    finally:
        running.stop()
    first_head, _, rest = received.partition(b"\r\n\r\n")
    assert first_head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 5" in first_head
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")


def test_max_hours_allows_exactly_its_hours_and_not_a_microsecond_more() -> None:
    exact = run_cli("events.csv", "2021-03-01T00:00:00Z", "2021-03-02T00:00:00Z", "--max-hours", "24", "--json")
    assert exact.returncode == 0 and len(json.loads(exact.stdout)) == 24
    over = run_cli("events.csv", "2021-03-01T00:00:00Z", "2021-03-02T00:00:00.000001Z", "--max-hours", "24")
    assert over.returncode == 2 and b"longer than --max-hours 24" in over.stderr
