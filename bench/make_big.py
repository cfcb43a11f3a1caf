"""Build the 10-million-row benchmark log: COPIES copies of events.csv, each shifted 3 days later.

    python bench/make_big.py [TARGET] [--customers N]

With --customers N, each row's customer is one of N UUID-shaped ids drawn at random (the
shape of a billing company's log: 100,000 customers), rows left in time order.
"""

import argparse
import random
import uuid
from datetime import date, timedelta
from pathlib import Path

COPIES = 68
SHIFT = timedelta(days=3)


def shifted_dates(dates: set[str], copy: int) -> dict[str, str]:
    """Map each YYYY-MM-DD in the log to the same date COPY * 3 days later."""
    return {d: (date.fromisoformat(d) + copy * SHIFT).isoformat() for d in dates}


def make_big(source: Path, target: Path, copies: int = COPIES, customers: int = 0) -> None:
    """Write COPIES shifted copies of SOURCE to TARGET, line for line; with CUSTOMERS, each row's customer one of
    that many UUID-shaped ids."""
    rows = [line.rsplit(b",", 1) for line in source.read_bytes().splitlines(keepends=True)]
    dates = {ts[:10].decode() for _, ts in rows}
    chance = random.Random(11)
    names = [uuid.UUID(int=chance.getrandbits(128)).hex.encode() for _ in range(customers)]
    tmp = target.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        for copy in range(copies):
            shift = {d.encode(): s.encode() for d, s in shifted_dates(dates, copy).items()}
            if customers:
                heads = [chance.choice(names) + head[head.index(b",") :] for head, _ in rows]
            else:
                heads = [head for head, _ in rows]
            out.write(
                b"".join(head + b"," + shift[ts[:10]] + ts[10:] for head, (_, ts) in zip(heads, rows, strict=True))
            )
    tmp.replace(target)


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", type=Path, default=here / "data" / "events-10m.csv")
    parser.add_argument("--customers", type=int, default=0, help="UUID-shaped customers (default: events.csv's own)")
    args = parser.parse_args()
    args.target.parent.mkdir(parents=True, exist_ok=True)
    make_big(here.parent / "events.csv", args.target, customers=args.customers)
    print(args.target, args.target.stat().st_size, "bytes")
