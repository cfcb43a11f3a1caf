"""Inputs and arguments a fuzzer finds: one line on stderr and the documented status, never a traceback.

Reaches inside for `_count_file` and conftest's `count_stream` (the skipped rows of a read, which the public
`count_files` reports only as a warning) and `_parse_row` (why one row is malformed).
"""

import bz2
import gzip
import io
import lzma
import multiprocessing
import os
import subprocess
import sys

import pytest
from conftest import EVENTS, ROOT, SEED, count_stream, run_cli, sizes

import totaler

ROWS = b"a,INGEST,t1,2021-03-01 04:05:00+00\nb,INGEST,t2,2021-03-01 04:06:00+00\n"
HOUR_04 = ["2021-03-01T04:00:00Z", "2021-03-01T05:00:00Z", "--json"]
ANSWER_04 = b'{\n  "2021-03-01 04:00:00 +0000": {\n    "a": 1,\n    "b": 1\n  }\n}\n'


def one_error_line(result: subprocess.CompletedProcess[bytes], status: int) -> str:
    """The single stderr line of a run that failed with STATUS."""
    assert result.returncode == status, result.stderr
    assert b"Traceback" not in result.stderr
    lines = result.stderr.decode(errors="replace").splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_corrupt_deflate_data_in_the_middle_of_a_gzip_file(tmp_path) -> None:
    packed = bytearray(gzip.compress(EVENTS.read_bytes()))
    middle = len(packed) // 2
    packed[middle : middle + 4096] = b"\xff" * 4096  # zlib.error: invalid code lengths set
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(bytes(packed))
    assert "bad.csv.gz: cannot read" in one_error_line(run_cli(str(bad), *SEED), 1)


@pytest.mark.parametrize(
    "compress, name", [(bz2.compress, "log.csv.bz2"), (lzma.compress, "log.csv.xz")], ids=["bzip2", "xz"]
)
def test_bzip2_and_xz_are_read_like_gzip(tmp_path, compress, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(compress(ROWS))
    result = run_cli(str(path), *HOUR_04)
    assert (result.returncode, result.stdout, result.stderr) == (0, ANSWER_04, b"")
    assert run_cli("-", *HOUR_04, stdin=compress(ROWS)).stdout == ANSWER_04


def test_zstd_is_refused_with_a_hint(tmp_path) -> None:
    path = tmp_path / "log.csv.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(40))  # the zstd frame magic, then anything
    assert "zstd-compressed; decompress it first" in one_error_line(run_cli(str(path), *HOUR_04), 1)


def test_arguments_that_are_not_utf8_cause_no_traceback(tmp_path) -> None:
    log = tmp_path / "log.csv"
    log.write_bytes(ROWS)
    command = [sys.executable, str(ROOT / "totaler.py")]
    result = subprocess.run([*command, str(log), *HOUR_04[:2], b"caf\xe9"], capture_output=True, timeout=60)
    assert result.returncode == 0 and b"Traceback" not in result.stderr
    assert b"Customer ID: caf\xe9 Calls: 0" in result.stdout  # printed back as the bytes it was
    result = subprocess.run([*command, str(log), *HOUR_04, b"caf\xe9"], capture_output=True, timeout=60)
    assert result.returncode == 0 and b'"caf\\udce9": 0' in result.stdout
    result = subprocess.run([*command, os.fsencode(tmp_path) + b"/n\xe9.csv", *SEED], capture_output=True, timeout=60)
    assert one_error_line(result, 1).endswith("n\\xe9.csv: no such file")


def test_closed_standard_input_is_an_input_error() -> None:
    result = subprocess.run(
        ["bash", "-c", f'exec "{sys.executable}" "{ROOT / "totaler.py"}" - {SEED[0]} {SEED[1]} <&-'],
        capture_output=True,
        timeout=60,
    )
    assert "standard input is closed" in one_error_line(result, 1)


def test_a_full_disk_on_standard_output_is_one_line_and_status_1() -> None:
    result = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" "{ROOT / "totaler.py"}" events.csv {SEED[0]} {SEED[1]} > /dev/full'],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert "cannot write the answer (No space left on device)" in one_error_line(result, 1)


def test_workers_that_cannot_start_say_so(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    class NoForks:
        def Pool(self, *args: object, **kwargs: object) -> None:
            raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(multiprocessing, "get_context", lambda method=None: NoForks())
    log = tmp_path / "log.csv"
    log.write_bytes(ROWS * 100)
    window = totaler.Window(totaler.parse_instant(SEED[0]), totaler.parse_instant(SEED[1]))
    with sizes(1 << 16, 1 << 10, part=300), pytest.raises(totaler.InputError, match="cannot start 2 worker processes"):
        totaler._count_file(str(log), window, jobs=2)


def test_no_more_workers_than_parts(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = []
    real = multiprocessing.get_context

    class Counted:
        def __init__(self, method: str | None) -> None:
            self.context = real(method)

        def Pool(self, processes: int, **kwargs: object):
            started.append(processes)
            return self.context.Pool(processes, **kwargs)

    monkeypatch.setattr(multiprocessing, "get_context", Counted)
    log = tmp_path / "log.csv"
    log.write_bytes(ROWS.replace(b"INGEST", b"INGEST" + b"e" * 250))  # two lines: no more than two parts
    window = totaler.Window(totaler.parse_instant(HOUR_04[0]), totaler.parse_instant(HOUR_04[1]))
    with sizes(1 << 16, 1 << 10, part=300):
        tally = totaler._count_file(str(log), window, jobs=16)
    assert started == [2]
    assert tally.counts == {(window.start, "a"): 1, (window.start, "b"): 1}


def test_years_below_1000_are_zero_padded_in_text_and_json(tmp_path) -> None:
    log = tmp_path / "old.csv"
    log.write_bytes(b"a,INGEST,t1,0999-12-31 23:30:00+00\n")
    bounds = ["0999-12-31T23:00:00Z", "1000-01-01T00:00:00Z"]
    text = run_cli(str(log), *bounds).stdout.decode()
    assert "Start time: 0999-12-31 23:00:00 UTC" in text and "Timebucket: 0999-12-31 23:00:00 +0000" in text
    assert run_cli(str(log), *bounds, "--json").stdout == b'{\n  "0999-12-31 23:00:00 +0000": {\n    "a": 1\n  }\n}\n'


def test_a_space_after_a_closing_quote_is_a_space_around_a_field() -> None:
    data = b'"a" ,"INGEST" , t1,"2021-03-01 04:05:00+00"  \n "a"\t,INGEST,t2,2021-03-01 04:06:00+00\n'
    window = totaler.Window(totaler.parse_instant(HOUR_04[0]), totaler.parse_instant(HOUR_04[1]))
    for fast in (True, False):
        tally = count_stream(io.BytesIO(data), window, fast=fast)
        assert (tally.counts, tally.skipped.count) == ({(window.start, "a"): 2}, 0)


@pytest.mark.parametrize(
    "line, reason",
    [
        (b'"a"x,INGEST,t1,2021-03-01 04:05:00+00', "bad CSV"),  # text after a closing quote is no space
        (b'"a" "b",INGEST,t1,2021-03-01 04:05:00+00', "bad CSV"),
    ],
)
def test_text_after_a_closing_quote_is_still_malformed(line: bytes, reason: str) -> None:
    with pytest.raises(totaler._Malformed, match=reason):
        totaler._parse_row(line)


# --- a log of which nothing, or almost nothing, could be read: an error naming the likely cause --------


@pytest.mark.parametrize(
    "rows, cause",
    [
        (b"a;INGEST;t1;2021-03-01 04:05:00+00\nb;INGEST;t2;2021-03-01 04:06:00+00\n", "fields separated by ';'"),
        (b"a\tINGEST\tt1\t2021-03-01 04:05:00+00\n", "fields separated by tabs"),
        (b"a,INGEST,t1,1614571500\nb,INGEST,t2,1614571500123\n", "timestamps in epoch seconds"),
        (b"a,INGEST,t1,3/1/2021 0:01\n", "dates written m/d/yyyy"),
        (b"0,a,INGEST,t1,2021-03-01 04:05:00+00\n1,b,INGEST,t2,2021-03-01 04:06:00+00\n", "a fifth column"),
        (b"\ncustomer_id,event_type,transaction_id,timestamp\n", "a header not on line 1"),
    ],
    ids=["semicolons", "tabs", "epoch", "excel", "index-column", "late-header"],
)
def test_a_log_of_which_no_row_can_be_read_is_an_error_naming_the_likely_cause(tmp_path, rows, cause) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(rows)
    for source, stdin in ((str(path), None), ("-", rows)):
        line = one_error_line(run_cli(source, *HOUR_04, stdin=stdin), 1)
        assert line.startswith(f"totaler: error: {source}: not one of its ") and f"likely cause: {cause}" in line
        assert line.endswith(f"; a row looks like {totaler._GOOD_ROW}")


def test_a_log_mostly_malformed_is_answered_with_a_warning_naming_the_cause(tmp_path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(ROWS + b"c;INGEST;t3;2021-03-01 04:07:00+00\n" * 3)
    result = run_cli(str(path), *HOUR_04)
    assert (result.returncode, result.stdout) == (0, ANSWER_04)
    assert result.stderr.decode().endswith(
        "; most rows are malformed, likely cause: fields separated by ';', not commas\n"
    )
    path.write_bytes(ROWS * 2 + b"c;INGEST;t3;2021-03-01 04:07:00+00\n" * 3)  # most rows good: no guess
    assert run_cli(str(path), *HOUR_04).stderr.decode().endswith("line 7: 1 field, expected 4)\n")


def test_an_empty_input_says_so(tmp_path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    answer = b'{\n  "2021-03-01 04:00:00 +0000": {}\n}\n'
    result = run_cli(str(empty), *HOUR_04)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        answer,
        f"totaler: warning: {empty} holds no rows\n".encode(),
    )
    result = run_cli("-", *HOUR_04, stdin=b"")
    assert result.stderr == b"totaler: warning: standard input gave no rows (docker run needs -i)\n"
    assert run_cli("-", *HOUR_04, stdin=b"customer_id,event_type,transaction_id,timestamp\n\n").stderr == result.stderr


def test_a_glob_the_shell_expanded_is_refused_saying_to_quote_it(tmp_path) -> None:
    (tmp_path / "a.csv").write_bytes(ROWS)
    (tmp_path / "b.csv").write_bytes(ROWS)
    line = one_error_line(run_cli("a.csv", "b.csv", *HOUR_04, cwd=tmp_path), 2)
    assert line == (
        "totaler: error: START 'b.csv' is a file, not a time: was FILE a glob the shell expanded? "
        "Quote it ('*.csv') and totaler reads every file it matches"
    )
    assert run_cli("*.csv", *HOUR_04, cwd=tmp_path).stdout == ANSWER_04.replace(b": 1", b": 2")
