"""Shared helpers: the repository's paths, and the command line run as a user runs it.

Tests shrink totaler's sizes and thresholds (machinery: `_BLOCK_SIZE` and the like) so that they reach
boundaries that live at megabytes; `patched` names them without the underscore.
"""

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import strategies as st

import totaler

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events.csv"
EXPECTED = ROOT / "tests" / "expected"  # copies of ../shared/expected, the reference's outputs
SHARED_EXPECTED = ROOT.parent / "shared" / "expected"
SEED = ["2021-03-01T04:00:00Z", "2021-03-01T06:30:00Z"]
SEED_CUSTOMER = "30330c9c4e7173ba9474c46ee5191570"
# Two hours before events.csv's first event; its events span three days, so windows drawn over
# four days from here reach past both ends.
BASE = datetime(2021, 2, 28, 22, tzinfo=UTC)


def random_windows(n: int, seed: int, customers: list[str | None]) -> list[tuple[datetime, datetime, str | None]]:
    """N windows over events.csv's days and beyond, to the microsecond, up to 1, 6 or 80 hours long, every
    fifth in whole hours; a third for one of CUSTOMERS."""
    rng = random.Random(seed)
    windows = []
    for i in range(n):
        start = BASE + timedelta(microseconds=rng.randrange(4 * 24 * 3600 * 10**6))
        length = timedelta(microseconds=rng.randrange(1, rng.choice([3600, 6 * 3600, 80 * 3600]) * 10**6))
        if i % 5 == 0:
            start, length = start.replace(minute=0, second=0, microsecond=0), timedelta(hours=rng.randrange(1, 30))
        windows.append((start, start + length, rng.choice(customers) if i % 3 == 0 else None))
    return windows


def run_cli(*args: str, stdin: bytes | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[bytes]:
    """Run `python totaler.py ARGS` and capture everything."""
    return subprocess.run(
        [sys.executable, str(ROOT / "totaler.py"), *args], input=stdin, capture_output=True, cwd=cwd, timeout=120
    )


@contextmanager
def patched(**values: int) -> Iterator[None]:
    """Set totaler's sizes and thresholds (machinery: named here without their leading _) for the block, then
    put the old ones back."""
    values = {"_" + name: value for name, value in values.items()}
    saved = {name: getattr(totaler, name) for name in values}
    for name, value in values.items():
        setattr(totaler, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(totaler, name, value)


def file_backed(**sizes: int) -> ContextManager[None]:
    """Index any log file-backed (cut hours read again from the file), with SIZES changed; windows of any
    length answered from the file (FILE_HOURS, a server's bound, is tested on its own)."""
    return patched(
        **{"FILE_BACKED_MIN": 0, "PROBE_HOURS": 10**9, "FILE_BACKED_SPAN": 1 << 62, "FILE_HOURS": 1 << 62, **sizes}
    )


def sizes(block: int, max_line: int, part: int = 1 << 26, segment: int | None = None) -> ContextManager[None]:
    """Shrink the reads, the longest line and the workers' parts, so that small files reach every boundary."""
    segment = totaler._SMALL_BLOCK if segment is None else segment
    return patched(BLOCK_SIZE=block, MAX_LINE=max_line, RANGE_SIZE=part, PARALLEL_MIN=1, SMALL_BLOCK=segment)


# Answers never depend on the machine's zone: every test, and every process it starts, runs
# where local time is not UTC, so a bound read as local time instead of UTC fails somewhere.
os.environ["TZ"] = "America/New_York"
time.tzset()

HOUR = 3_600_000_000


def edge_instants(events: list[int]) -> st.SearchStrategy[int]:
    """Instants where bugs live: the EVENTS themselves and their hours' boundaries, each ± 1 µs, or any instant."""
    if not events:
        return st.integers(0, 10 * HOUR)
    hours = {e - e % HOUR for e in events}
    nudges = st.sampled_from([-1, 0, 1])
    near_events = st.builds(int.__add__, st.sampled_from(sorted(set(events))), nudges)
    near_hours = st.builds(int.__add__, st.sampled_from(sorted(hours | {h + HOUR for h in hours})), nudges)
    anywhere = st.integers(min(hours) - HOUR, max(hours) + 2 * HOUR)
    return st.one_of(near_events, near_hours, anywhere)


@st.composite
def edge_windows(draw, events: list[int], customers: list[str | None]) -> tuple[int, int, str | None]:
    """A window [start, end) with both bounds, or one and a width, drawn by edge_instants; and a customer or None."""
    instants = edge_instants(events)
    shape = draw(st.sampled_from(["both", "from start", "to end"]))
    if shape == "both":
        start, end = sorted(draw(st.lists(instants, min_size=2, max_size=2, unique=True)))
    else:
        anchor = draw(instants)
        width = draw(st.sampled_from([1, 2, HOUR - 1, HOUR, HOUR + 1]) | st.integers(1, 3 * HOUR))
        start, end = (anchor, anchor + width) if shape == "from start" else (anchor - width, anchor)
    return start, end, draw(st.sampled_from(customers))


def children(pid: int) -> list[int]:
    """The processes PID started that are still there (from /proc: no pgrep needed)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:  # the parent's pid
            found.append(int(stat.parent.name))
    return found


# Every process a test starts, stopped at the end of the session whatever failed on the way:
# a server or a Dask cluster whose setup failed half-way must not outlive pytest.
STARTED: list[subprocess.Popen] = []


def spawn(command: list[str], **options) -> subprocess.Popen:
    """Start COMMAND in a process group of its own (its children too), killed at the session's end if still there."""
    process = subprocess.Popen(command, start_new_session=True, **options)
    STARTED.append(process)
    return process


def kill_group(process: subprocess.Popen) -> None:
    """Kill PROCESS and every process of its group, and reap it."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_running() -> Iterator[None]:
    """After the last test: kill what is left of every process group the tests started."""
    yield
    for process in STARTED:
        kill_group(process)


def imports(module: str) -> bool:
    """Whether this interpreter, the one running the tests, can import MODULE (a `dask` on the PATH may belong
    to another Python)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def needs(module: str, extra: str):
    """Skip unless this interpreter imports MODULE, from the optional EXTRA; where TOTALER_REQUIRE_EXTRAS is
    set (the extras' step of .ci/run) fail instead."""
    if os.environ.get("TOTALER_REQUIRE_EXTRAS"):
        return pytest.mark.skipif(False, reason="")
    reason = f"{module} is not importable by this Python (pip install -e '.[{extra}]')"
    return pytest.mark.skipif(not imports(module), reason=reason)


def count_stream(
    stream: BinaryIO, window: totaler.Window, fast: bool = True, transactions: totaler._Transactions | None = None
) -> totaler._Tally:
    """Count a stream block by block, as count_files reads standard input, keeping the tally (its skipped rows
    and duplicates): each transaction once if WINDOW asks, settled against TRANSACTIONS."""
    return totaler._read_stream(stream, totaler._new_tally(window, transactions, fast))
