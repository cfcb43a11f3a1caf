"""Shared helpers: the repository's paths, and the command line run as a user runs it."""

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import totaler

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events.csv"
EXPECTED = ROOT / "tests" / "expected"  # copies of ../shared/expected, the reference's outputs
SHARED_EXPECTED = ROOT.parent / "shared" / "expected"
SEED = ["2021-03-01T04:00:00Z", "2021-03-01T06:30:00Z"]
SEED_CUSTOMER = "30330c9c4e7173ba9474c46ee5191570"


def run_cli(*args: str, stdin: bytes | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[bytes]:
    """Run `python totaler.py ARGS` and capture everything."""
    return subprocess.run(
        [sys.executable, str(ROOT / "totaler.py"), *args], input=stdin, capture_output=True, cwd=cwd, timeout=120
    )


@contextmanager
def sizes(block: int, max_line: int, part: int = 1 << 26, segment: int | None = None) -> Iterator[None]:
    """Shrink the reads, the longest line and the workers' parts, so that small files reach every boundary."""
    names = ("BLOCK_SIZE", "MAX_LINE", "PART_SIZE", "PARALLEL_MIN", "SMALL_SEGMENT")
    saved = [getattr(totaler, name) for name in names]
    new = (block, max_line, part, 1, totaler.SMALL_SEGMENT if segment is None else segment)
    for name, value in zip(names, new, strict=True):
        setattr(totaler, name, value)
    try:
        yield
    finally:
        for name, value in zip(names, saved, strict=True):
            setattr(totaler, name, value)
