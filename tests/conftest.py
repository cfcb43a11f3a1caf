"""Shared helpers: the repository's paths, and the command line run as a user runs it."""

import subprocess
import sys
from pathlib import Path

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
