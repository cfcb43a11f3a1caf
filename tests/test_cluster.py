"""Many inputs as one log, and the same answer counted on a real Dask cluster (scheduler and workers on loopback).

The cluster is `dask scheduler` and two `dask worker` processes started here, as a user
would start them (by this interpreter's `python -m dask`), not a LocalCluster inside the test
process.  Dask is the optional extra (`pip install -e '.[dask]'`): these tests skip unless this
interpreter imports it; .ci/run's second step installs it and sets TOTALER_REQUIRE_EXTRAS, and
there a missing Dask fails.

Reaches inside for `_cluster_ranges` (how many tasks a file becomes) and `_input_files` (the order
files are read in), which the cluster's answer depends on.
"""

import bz2
import gzip
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from conftest import EVENTS, ROOT, SEED, children, kill_group, needs, run_cli, sizes, spawn

import totaler

ROWS = b"a,INGEST,t1,2021-03-01 04:05:00+00\nb,INGEST,t2,2021-03-01 04:06:00+00\n"
HOUR_04 = ["2021-03-01T04:00:00Z", "2021-03-01T05:00:00Z"]


@pytest.fixture
def logs(tmp_path) -> Path:
    """A directory of rotated logs: plain, gzip and bzip2, in a subdirectory too, with malformed rows."""
    folder = tmp_path / "logs"
    (folder / "2021-03-02").mkdir(parents=True)
    (folder / "2021-03-01.csv").write_bytes(b"c,INGEST,t0,2021-03-01 04:01:00+00\nbroken\n" + ROWS)
    (folder / "2021-03-01.csv.gz").write_bytes(gzip.compress(ROWS + b"x,y\n"))
    (folder / "2021-03-02" / "part-1.csv.bz2").write_bytes(bz2.compress(b"d,INGEST,t9,2021-03-01 04:59:00Z\n"))
    return folder


def concatenated(folder: Path) -> bytes:
    """What the directory holds, decompressed, in name order: the log it stands for."""
    parts = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        parts.append(
            gzip.decompress(data) if path.suffix == ".gz" else bz2.decompress(data) if path.suffix == ".bz2" else data
        )
    return b"".join(parts)


def test_a_directory_counts_as_its_files_one_after_the_other(logs: Path) -> None:
    result = run_cli(str(logs), *HOUR_04, "--json")
    assert result.returncode == 0
    assert result.stdout == run_cli("-", *HOUR_04, "--json", stdin=concatenated(logs)).stdout
    assert b'"c": 1,\n    "a": 2,\n    "b": 2,\n    "d": 1' in result.stdout  # customers in file, then line, order
    assert result.stderr.decode() == (
        f"totaler: warning: skipped 2 malformed rows ({logs}/2021-03-01.csv line 2: 1 field, expected 4; "
        f"{logs}/2021-03-01.csv.gz line 3: 2 fields, expected 4)\n"
    )
    text = run_cli(str(logs), *HOUR_04).stdout.decode()
    assert text.startswith(f"Input file: {logs}\n")


def test_a_quoted_glob_and_strict_name_the_file(logs: Path) -> None:
    result = run_cli(f"{logs}/*.csv*", *HOUR_04, "--json")
    assert b'"d"' not in result.stdout and b'"c": 1' in result.stdout  # the subdirectory is not matched
    strict = run_cli(str(logs), *HOUR_04, "--strict")
    assert strict.returncode == 1
    assert strict.stderr.decode() == f"totaler: error: {logs}/2021-03-01.csv: line 2: 1 field, expected 4\n"


def test_the_server_indexes_a_directory_and_lists_it_again_on_sighup(logs: Path) -> None:
    from test_http import Server, counts_url

    running = Server(logs, "--quiet", "--workers", "1")
    try:
        want = run_cli(str(logs), *HOUR_04, "--json").stdout
        assert running.get(counts_url(*HOUR_04)) == (200, want)
        (logs / "2021-03-03.csv").write_bytes(b"e,INGEST,t,2021-03-01 04:30:00Z\n")
        running.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "reloaded" not in running.stderr():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert running.get(counts_url(*HOUR_04))[1] == run_cli(str(logs), *HOUR_04, "--json").stdout
        assert b'"e": 1' in running.get(counts_url(*HOUR_04))[1]
    finally:
        running.stop()


# --- on a real cluster -------------------------------------------------------

DASK = [sys.executable, "-m", "dask"]  # this interpreter's Dask, never another Python's `dask` on the PATH
needs_dask = needs("distributed", "dask")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1."""

    def __init__(self, folder: Path) -> None:
        self.address = f"tcp://127.0.0.1:{free_port()}"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": folder}
        port = self.address.rsplit(":", 1)[1]
        scheduler = [*DASK, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"]
        self.scheduler = spawn(scheduler, **quiet)
        self.workers: list[subprocess.Popen] = []
        try:
            worker = [*DASK, "worker", self.address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"]
            self.workers = [spawn([*worker, "--name", f"w{i}"], **quiet) for i in range(2)]
            from dask.distributed import Client

            with Client(self.address, timeout=60) as client:
                client.wait_for_workers(2, timeout=60)
        except BaseException:
            self.stop()  # a setup that fails half-way leaves no scheduler or worker behind
            raise

    def worker_pids(self) -> list[int]:
        """The processes that run tasks (a `dask worker` runs them in a child, a nanny watches it)."""
        return [pid for nanny in self.workers for pid in children(nanny.pid)]

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            process.terminate()
        for process in [*self.workers, self.scheduler]:
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
            kill_group(process)  # a worker's nanny's child too


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        yield running
    finally:
        running.stop()


ON_THE_CLUSTER = [
    [],
    ["--json"],
    ["30330c9c4e7173ba9474c46ee5191570"],
    ["--tz", "America/New_York", "--bucket", "1d", "--event-type", "INGEST-WITH-PROXY", "--format", "csv"],
    ["--tz", "Asia/Kolkata", "--bucket", "15m", "--json"],
    ["--unique", "--json"],
]


@needs_dask
@pytest.mark.parametrize("extra", ON_THE_CLUSTER)
def test_events_on_the_cluster_are_the_local_answer_byte_for_byte(cluster: Cluster, extra: list[str]) -> None:
    args = ["events.csv", *SEED, *extra]
    local = run_cli(*args)
    remote = run_cli(*args, "--scheduler", cluster.address)
    assert remote.returncode == 0, remote.stderr
    assert (remote.stdout, remote.stderr) == (local.stdout, local.stderr)


@needs_dask
def test_a_directory_with_malformed_rows_on_the_cluster(cluster: Cluster, logs: Path) -> None:
    local = run_cli(str(logs), *HOUR_04, "--json")
    env_remote = subprocess.run(
        [sys.executable, str(ROOT / "totaler.py"), str(logs), *HOUR_04, "--json"],
        capture_output=True,
        env=dict(os.environ, TOTALER_SCHEDULER=cluster.address),
        timeout=120,
    )
    assert (env_remote.returncode, env_remote.stdout, env_remote.stderr) == (0, local.stdout, local.stderr)
    strict = run_cli(str(logs), *HOUR_04, "--strict", "--scheduler", cluster.address)
    assert strict.returncode == 1 and b"2021-03-01.csv: line 2: 1 field, expected 4" in strict.stderr


@needs_dask
def test_a_file_cut_into_many_parts_and_a_worker_killed_mid_count(cluster: Cluster, tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    with open(big, "wb") as out:
        for _ in range(6):
            out.write(EVENTS.read_bytes())
        out.write(b"broken row\n")
    window = totaler.Window(totaler.parse_instant("2021-03-01"), totaler.parse_instant("2021-03-04"))
    local = totaler.count_files([str(big)], window, jobs=1)
    with sizes(1 << 21, 1 << 20, part=1 << 20):  # 90 tasks of 1 MiB
        assert len(totaler._cluster_ranges([str(big)])) > 80
        killed = []

        def kill_a_worker() -> None:
            time.sleep(0.5)
            pid = cluster.worker_pids()[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

        killer = threading.Thread(target=kill_a_worker)
        killer.start()
        remote = totaler.count_files([str(big)], window, scheduler=cluster.address)
        killer.join()
    assert killed
    assert totaler._by_bucket(remote.counts, window) == totaler._by_bucket(local.counts, window)
    assert (remote.skipped.count, remote.skipped.first, remote.lines) == (
        1,
        [(884_221, "1 field, expected 4")],
        884_221,
    )


@needs_dask
def test_unique_on_the_cluster_settles_each_piece_against_the_pieces_before_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Every id of events.csv again in a second copy, in a compressed file, and in half a copy: pieces of 1 MiB."""
    folder, data = tmp_path / "logs", EVENTS.read_bytes()
    folder.mkdir()
    (folder / "a.csv").write_bytes(data * 2)
    (folder / "b.csv.gz").write_bytes(gzip.compress(data))
    (folder / "c.csv").write_bytes(data[: data.index(b"\n", len(data) // 2) + 1])
    window = totaler.Window(totaler.parse_instant("2021-03-01"), totaler.parse_instant("2021-03-04"), unique=True)
    local = totaler.count_files(totaler._input_files(str(folder)), window, jobs=1)
    with sizes(1 << 21, 1 << 20, part=1 << 20):
        remote = totaler.count_files(totaler._input_files(str(folder)), window, scheduler=cluster.address)
    assert totaler._by_bucket(remote.counts, window) == totaler._by_bucket(local.counts, window)
    rows, half = data.count(b"\n"), (folder / "c.csv").read_bytes().count(b"\n")
    assert remote.duplicates == local.duplicates == rows + rows + half
    assert sum(local.counts.values()) == rows


@needs_dask
def test_an_unreachable_scheduler_is_one_line_and_status_1() -> None:
    began = time.monotonic()
    result = run_cli("events.csv", *SEED, "--scheduler", f"tcp://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "totaler: error: cannot reach the Dask scheduler at tcp://127.0.0.1:"
    )
    assert time.monotonic() - began < 30


@needs_dask
def test_standard_input_cannot_go_to_a_cluster() -> None:
    result = run_cli("-", *SEED, "--scheduler", "tcp://127.0.0.1:1", stdin=b"")
    assert result.returncode == 2
    assert result.stderr == b"totaler: error: --scheduler counts files its workers can open, not standard input\n"
