"""What the bench scripts read of a server's processes, from Linux's /proc."""

import re
from pathlib import Path


def children(pid: int) -> list[int]:
    """The processes PID started that are still there."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def descendants(pid: int) -> list[int]:
    """PID's children, their children, and so on (a forkserver's workers are grandchildren)."""
    found = children(pid)
    for child in list(found):
        found += descendants(child)
    return found


def pss_bytes(pid: int) -> int:
    """The proportional set size of PID and all its descendants: pages they share count once."""
    total = 0
    for each in [pid, *descendants(pid)]:
        try:
            text = Path(f"/proc/{each}/smaps_rollup").read_text()
        except OSError:
            continue  # a worker that just ended
        total += int(re.search(r"^Pss:\s+(\d+)", text, re.MULTILINE).group(1)) * 1024
    return total
