"""Build the 10-million-row benchmark log: COPIES copies of events.csv, each shifted 3 days later."""

import sys
from datetime import date, timedelta
from pathlib import Path

COPIES = 68
SHIFT = timedelta(days=3)


def shifted_dates(dates: set[str], copy: int) -> dict[str, str]:
    """Map each YYYY-MM-DD in the log to the same date COPY * 3 days later."""
    return {d: (date.fromisoformat(d) + copy * SHIFT).isoformat() for d in dates}


def make_big(source: Path, target: Path, copies: int = COPIES) -> None:
    """Write COPIES shifted copies of SOURCE to TARGET, line for line."""
    rows = [line.rsplit(b",", 1) for line in source.read_bytes().splitlines(keepends=True)]
    dates = {ts[:10].decode() for _, ts in rows}
    tmp = target.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        for copy in range(copies):
            shift = {d.encode(): s.encode() for d, s in shifted_dates(dates, copy).items()}
            out.write(b"".join(head + b"," + shift[ts[:10]] + ts[10:] for head, ts in rows))
    tmp.replace(target)


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else here / "data" / "events-10m.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    make_big(here.parent / "events.csv", target)
    print(target, target.stat().st_size, "bytes")
