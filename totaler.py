"""totaler: how many events did each customer send in each UTC hour of [START, END)?

Reads a header-less CSV log, customer_id,event_type,transaction_id,timestamp, and
prints the count per one-hour bucket, as text or JSON.  One file, read top to bottom:
time, reading rows, the counting core, rendering, the command line.
"""

from __future__ import annotations

import argparse
import csv
import gc
import gzip
import json
import os
import re
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from itertools import chain, repeat
from typing import BinaryIO

__version__ = "1.0.0"

# ---------------------------------------------------------------------------
# Time: every instant is an int, microseconds since the Unix epoch, in UTC.
# Integers compare exactly and floor to the hour with one modulo.

MICROSECOND = timedelta(microseconds=1)
HOUR = 3_600_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ISO_DATE_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}")
ZONE_WITH_OFFSET = re.compile(r"(?:UTC|GMT|UT|Z)\s*[+-]\d", re.IGNORECASE)
UTC_NAMES = {"UTC", "GMT", "UT", "Z"}


class BadTimestamp(ValueError):
    """A timestamp that is not ISO 8601."""


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // MICROSECOND


def from_micros(micros: int) -> datetime:
    """The UTC datetime of MICROS."""
    return EPOCH + micros * MICROSECOND


def hour_floor(micros: int) -> int:
    """The start of the UTC hour that contains MICROS."""
    return micros - micros % HOUR


def format_bucket(micros: int) -> str:
    """A bucket as the reference printed it: 2021-03-01 04:00:00 +0000."""
    return from_micros(micros).strftime("%Y-%m-%d %H:%M:%S +0000")


def format_utc(micros: int) -> str:
    """An instant as the reference printed it: 2021-03-01 04:00:00 UTC (fraction if any)."""
    moment = from_micros(micros)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + " UTC"


def parse_event_time(text: str) -> int:
    """A row's timestamp: ISO 8601 with a time of day, offset optional (UTC)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadTimestamp(f"timestamp {text!r} is not ISO 8601") from None
    if "T" not in text and " " not in text:
        raise BadTimestamp(f"timestamp {text!r} has no time of day")
    return to_micros(moment)


def parse_bound(text: str) -> int:
    """A window bound: ISO 8601, or a form this tool prints; never a guess."""
    text = text.strip()
    try:
        return to_micros(datetime.fromisoformat(text))
    except ValueError:
        pass
    # dateutil reads '... UTC' and '... +0000' but also guesses at '03/01/21' or
    # '4pm': insist on an ISO date first, so year, month and day are never guessed.
    if not ISO_DATE_PREFIX.match(text):
        raise BadTimestamp(f"{text!r} is not an ISO 8601 timestamp (e.g. 2021-03-01T04:00:00Z)")
    if ZONE_WITH_OFFSET.search(text):  # 'UTC+3' means UTC-3 to POSIX: refuse to guess
        raise BadTimestamp(f"{text!r} mixes a zone name and an offset; give one offset like +03:00")
    from dateutil import parser

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return to_micros(parser.parse(text, tzinfos=utc_zone_only))
        except (ValueError, OverflowError, Warning) as error:
            reason = str(error) if isinstance(error, BadTimestamp) else "is not an ISO 8601 timestamp"
            raise BadTimestamp(f"{text!r} {reason}") from None


def utc_zone_only(name: str | None, offset: int | None) -> tzinfo:
    """dateutil's zone lookup, made the same on every machine: offsets and UTC names only."""
    # Left to itself dateutil maps a name that matches the machine's own zone to
    # local time, so 'EST' would work on one laptop and fail on the next.
    if name is None:
        return timezone(timedelta(seconds=offset or 0))
    if name.upper() in UTC_NAMES and not offset:
        return UTC
    raise BadTimestamp(f"names a time zone ({name}); give an offset like -05:00")


# ---------------------------------------------------------------------------
# Reading rows.  A record is one physical line; a quote left open at the end of
# a line makes that row malformed instead of swallowing the lines after it, so a
# file can be cut into blocks (and workers) at any newline.

HEADER = ["customer_id", "event_type", "transaction_id", "timestamp"]
BLOCK_SIZE = 1 << 21
MAX_LINE = 1 << 20
SHOWN_SKIPS = 3
BOM = b"\xef\xbb\xbf"


class Malformed(ValueError):
    """A row that cannot be counted; the message says why."""


class InputError(Exception):
    """The input cannot be read at all (exit status 1)."""


@dataclass
class Skipped:
    """Rows skipped as malformed: how many, and the first few with line and reason."""

    count: int = 0
    first: list[tuple[int, str]] = field(default_factory=list)

    def add(self, line: int, reason: str) -> None:
        """Count one skipped row."""
        self.count += 1
        if len(self.first) < SHOWN_SKIPS:
            self.first.append((line, reason))

    def extend(self, other: Skipped) -> None:
        """Count OTHER's rows after ours (OTHER comes later in the file)."""
        for line, reason in other.first:
            self.add(line, reason)
        self.count += other.count - len(other.first)

    def summary(self) -> str:
        """One line for stderr: how many rows were skipped, and where and why the first were."""
        shown = "; ".join(f"line {line}: {reason}" for line, reason in self.first)
        more = ", ..." if self.count > len(self.first) else ""
        rows = "row" if self.count == 1 else "rows"
        return f"skipped {self.count} malformed {rows} ({shown}{more})"


def parse_row(line: bytes) -> tuple[str, int]:
    """The reference reader: one line (no newline) to (customer_id, UTC microseconds)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Malformed(f"bytes that are not UTF-8 at column {error.start + 1}") from None
    if "\x00" in text:
        raise Malformed("NUL byte")
    try:
        fields = next(csv.reader((text.removesuffix("\r"),), strict=True))
    except csv.Error as error:
        raise Malformed(f"bad CSV: {error}") from None
    if len(fields) != 4:
        raise Malformed(f"{len(fields)} fields, expected 4")
    customer = fields[0].strip()
    if not customer:
        raise Malformed("empty customer_id")
    try:
        return customer, parse_event_time(fields[3].strip())
    except BadTimestamp as error:
        raise Malformed(str(error)) from None


def is_header(line: bytes) -> bool:
    """Whether LINE is the optional header row."""
    return [f.strip().strip('"').lower() for f in line.decode("utf-8", "replace").split(",")] == HEADER


def open_input(path: str) -> BinaryIO:
    """A binary stream of PATH ('-' is standard input), gunzipped if its bytes say gzip."""
    if path == "-":
        raw = sys.stdin.buffer
    else:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - the caller closes it
        except IsADirectoryError:
            raise InputError(f"{path}: is a directory") from None
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except OSError as error:
            raise InputError(f"{path}: cannot read ({error.strerror})") from None
    if raw.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


@dataclass
class Block:
    """Whole lines of the input: DATA[LO:HI] runs from the newline before its first line to its last newline."""

    data: bytes
    lo: int
    hi: int
    first_line: int  # the number of the first line, counting from 1
    lines: int  # how many lines it holds


def read_blocks(stream: BinaryIO, limit: int = -1, at_start: bool = True) -> Iterator[Block]:
    """Cut STREAM (or its next LIMIT bytes) into blocks of whole lines; AT_START, drop a BOM and header."""

    def read() -> bytes:
        nonlocal limit
        if limit < 0:
            return stream.read(BLOCK_SIZE)
        chunk = stream.read(min(BLOCK_SIZE, limit)) if limit else b""
        limit -= len(chunk)
        return chunk

    chunk, line = read(), 1
    if at_start:
        chunk, line = skip_preamble(chunk)
        if line > 1:
            yield Block(b"\n", 0, 1, line, 0)  # no lines, but the header's line is counted as read
    carry = b"\n"  # the start of a line cut by the end of the last read, after a newline
    while chunk:
        first = chunk.find(b"\n")
        if first < 0:
            carry += chunk
            if len(carry) > MAX_LINE:
                # Longer than any row we accept: keep its head, which will be reported
                # malformed, and drop the rest up to its newline instead of holding it.
                yield Block(carry[:MAX_LINE] + b"\n", 0, MAX_LINE + 1, line, 1)
                line += 1
                carry = b"\n" + skip_rest_of_line(read)
            chunk = read()
            continue
        # Blocks are the reads themselves, not copies: the line cut between two
        # reads goes on its own, and the block is the read between its first and
        # last newline.
        joined = carry + chunk[: first + 1]
        yield Block(joined, 0, len(joined), line, 1)
        line += 1
        last = chunk.rfind(b"\n")
        if last > first:
            lines = chunk.count(b"\n", first + 1, last + 1)
            yield Block(chunk, first, last + 1, line, lines)
            line += lines
        carry = chunk[last:]
        chunk = read()
    if len(carry) > 1:
        yield Block(carry + b"\n", 0, len(carry) + 1, line, 1)


def skip_preamble(chunk: bytes) -> tuple[bytes, int]:
    """Drop a byte-order mark and a header line from the file's first CHUNK; return it and its first line."""
    chunk = chunk.removeprefix(BOM)
    newline = chunk.find(b"\n")
    first = chunk if newline < 0 else chunk[:newline]
    if is_header(first.removesuffix(b"\r")):
        return (b"" if newline < 0 else chunk[newline + 1 :]), 2
    return chunk, 1


def skip_rest_of_line(read: Callable[[], bytes]) -> bytes:
    """Read on past the next newline; return what follows it."""
    while chunk := read():
        newline = chunk.find(b"\n")
        if newline >= 0:
            return chunk[newline + 1 :]
    return b""


def block_events(block: Block, skipped: Skipped) -> Iterator[tuple[str, int]]:
    """The reference path: every countable (customer, time) of BLOCK, in file order."""
    lines = block.data[block.lo : block.hi].split(b"\n")[1:-1]
    for number, line in enumerate(lines, block.first_line):
        if not line.strip():
            continue
        try:
            yield parse_row(line)
        except Malformed as error:
            skipped.add(number, str(error))


# ---------------------------------------------------------------------------
# The core: count events per (hour bucket, customer) inside [start, end).


@dataclass(frozen=True)
class Window:
    """The question: [start, end) in UTC microseconds, and optionally one customer."""

    start: int
    end: int
    customer: str | None = None


Counts = dict[tuple[int, str], int]


def count_events(events: Iterable[tuple[str, int]], window: Window) -> Counts:
    """Count events per (hour bucket, customer) in WINDOW, in order of first counted event."""
    counts: Counts = {}
    for customer, moment in events:
        if window.start <= moment < window.end and window.customer in (None, customer):
            key = (hour_floor(moment), customer)
            counts[key] = counts.get(key, 0) + 1
    return counts


def merge_counts(total: Counts, part: Counts) -> None:
    """Add PART, which comes later in the file, into TOTAL, keeping first-seen order."""
    for key, n in part.items():
        total[key] = total.get(key, 0) + n


# ---------------------------------------------------------------------------
# The fast path.  Most rows look alike: ASCII fields, no quotes, and a UTC
# timestamp like 2021-03-01 04:05:06.789+00.  One regular expression proves a
# whole block has that shape and hands back (customer, hour) pairs in file order,
# so C does the per-row work.  A block with any other row is cut in two at a
# newline until the odd rows sit in small pieces that go through parse_row, the
# reference.  The fast path counts exactly what the reference counts, in the
# same order (tests/test_fast_path.py proves it on generated messy files).

# Possessive quantifiers (3.11) keep the engine from saving states it will never
# backtrack to; month, day and hour are checked once per distinct hour key.
_CUSTOMER = rb"[!#-+\--~]{1,256}+"  # printable ASCII without space, comma or quote
_FIELD = rb"[ !#-+\--~]{0,1024}+"
_DATE_HOUR = rb"\d{4}-\d\d-\d\d[ T]\d\d"
_MINUTES = rb":[0-5]\d:[0-5]\d(?:\.\d{1,6}+)?+"
_UTC_END = rb"(?:\+00:00|\+0000|\+00|Z)?+\r?"  # longest first: possessive never retries
_ROW_START = rb"\n(" + _CUSTOMER + rb")," + _FIELD + rb"," + _FIELD + rb","
UTC_SUFFIXES = (b"+00:00", b"+0000", b"+00", b"Z")
CUSTOMER_NAME = re.compile(_CUSTOMER)
# Four rows a match: a quarter of the matches and tuples, and Counter keys that
# repeat just as often in a log where neighbours share customer and hour.
GROUP = 4
SMALL_SEGMENT = 1 << 16
_hour_buckets: dict[bytes, int] = {}
_timed_patterns: dict[bytes, re.Pattern[bytes]] = {}


class NotCanonical(Exception):
    """A row matched the fast pattern but is not a valid instant (say, February 30)."""


def hour_bucket(key: bytes) -> int:
    """The bucket of an hour key like b'2021-03-01 04' (cached: a log has few hours)."""
    bucket = _hour_buckets.get(key)
    if bucket is None:
        try:
            moment = datetime(int(key[:4]), int(key[5:7]), int(key[8:10]), int(key[11:13]))
        except ValueError:
            raise NotCanonical(key) from None
        bucket = _hour_buckets[key] = to_micros(moment)
    return bucket


def timed_pattern(hours: bytes) -> re.Pattern[bytes]:
    """Canonical rows whose hour key matches HOURS, capturing customer, hour key, minute, second, fraction."""
    pattern = _timed_patterns.get(hours)
    if pattern is None:
        exact_time = rb"(" + hours + rb"):([0-5]\d):([0-5]\d)(?:\.(\d{1,6}+))?+"
        pattern = _timed_patterns[hours] = re.compile(_ROW_START + exact_time + _UTC_END + rb"(?=\n)")
    return pattern


def row_time(key: bytes, minute: bytes, second: bytes, fraction: bytes) -> int:
    """The instant of a canonical row from the parts timed_pattern captures."""
    return hour_bucket(key) + (int(minute) * 60 + int(second)) * 1_000_000 + int(fraction.ljust(6, b"0") or 0)


@lru_cache(maxsize=64)
def row_pattern(rows: int, suffix: bytes | None = None, customer: bytes | None = None) -> re.Pattern[bytes]:
    """ROWS consecutive canonical rows, capturing (customer, hour key) of each, or only the hour of CUSTOMER's.

    SUFFIX, when known, is the one UTC suffix every row ends with: a literal is
    cheaper than the alternatives.  CUSTOMER makes the scan cheaper still: other
    customers' rows are checked, and only their hour key is captured, so that an
    impossible date (February 30) is caught in their rows too.
    """
    end = _UTC_END if suffix is None else re.escape(suffix) + rb"\r?"
    stamp = _MINUTES + end
    if customer is None:
        row = _ROW_START + rb"(" + _DATE_HOUR + rb")" + stamp
    else:
        mine = re.escape(customer) + rb"," + _FIELD + rb"," + _FIELD + rb",(" + _DATE_HOUR + rb")" + stamp
        theirs = _CUSTOMER + rb"," + _FIELD + rb"," + _FIELD + rb",(" + _DATE_HOUR + rb")" + stamp
        row = rb"\n(?:" + mine + rb"|" + theirs + rb")"
    return re.compile(row * rows + rb"(?=\n)")


def utc_suffix(line: bytes) -> bytes:
    """The UTC suffix LINE ends with ('' for none)."""
    line = line.removesuffix(b"\r")
    return next((suffix for suffix in UTC_SUFFIXES if line.endswith(suffix)), b"")


def shared_suffix(data: bytes, lo: int, hi: int) -> bytes | None:
    """The UTC suffix of the first and the last line of DATA[LO:HI], if they agree."""
    first = utc_suffix(data[lo + 1 : data.find(b"\n", lo + 1, hi)])
    last = utc_suffix(data[data.rfind(b"\n", lo, hi - 1) + 1 : hi - 1])
    return first if first == last else None


def match_rows(
    data: bytes, lo: int, hi: int, lines: int, suffix: bytes | None, customer: bytes | None
) -> tuple[Counter[tuple[bytes, bytes]], int]:
    """Rows per (customer, hour key) among the canonical rows of DATA[LO:HI], first-seen order, and their number."""
    # The first lines % GROUP lines go one by one, the rest four at a time: the
    # groups can then only account for all their lines if every line is canonical.
    split = lo
    for _ in range(lines % GROUP):
        split = data.find(b"\n", split + 1)
    matches = row_pattern(1, suffix, customer).findall(data, lo, split + 1)
    groups = Counter(row_pattern(GROUP, suffix, customer).findall(data, split, hi))
    rows = len(matches) + GROUP * groups.total()
    if customer is None:
        pairs = Counter(matches)
        flat = iter(chain.from_iterable(groups))
        weights = chain.from_iterable(repeat(n, GROUP) for n in groups.values())
        for pair, n in zip(zip(flat, flat, strict=True), weights, strict=True):  # each group, row by row
            pairs[pair] += n
    else:
        mine: Counter[bytes] = Counter()
        for group, n in chain(((match, 1) for match in matches), groups.items()):
            for hour, other in zip(group[::2], group[1::2], strict=True):
                if hour:
                    mine[hour] += n
                else:
                    hour_bucket(other)  # raises NotCanonical for a date that does not exist
        pairs = Counter({(customer, hour): n for hour, n in mine.items()})
    return pairs, rows


def canonical_pairs(
    data: bytes, lo: int, hi: int, lines: int, customer: bytes | None
) -> tuple[Counter[tuple[bytes, bytes]], int]:
    """match_rows with the block's own UTC suffix if it has one, else with any."""
    suffix = shared_suffix(data, lo, hi)
    pairs, rows = match_rows(data, lo, hi, lines, suffix, customer)
    if rows != lines and suffix is not None:
        pairs, rows = match_rows(data, lo, hi, lines, None, customer)
    return pairs, rows


def fast_customer(customer: str | None) -> bytes | None:
    """CUSTOMER as the fast path can match it, or None to match every customer."""
    if customer is None or not CUSTOMER_NAME.fullmatch(customer.encode("utf-8")):
        return None  # no canonical row can be this customer's: count all, keep none
    return customer.encode("ascii")


def count_canonical(data: bytes, lo: int, hi: int, pairs: Counter[tuple[bytes, bytes]], window: Window) -> Counts:
    """Count PAIRS, from the canonical rows of DATA[LO:HI]: whole hours from keys, edge hours row by row."""
    counts: Counts = {}
    edges = []
    for (customer, key), n in pairs.items():
        bucket = hour_bucket(key)
        if bucket + HOUR <= window.start or bucket >= window.end:
            continue
        if bucket < window.start or bucket + HOUR > window.end:
            edges.append(key)
            continue
        name = customer.decode("ascii")
        if window.customer in (None, name):
            counts[(bucket, name)] = n
    if edges:
        # An hour cut by START or END: only these rows need their exact time.
        hours = b"|".join(re.escape(key) for key in dict.fromkeys(edges))
        for customer, key, minute, second, fraction in timed_pattern(hours).findall(data, lo, hi):
            moment = row_time(key, minute, second, fraction)
            name = customer.decode("ascii")
            if window.start <= moment < window.end and window.customer in (None, name):
                bucket = hour_bucket(key)
                counts[(bucket, name)] = counts.get((bucket, name), 0) + 1
    return counts


def count_segment(
    data: bytes, lo: int, hi: int, first_line: int, window: Window, skipped: Skipped, lines: int = -1
) -> Counts:
    """Count DATA[LO:HI], from a newline to a newline, of LINES lines: fast where it can prove the shape."""
    if lines < 0:
        lines = data.count(b"\n", lo + 1, hi)
    try:
        pairs, canonical = canonical_pairs(data, lo, hi, lines, fast_customer(window.customer))
        if canonical == lines:
            return count_canonical(data, lo, hi, pairs, window)
    except NotCanonical:
        canonical = lines  # a date that does not exist: cut the segment to find its row
    middle = split_point(data, lo, hi)
    if hi - lo <= SMALL_SEGMENT or canonical < lines // 2 or middle < 0:
        return count_events(block_events(Block(data, lo, hi, first_line, lines), skipped), window)
    counts = count_segment(data, lo, middle + 1, first_line, window, skipped)
    later = count_segment(data, middle, hi, first_line + data.count(b"\n", lo + 1, middle + 1), window, skipped)
    merge_counts(counts, later)
    return counts


def split_point(data: bytes, lo: int, hi: int) -> int:
    """A newline strictly inside DATA[LO:HI], near its middle; -1 if it is one line."""
    half = (lo + hi) // 2
    middle = data.rfind(b"\n", lo + 1, half)
    return middle if middle >= 0 else data.find(b"\n", half, hi - 1)


def count_block(block: Block, window: Window, skipped: Skipped, fast: bool = True) -> Counts:
    """Count one block, by the fast path or the reference."""
    if fast:
        return count_segment(block.data, block.lo, block.hi, block.first_line, window, skipped, block.lines)
    return count_events(block_events(block, skipped), window)


# ---------------------------------------------------------------------------
# Whole files: one stream block by block, or a regular file cut into parts at
# newlines and counted by worker processes, merged back in file order.

PART_SIZE = 1 << 26
PARALLEL_MIN = 8 << 20  # below this, starting workers costs more than it saves
PROGRESS_MIN = 256 << 20


@dataclass
class Tally:
    """What a pass over a file, or a part of one, found."""

    counts: Counts = field(default_factory=dict)
    skipped: Skipped = field(default_factory=Skipped)
    lines: int = 0  # lines read, to number the lines of the part after this one

    def add(self, later: Tally) -> None:
        """Append LATER, the tally of the part of the file right after ours."""
        merge_counts(self.counts, later.counts)
        shifted = Skipped(later.skipped.count, [(line + self.lines, why) for line, why in later.skipped.first])
        self.skipped.extend(shifted)
        self.lines += later.lines


def count_stream(
    stream: BinaryIO,
    window: Window,
    fast: bool = True,
    strict: bool = False,
    limit: int = -1,
    at_start: bool = True,
    progress: Callable[[], None] | None = None,
) -> Tally:
    """Count a stream (or its next LIMIT bytes) block by block: memory is one block plus the counts."""
    tally = Tally()
    with gc_paused():
        for block in read_blocks(stream, limit, at_start):
            merge_counts(tally.counts, count_block(block, window, tally.skipped, fast))
            tally.lines = block.first_line + block.lines - 1
            if progress:
                progress()
            if strict and tally.skipped.count:
                break  # the caller fails on the first bad row: no need to read on
    return tally


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cycle collector: counting makes millions of tuples but no cycles."""
    # Left on, it walks the young tuples every 700 allocations: about 20% of the time.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def count_range(path: str, lo: int, hi: int, window: Window, fast: bool = True) -> Tally:
    """A worker's share: count bytes [LO, HI) of PATH, which start and end at line boundaries."""
    with open(path, "rb") as stream:
        stream.seek(lo)
        return count_stream(stream, window, fast, limit=hi - lo, at_start=lo == 0)


def line_bounds(path: str, size: int, parts: int) -> list[int]:
    """Offsets that cut PATH into about PARTS pieces, each starting at the beginning of a line."""
    bounds = [0]
    with open(path, "rb") as stream:
        for k in range(1, parts):
            at = max(size * k // parts, bounds[-1])
            stream.seek(at)
            while (chunk := stream.read(1 << 16)) and b"\n" not in chunk:
                at += len(chunk)
            at += chunk.find(b"\n") + 1
            if not chunk or at >= size:
                break
            bounds.append(at)
    return [*bounds, size]


def count_parallel(path: str, size: int, window: Window, jobs: int, strict: bool, progress: Progress) -> Tally:
    """Count PATH in parts on JOBS worker processes, merging their tallies in file order."""
    from concurrent.futures import ProcessPoolExecutor
    from itertools import repeat
    from multiprocessing import get_context

    bounds = line_bounds(path, size, max(jobs, -(-size // PART_SIZE)))
    # fork starts a worker in milliseconds; macOS lacks a safe fork, so it spawns.
    context = get_context("spawn" if sys.platform == "darwin" else "fork")
    tally = Tally()
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        parts = pool.map(count_range, repeat(path), bounds[:-1], bounds[1:], repeat(window))
        for end, part in zip(bounds[1:], parts, strict=True):
            tally.add(part)
            progress(end)
            if strict and tally.skipped.count:
                pool.shutdown(cancel_futures=True)
                break
    return tally


class Progress:
    """Bytes done and rate on a terminal's stderr, for big files only; silent otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.shown = False
        self.enabled = total > PROGRESS_MIN and sys.stderr.isatty()
        self.started = self.last = time.monotonic()

    def __call__(self, done: int) -> None:
        """Report DONE bytes of the total, at most a few times a second."""
        now = time.monotonic()
        if self.enabled and now - self.last > 0.25:
            rate = done / (now - self.started) / 2**20
            sys.stderr.write(f"\rtotaler: {done >> 20} of {self.total >> 20} MiB read, {rate:.0f} MiB/s ")
            sys.stderr.flush()
            self.shown, self.last = True, now

    def close(self) -> None:
        """Clear the progress line."""
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def default_jobs() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def count_file(path: str, window: Window, strict: bool = False, jobs: int = 0, fast: bool = True) -> Tally:
    """Count PATH ('-' for standard input): in parallel when it is a big plain file, else as a stream."""
    jobs = jobs or default_jobs()
    stream = open_input(path)
    try:
        raw = stream if path == "-" else getattr(stream, "fileobj", stream)
        size = os.fstat(raw.fileno()).st_size if path != "-" else 0
        progress = Progress(size)
        if stream is raw and jobs > 1 and size >= PARALLEL_MIN and fast:
            tally = count_parallel(path, size, window, jobs, strict, progress)
        else:
            report = (lambda: progress(raw.tell())) if progress.enabled else None
            tally = count_stream(stream, window, fast, strict, progress=report)
        progress.close()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise InputError(f"{path}: cannot read ({error})") from None
    finally:
        if path != "-":
            stream.close()
    if strict and tally.skipped.count:
        line, reason = tally.skipped.first[0]
        raise InputError(f"{path}: line {line}: {reason}")
    return tally


# ---------------------------------------------------------------------------
# Rendering: the reference program's text, and its JSON.


def bucket_starts(window: Window) -> range:
    """Every bucket from the hour containing start to the last hour beginning before end."""
    return range(hour_floor(window.start), window.end, HOUR)


def by_bucket(counts: Counts, window: Window) -> list[tuple[int, list[tuple[str, int]]]]:
    """The answer: each bucket in time order with its (customer, count) pairs."""
    table: dict[int, list[tuple[str, int]]] = {b: [] for b in bucket_starts(window)}
    for (bucket, customer), n in counts.items():
        table[bucket].append((customer, n))
    if window.customer is not None:
        for bucket, rows in table.items():
            table[bucket] = rows or [(window.customer, 0)]
    return list(table.items())


def render_text(path: str, window: Window, counts: Counts) -> str:
    """The reference's text report."""
    lines = [f"Input file: {path}", f"Start time: {format_utc(window.start)}", f"End time: {format_utc(window.end)}"]
    if window.customer is not None:
        lines.append(f"Customer ID: {window.customer}")
    for bucket, rows in by_bucket(counts, window):
        lines += ["", f"Timebucket: {format_bucket(bucket)}"]
        lines += [f"Customer ID: {customer} Calls: {n}" for customer, n in rows]
    return "\n".join(lines) + "\n"


def render_json(window: Window, counts: Counts) -> str:
    """The reference's JSON: buckets in time order, customers in first-seen order."""
    document = {format_bucket(bucket): dict(rows) for bucket, rows in by_bucket(counts, window)}
    return json.dumps(document, indent=2) + "\n"


# ---------------------------------------------------------------------------
# The command line.

EXAMPLES = """examples:
  totaler events.csv 2021-03-01T04:00:00Z 2021-03-01T06:30:00Z
  totaler events.csv 2021-03-01T04:00:00Z 2021-03-01T06:30:00Z 30330c9c4e7173ba9474c46ee5191570 --json
  gzip -c events.csv | totaler - '2021-03-01 04:00:00 UTC' 2021-03-01T09:30:00+05:30

Buckets are UTC hours; an event counts when START <= time < END. Exit status:
0 answered, 1 the input could not be read (or --strict met a bad row), 2 bad arguments."""


class UsageError(Exception):
    """A bad command line (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse, but every error is one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Raise instead of printing usage."""
        raise UsageError(f"{message} (see --help)")


def build_parser() -> Parser:
    """The command line's arguments."""
    parser = Parser(
        prog="totaler",
        description="Count each customer's events per UTC hour in [START, END) of a CSV log "
        "(customer_id,event_type,transaction_id,timestamp).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="the CSV log, gzip or plain; '-' reads standard input")
    parser.add_argument("start", metavar="START", help="window start, ISO 8601 (no offset means UTC)")
    parser.add_argument("end", metavar="END", help="window end, exclusive")
    parser.add_argument("customer", metavar="CUSTOMER_ID", nargs="?", help="count only this customer")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--strict", action="store_true", help="fail on the first malformed row")
    parser.add_argument("--max-hours", type=int, default=100_000, metavar="N", help="longest window allowed")
    parser.add_argument("--jobs", type=int, default=0, metavar="N", help="worker processes (default: one per CPU)")
    parser.add_argument("--version", action="version", version=f"totaler {__version__}")
    return parser


def parse_window(start: str, end: str, customer: str | None, max_hours: int) -> Window:
    """Check and convert the window arguments; raise UsageError naming the bad one."""
    bounds = []
    for name, text in (("START", start), ("END", end)):
        try:
            bounds.append(parse_bound(text))
        except BadTimestamp as error:
            raise UsageError(f"{name} {error}") from None
    window = Window(bounds[0], bounds[1], customer)
    if window.start >= window.end:
        raise UsageError(f"START {start!r} is not before END {end!r}")
    if window.end - window.start > max_hours * HOUR:
        raise UsageError(f"window {start!r} to {end!r} is longer than --max-hours {max_hours}")
    return window


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(argv)
        window = parse_window(args.start, args.end, args.customer, args.max_hours)
        tally = count_file(args.file, window, args.strict, args.jobs)
    except UsageError as error:
        print(f"totaler: error: {error}", file=sys.stderr)
        return 2
    except InputError as error:
        print(f"totaler: error: {error}", file=sys.stderr)
        return 1
    if tally.skipped.count:
        print(f"totaler: warning: {tally.skipped.summary()}", file=sys.stderr)
    output = render_json(window, tally.counts) if args.json else render_text(args.file, window, tally.counts)
    sys.stdout.buffer.write(output.encode("utf-8"))
    sys.stdout.flush()
    return 0


def run() -> None:
    """The console script: main() with a quiet exit on a closed pipe or Ctrl-C."""
    try:
        status = main()
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    except KeyboardInterrupt:
        status = 130
    sys.exit(status)


if __name__ == "__main__":
    run()
