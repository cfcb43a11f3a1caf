"""The command line as a user runs it: seed outputs byte for byte, errors, stdin and gzip.

Reaches inside only for `_parse_query` and `_Progress`, whose messages the command line shares.
"""

import gzip
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EVENTS, EXPECTED, ROOT, SEED, SEED_CUSTOMER, SHARED_EXPECTED, run_cli

import totaler


def test_expected_copies_match_the_shared_originals() -> None:
    if not SHARED_EXPECTED.is_dir():
        pytest.skip("../shared/expected is not beside this clone")
    for name in ("seed-text.txt", "seed-customer-text.txt", "seed.json"):
        assert (EXPECTED / name).read_bytes() == (SHARED_EXPECTED / name).read_bytes()


@pytest.mark.parametrize(
    "extra, expected_file",
    [([], "seed-text.txt"), ([SEED_CUSTOMER], "seed-customer-text.txt"), (["--json"], "seed.json")],
)
def test_seed_outputs_byte_for_byte(extra: list[str], expected_file: str) -> None:
    result = run_cli("events.csv", *SEED, *extra)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (EXPECTED / expected_file).read_bytes()
    assert result.stderr == b""


def test_customer_json_lists_zero_buckets() -> None:
    result = run_cli(
        "events.csv", "2021-03-01T04:00:00Z", "2021-03-01T06:00:00Z", "210e40d08e40d3df067757f2ce128910", "--json"
    )
    assert result.returncode == 0
    assert result.stdout == (
        b'{\n  "2021-03-01 04:00:00 +0000": {\n    "210e40d08e40d3df067757f2ce128910": 0\n  },\n'
        b'  "2021-03-01 05:00:00 +0000": {\n    "210e40d08e40d3df067757f2ce128910": 0\n  }\n}\n'
    )


def test_empty_bucket_is_an_empty_object_and_a_bare_header() -> None:
    args = ("events.csv", "2021-03-05T00:00:00Z", "2021-03-05T01:00:00Z")
    assert run_cli(*args, "--json").stdout == b'{\n  "2021-03-05 00:00:00 +0000": {}\n}\n'
    assert run_cli(*args).stdout.endswith(
        b"End time: 2021-03-05 01:00:00 UTC\n\nTimebucket: 2021-03-05 00:00:00 +0000\n"
    )


def test_bounds_in_other_forms_give_the_same_answer() -> None:
    forms = (
        ["2021-03-01 04:00:00 UTC", "2021-03-01 06:30:00 +0000"],
        ["2021-03-01T09:30:00+05:30", "2021-03-01 06:30:00+00"],
    )
    for start, end in forms:
        assert run_cli("events.csv", start, end, "--json").stdout == (EXPECTED / "seed.json").read_bytes()


def test_standard_input_and_gzip(tmp_path) -> None:
    raw = EVENTS.read_bytes()
    packed = tmp_path / "events.csv.whatever"
    packed.write_bytes(gzip.compress(raw))
    want = (EXPECTED / "seed.json").read_bytes()
    assert run_cli("-", *SEED, "--json", stdin=raw).stdout == want
    assert run_cli(str(packed), *SEED, "--json").stdout == want
    assert run_cli("-", *SEED, "--json", stdin=gzip.compress(raw)).stdout == want


def test_input_file_header_names_standard_input() -> None:
    assert run_cli("-", *SEED, stdin=EVENTS.read_bytes()).stdout.startswith(b"Input file: -\n")


def error_of(result: subprocess.CompletedProcess[bytes]) -> str:
    """The one stderr line of a failed run (and there must be exactly one)."""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("totaler: error: ")
    assert b"Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, status, says",
    [
        (["nope.csv", "2021-03-01", "2021-03-02"], 1, "nope.csv: no such file"),
        (["nope-*.csv", "2021-03-01", "2021-03-02"], 1, "nope-*.csv: no file matches"),
        (["events.csv", "x", "2021-03-02"], 2, "START 'x' is not an ISO 8601 timestamp"),
        (["events.csv", "2021-03-01", "tomorrow"], 2, "END 'tomorrow' is not an ISO 8601"),
        (["events.csv", "2021-03-02", "2021-03-01"], 2, "START '2021-03-02' is not before END '2021-03-01'"),
        (["events.csv", "2021-03-01", "2021-03-01"], 2, "is not before END"),
        (["events.csv", "2021-03-01"], 2, "the following arguments are required: END"),
        (["events.csv", "2021-03-01", "2021-03-03", "--max-hours", "24"], 2, "longer than --max-hours 24"),
        (["events.csv", "1000-01-01", "9000-01-01"], 2, "longer than --max-hours 100000"),
        (["events.csv", "2021-03-01", "2021-03-02", "--bogus"], 2, "unrecognized arguments: --bogus"),
        (["events.csv", "2021-03-01", "2021-03-02", "--max-hours", "many"], 2, "'many' is not a whole number"),
        (["events.csv", "2021-03-01", "2021-03-02", "--max-hours", "0"], 2, "'0' is out of range: give 1 or more"),
        (["events.csv", "2021-03-01", "2021-03-02", "--jobs", "-2"], 2, "'-2' is out of range"),
        (["events.csv", "--serve", "--port", "70000"], 2, "'70000' is out of range: give from 0 to 65535"),
        (["events.csv", "2021-03-01", "2021-03-02", ""], 2, "CUSTOMER_ID is empty"),
        (["events.csv", "0001-01-01T00:00:00+01:00", "2021-03-02"], 2, "START '0001-01-01T00:00:00+01:00' falls"),
        (["events.csv", "2021-03-01", "9999-12-31T23:30:00-01:00"], 2, "END '9999-12-31T23:30:00-01:00' falls outside"),
        (["events.csv", "2021-03-01 04:00:00 PM", "2021-03-02"], 2, "START '2021-03-01 04:00:00 PM' ends in PM"),
        (["events.csv", "2021-03-01", "2021-03-02 Sat"], 2, "END '2021-03-02 Sat' ends in 'Sat'"),
    ],
)
def test_errors_are_one_line_with_the_right_status(args: list[str], status: int, says: str) -> None:
    result = run_cli(*args)
    assert result.returncode == status
    assert says in error_of(result)
    assert result.stdout == b""


def test_unreadable_file(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    def refuse(path: str, mode: str = "r") -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(totaler, "open", refuse, raising=False)  # a file root could read too
    assert totaler.main(["locked.csv", "2021-03-01", "2021-03-02"]) == 1
    assert capfd.readouterr().err == "totaler: error: locked.csv: cannot read (Permission denied)\n"


def test_corrupt_gzip_is_an_input_error(tmp_path) -> None:
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(EVENTS.read_bytes())[:5000])
    result = run_cli(str(bad), "2021-03-01", "2021-03-02")
    assert result.returncode == 1 and "bad.gz: cannot read" in error_of(result)


def test_malformed_rows_warn_once_and_strict_fails(tmp_path) -> None:
    log = tmp_path / "log.csv"
    log.write_bytes(b"a,I,t,2021-03-01 04:00:00+00\nbroken\na,I,t,2021-03-01 04:10:00+00\n")
    result = run_cli(str(log), "2021-03-01T04:00:00Z", "2021-03-01T05:00:00Z", "--json")
    assert result.returncode == 0
    assert result.stdout == b'{\n  "2021-03-01 04:00:00 +0000": {\n    "a": 2\n  }\n}\n'
    assert result.stderr == b"totaler: warning: skipped 1 malformed row (line 2: 1 field, expected 4)\n"
    strict = run_cli(str(log), "2021-03-01T04:00:00Z", "2021-03-01T05:00:00Z", "--strict")
    assert strict.returncode == 1
    assert error_of(strict) == f"totaler: error: {log}: line 2: 1 field, expected 4"
    assert strict.stdout == b""


def test_help_version_and_no_arguments() -> None:
    for args in (["--help"], []):
        result = run_cli(*args)
        assert result.returncode == 0
        assert b"usage: totaler" in result.stdout and b"2021-03-01T04:00:00Z" in result.stdout
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith(b"totaler ")


def test_closed_pipe_is_quiet() -> None:
    reader = subprocess.Popen(
        f"'{sys.executable}' totaler.py events.csv 2021-03-01 2021-03-04 | head -c 10",
        shell=True,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = reader.communicate(timeout=60)
    assert out == b"Input file"
    assert b"Traceback" not in err


def test_empty_and_header_only_files_list_empty_buckets(tmp_path) -> None:
    for name, content in (("empty.csv", b""), ("header.csv", b"customer_id,event_type,transaction_id,timestamp\n")):
        path = tmp_path / name
        path.write_bytes(content)
        result = run_cli(str(path), "2021-03-01T04:00:00Z", "2021-03-01T06:00:00Z", "--json")
        assert (result.returncode, result.stderr) == (0, f"totaler: warning: {path} holds no rows\n".encode())
        assert result.stdout == b'{\n  "2021-03-01 04:00:00 +0000": {},\n  "2021-03-01 05:00:00 +0000": {}\n}\n'


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_on_a_terminal_for_big_files_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for terminal, total, shows in ((True, 1 << 30, True), (False, 1 << 30, False), (True, 1 << 20, False)):
        stderr = FakeTerminal() if terminal else io.StringIO()
        monkeypatch.setattr(sys, "stderr", stderr)
        progress = totaler._Progress(total)
        progress.last -= 1  # as if the last report were a second ago
        progress(total // 4)
        progress.close()
        assert ("256 of 1024 MiB read" in stderr.getvalue()) == shows, stderr.getvalue()
        assert stderr.getvalue().endswith("\r\033[K") == shows


@pytest.fixture(scope="module")
def big_log(tmp_path_factory) -> Path:
    """About 300 MB: long enough to be interrupted while the workers count."""
    path = tmp_path_factory.mktemp("big") / "big.csv"
    data = EVENTS.read_bytes()
    with open(path, "wb") as out:
        for _ in range(20):
            out.write(data)
    return path


def older_pythons() -> list[str]:
    """Interpreters older than 3.11 on this machine (pyenv's, or python3.10 on PATH)."""
    found = sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.[89]*/bin/python"))
    found += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.10*/bin/python"))
    on_path = [p for p in map(shutil.which, ("python3.10", "python3.9")) if p and "/shims/" not in p]
    return found + [p for p in on_path if p not in found]


def test_an_older_python_gets_one_line_naming_both_versions() -> None:
    pythons = older_pythons()
    if not pythons:
        pytest.skip("no Python older than 3.11 on this machine")
    for python in pythons:
        result = subprocess.run([python, str(ROOT / "totaler.py"), "events.csv", *SEED], capture_output=True, cwd=ROOT)
        assert result.returncode == 2, (python, result.stderr)
        line = error_of(result)
        assert "needs Python 3.11 or newer; this is Python 3." in line


WITHOUT_DATEUTIL = (
    "import runpy, sys; sys.modules['dateutil'] = None; "
    "sys.argv[0] = 'totaler.py'; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def run_without_dateutil(*args: str) -> subprocess.CompletedProcess[bytes]:
    """The command line in a process where `import dateutil` fails, as in a bare Python."""
    return subprocess.run([sys.executable, "-c", WITHOUT_DATEUTIL, *args], capture_output=True, cwd=ROOT, timeout=60)


def test_without_dateutil_the_printed_forms_still_parse_and_the_rest_is_one_line() -> None:
    seed = run_without_dateutil("events.csv", *SEED)
    assert seed.returncode == 0 and seed.stdout == (EXPECTED / "seed-text.txt").read_bytes()
    printed = run_without_dateutil("events.csv", "2021-03-01 04:00:00 UTC", "2021-03-01 06:30:00 +0000")
    assert printed.returncode == 0 and printed.stdout == seed.stdout
    needs = run_without_dateutil("events.csv", "2021-03-01 4:00", "2021-03-01 06:30:00 +0000")
    assert needs.returncode == 2
    assert "START '2021-03-01 4:00' needs python-dateutil to be read (pip install python-dateutil)" in error_of(needs)


def test_without_dateutil_the_server_answers_400(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dateutil", None)
    with pytest.raises(totaler._BadRequest, match="needs python-dateutil"):
        totaler._parse_query("start=2021-03-01%204:00&end=2021-03-02", 100)
    assert totaler._parse_query(
        "start=2021-03-01%2004:00:00%20UTC&end=2021-03-02", 100
    ).window.start == totaler.parse_instant(SEED[0])


def test_serve_builds_its_index_on_the_jobs_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []

    def build_index(path: str, jobs: int = 0, *rest: object) -> None:
        asked.append(jobs)
        raise totaler.InputError("stop here")

    monkeypatch.setattr(totaler, "build_index", build_index)
    assert totaler.main(["events.csv", "--serve", "--jobs", "3", "--port", "0"]) == 1
    assert asked == [3]


def test_a_command_line_run_does_not_import_asyncio() -> None:
    """asyncio is for the server's workers: imported by every run it cost 25 to 30 ms of 0.19 s on events.csv."""
    probe = "import sys, totaler; totaler.main(['events.csv', *sys.argv[1:]]); print('asyncio' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe, *SEED], capture_output=True, cwd=ROOT, check=True)
    assert result.stdout.decode().splitlines()[-1] == "False"


def test_iso_forms_python_reads_are_read_alike_in_rows_and_bounds_and_a_fraction_stops_at_the_microsecond(
    tmp_path: Path,
) -> None:
    """A week date and the basic format are the instants they name; digits past the sixth are dropped, in a row and
    in a bound alike, so a row at a bound written the same way is at it (the window's end leaves it out)."""
    log = tmp_path / "forms.csv"
    log.write_text(
        "a,INGEST,t1,2021-03-01T04:59:59.9999999Z\nb,INGEST,t2,2021-W09-1T04:10:00Z\nc,INGEST,t3,20210301T041000Z\n"
    )
    whole = run_cli(str(log), "2021-03-01T04:00Z", "2021-W09-1T05:00Z", "--format", "csv")
    assert whole.stdout.decode().splitlines()[1:] == [f"2021-03-01 04:00:00 +0000,{who},1" for who in "abc"]
    cut = run_cli(str(log), "20210301T0400Z", "2021-03-01T04:59:59.9999999Z", "--format", "csv")
    assert cut.stdout.decode().splitlines()[1:] == [f"2021-03-01 04:00:00 +0000,{who},1" for who in "bc"]
