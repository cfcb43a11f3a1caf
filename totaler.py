"""totaler: how many events did each customer send in each UTC hour of [START, END)?

Reads a header-less CSV log, customer_id,event_type,transaction_id,timestamp, and
prints the count per one-hour bucket, as text or JSON, or serves the same answers
over HTTP.  One file, read top to bottom: time, reading rows, the counting core
(count_events), the fast path, whole files, rendering, serving, the command line.

The data flow:
  file -> read_blocks: blocks of whole lines (a line over MAX_LINE becomes one bad row)
       -> count_block: the fast path proves a block's shape with regular expressions,
          else parse_row + count_events, the plain path; both give the same counts
       -> Tally per stream or per worker's part, merged in file order -> render_text/json
  --serve reads the same blocks into an Index once and answers /counts from it.

    python totaler.py events.csv 2021-03-01T04:00:00Z 2021-03-01T06:30:00Z [CUSTOMER_ID] [--json]
    python totaler.py events.csv --serve --port 8000
"""

from __future__ import annotations

import sys

if sys.version_info < (3, 11):  # noqa: UP036 - before an import that needs 3.11 fails with a traceback
    found = ".".join(map(str, sys.version_info[:3]))
    sys.stderr.write(f"totaler: error: needs Python 3.11 or newer; this is Python {found} ({sys.executable})\n")
    sys.exit(2)

import argparse
import bz2
import csv
import gc
import gzip
import json
import lzma
import os
import re
import signal
import socket
import threading
import time
import warnings
import zlib
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain, groupby, islice, repeat
from json.encoder import encode_basestring_ascii as quote
from operator import add, le, methodcaller, mul
from typing import BinaryIO, TypeVar
from urllib.parse import parse_qs, urlsplit

__version__ = "1.0.0"

# ---------------------------------------------------------------------------
# Time: every instant is an int, microseconds since the Unix epoch, in UTC.
# Integers compare exactly and floor to the hour with one modulo.

MICROSECOND = timedelta(microseconds=1)
HOUR = 3_600_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What goes to dateutil: an ISO date, maybe a time, maybe one zone name or offset.
# Anything looser (dateutil reads '2021-03-01 05:30' after a lost '+' as 05:30 local) is refused.
DATEUTIL_SHAPE = re.compile(
    r"(?P<local>\d{4}-\d{2}-\d{2}"  # the date, year first
    r"(?:[ T]\d{1,2}(?::\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?)?)"  # a time, maybe
    r"(?:\s*(?:(?P<name>[A-Za-z]{1,5})|(?P<offset>[+-]\d{2}(?::?\d{2})?)))?"  # a zone name or an offset, maybe
)
ZONE_WITH_OFFSET = re.compile(r"(?:UTC|GMT|UT|Z)\s*[+-]\d", re.IGNORECASE)
UTC_NAMES = {"UTC", "GMT", "UT", "Z"}
# The instants a datetime can hold: a bound outside them cannot even be printed.
FIRST_INSTANT = -62_135_596_800_000_000  # 0001-01-01 00:00:00 UTC
LAST_INSTANT = 253_402_300_799_999_999  # 9999-12-31 23:59:59.999999 UTC


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


def format_seconds(moment: datetime) -> str:
    """2021-03-01 04:00:00; years below 1000 zero-padded, which strftime's %Y does not do on Linux."""
    return f"{moment.year:04d}-{moment:%m-%d %H:%M:%S}"


@lru_cache(maxsize=1 << 16)
def format_bucket(micros: int) -> str:
    """A bucket as the reference printed it: 2021-03-01 04:00:00 +0000."""
    return format_seconds(from_micros(micros)) + " +0000"


def format_utc(micros: int) -> str:
    """An instant as the reference printed it: 2021-03-01 04:00:00 UTC (fraction if any)."""
    moment = from_micros(micros)
    text = format_seconds(moment)
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
    """A window bound: ISO 8601, or a form this tool prints; never a guess; within years 1 to 9999 in UTC."""
    micros = parse_instant(text.strip())
    if not FIRST_INSTANT <= micros <= LAST_INSTANT:
        raise BadTimestamp(f"{text!r} falls outside the years 1 to 9999 in UTC")
    return micros


def parse_instant(text: str) -> int:
    """parse_bound without the range check."""
    try:
        return to_micros(datetime.fromisoformat(text))
    except ValueError:
        pass
    # dateutil reads '... UTC' and '... +0000' but also guesses at '03/01/21' or
    # '4pm': insist on an ISO date first, so year, month and day are never guessed.
    if ZONE_WITH_OFFSET.search(text):  # 'UTC+3' means UTC-3 to POSIX: refuse to guess
        raise BadTimestamp(f"{text!r} mixes a zone name and an offset; give one offset like +03:00")
    shape = DATEUTIL_SHAPE.fullmatch(text)
    if not shape:
        raise BadTimestamp(f"{text!r} is not an ISO 8601 timestamp (e.g. 2021-03-01T04:00:00Z)")
    name = shape["name"]
    if name and name.upper() in ("AM", "PM"):
        raise BadTimestamp(f"{text!r} ends in {name}; give a 24-hour time")
    if name and name.upper() not in UTC_NAMES:  # dateutil would ignore a word ('Sat') or guess a zone ('EST')
        raise BadTimestamp(f"{text!r} ends in {name!r}: only UTC, Z or an offset like -05:00 may follow the time")
    try:  # the forms this tool prints itself, '2021-03-01 04:00:00 UTC' and '... +0000', need no dateutil
        return to_micros(datetime.fromisoformat(shape["local"] + (shape["offset"] or "+00:00")))
    except ValueError:
        pass
    return parse_with_dateutil(text)


def parse_with_dateutil(text: str) -> int:
    """What fromisoformat does not read of DATEUTIL_SHAPE (an hour of one digit, say), read by dateutil."""
    try:
        from dateutil import parser
    except ImportError:
        raise BadTimestamp(f"{text!r} needs python-dateutil to be read (pip install python-dateutil)") from None
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

    def shifted(self, lines: int) -> Skipped:
        """The same rows, numbered LINES lines further down (a part's rows, as lines of the file)."""
        return Skipped(self.count, [(line + lines, reason) for line, reason in self.first])

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
    fields = csv_fields(text.removesuffix("\r"))
    if len(fields) != 4:
        raise Malformed(f"{len(fields)} fields, expected 4")
    customer = fields[0].strip()
    if not customer:
        raise Malformed("empty customer_id")
    try:
        return customer, parse_event_time(fields[3].strip())
    except BadTimestamp as error:
        raise Malformed(str(error)) from None


# Spaces between a quoted field's closing quote and the comma after it: `"abc" ,INGEST`.
SPACE_AFTER_QUOTE = re.compile(r'((?:^|,) *"(?:[^"]|"")*")[ \t]+(?=,|$)')


def csv_fields(text: str) -> list[str]:
    """The fields of one CSV line, spaces around them allowed, quoted or not."""
    try:
        return next(csv.reader((text,), strict=True, skipinitialspace=True))
    except csv.Error as error:
        loose = SPACE_AFTER_QUOTE.sub(r"\1", text)
        if loose == text:
            raise Malformed(f"bad CSV: {error}") from None
    return csv_fields(loose)


def is_header(line: bytes) -> bool:
    """Whether LINE is the optional header row."""
    return [f.strip().strip('"').lower() for f in line.decode("utf-8", "replace").split(",")] == HEADER


# What a compressed file starts with, and how to read it; zstd has no reader in the standard library.
DECOMPRESSORS: dict[bytes, Callable[[BinaryIO], BinaryIO]] = {
    b"\x1f\x8b": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),  # type: ignore[dict-item]
    b"BZh": lambda raw: bz2.BZ2File(raw, "rb"),  # type: ignore[dict-item]
    b"\xfd7zXZ\x00": lambda raw: lzma.LZMAFile(raw, "rb"),  # type: ignore[dict-item]  # noqa: SIM115
}
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
COMPRESSED = (gzip.GzipFile, bz2.BZ2File, lzma.LZMAFile)
# What a damaged file raises while being read: gzip, zlib, bz2 (an OSError) and lzma each their own.
READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)


def display(path: str) -> str:
    """PATH as it can be printed: bytes that are not UTF-8 escaped (a file name can hold any bytes)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@contextmanager
def opened(path: str) -> Iterator[BinaryIO]:
    """PATH open for reading, closed after; an error while reading it becomes an InputError naming it."""
    stream = open_input(path)
    try:
        yield stream
    except READ_ERRORS as error:
        raise InputError(f"{display(path)}: cannot read ({error})") from None
    finally:
        if path != "-":
            stream.close()


def open_input(path: str) -> BinaryIO:
    """A binary stream of PATH ('-' is standard input), decompressed if its first bytes say gzip, bzip2 or xz."""
    if path == "-":
        if sys.stdin is None:  # started with standard input closed (<&-)
            raise InputError("-: standard input is closed")
        raw = sys.stdin.buffer
    else:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - the caller closes it
        except IsADirectoryError:
            raise InputError(f"{display(path)}: is a directory") from None
        except FileNotFoundError:
            raise InputError(f"{display(path)}: no such file") from None
        except OSError as error:
            raise InputError(f"{display(path)}: cannot read ({error.strerror})") from None
    try:
        start = raw.peek(8)
    except OSError as error:
        raise InputError(f"{display(path)}: cannot read ({error.strerror})") from None
    if start.startswith(ZSTD_MAGIC):
        raise InputError(f"{display(path)}: zstd-compressed; decompress it first (zstd -dc FILE | totaler - ...)")
    for magic, decompress in DECOMPRESSORS.items():
        if start.startswith(magic):
            return decompress(raw)
    return raw


@dataclass
class Block:
    """Whole lines of the input: DATA[LO:HI] runs from the newline before its first line to its last newline."""

    data: bytes
    lo: int
    hi: int
    lines: int | None = None  # how many lines it stands for, when known without counting
    too_long: int = 0  # > 0: one line of this many bytes, longer than MAX_LINE, whose bytes were not kept


NO_ROW = b"\n\n"  # a block of one line that holds no row: the header, or a line too long to keep


def read_chunks(stream: BinaryIO, limit: int = -1) -> Iterator[bytes]:
    """STREAM's bytes (or only its next LIMIT bytes, if LIMIT >= 0) in reads of BLOCK_SIZE."""
    while limit:
        chunk = stream.read(BLOCK_SIZE if limit < 0 else min(BLOCK_SIZE, limit))
        if not chunk:
            return
        if limit > 0:
            limit -= len(chunk)
        yield chunk


def read_blocks(stream: BinaryIO, limit: int = -1, at_start: bool = True) -> Iterator[Block]:
    """Cut STREAM (or its next LIMIT bytes) into blocks of whole lines; AT_START, drop a BOM and a header on line 1.

    Every line longer than MAX_LINE, wherever the reads fall, becomes a block of its
    own that keeps none of its bytes: memory is one read plus one line.
    """
    head, over = b"", 0  # the line cut by the end of the last read: its bytes, or its length once too long
    first = at_start  # line 1 is still to come
    for number, chunk in enumerate(read_chunks(stream, limit)):
        if at_start and number == 0:
            chunk = chunk.removeprefix(BOM)  # BLOCK_SIZE is never below len(BOM)
        newline = chunk.find(b"\n")
        if newline < 0:
            head, over = grown(head, over, chunk)
            continue
        yield line_block(*grown(head, over, chunk[:newline]), first)
        first = False
        last = chunk.rfind(b"\n")
        if last > newline:
            yield from short_line_blocks(chunk, newline, last + 1)
        head, over = grown(b"", 0, chunk[last + 1 :])
    if head or over:
        yield line_block(head, over, first)


def grown(head: bytes, over: int, piece: bytes) -> tuple[bytes, int]:
    """The line HEAD (or OVER bytes long, too long to keep) continued by PIECE."""
    if over or len(head) + len(piece) > MAX_LINE:
        return b"", (over or len(head)) + len(piece)
    return head + piece, 0


def line_block(line: bytes, over: int, first: bool) -> Block:
    """A block of one line: LINE, or a line of OVER bytes too long to keep; FIRST, line 1, which may be the header."""
    if over:
        return Block(NO_ROW, 0, 2, 1, too_long=over)
    if first and is_header(line.removesuffix(b"\r")):
        return Block(NO_ROW, 0, 2, 1)  # no row, but a line, so that the lines after it are numbered right
    return Block(b"\n" + line + b"\n", 0, len(line) + 2, 1)


def short_line_blocks(data: bytes, lo: int, hi: int) -> Iterator[Block]:
    """DATA[LO:HI], newline to newline, as blocks of lines of at most MAX_LINE bytes, each longer line on its own."""
    # A line longer than MAX_LINE holds a whole stride of STEP bytes without a newline,
    # so only such a stride needs a closer look: four finds per 2 MiB read.
    step = (MAX_LINE + 1) // 2
    start = probe = lo + 1
    while probe < hi:
        if data.find(b"\n", probe, probe + step) >= 0:
            probe += step
            continue
        before, after = data.rfind(b"\n", lo, probe), data.find(b"\n", probe, hi)
        if after - before - 1 > MAX_LINE:
            if before >= start:
                yield Block(data, start - 1, before + 1)
            yield Block(NO_ROW, 0, 2, 1, too_long=after - before - 1)
            start = after + 1
        probe = after + 1
    if hi > start:
        yield Block(data, start - 1, hi)


def block_lines(block: Block) -> int:
    """How many lines BLOCK stands for."""
    return block.data.count(b"\n", block.lo + 1, block.hi) if block.lines is None else block.lines


def block_events(block: Block, first_line: int, skipped: Skipped) -> Iterator[tuple[str, int]]:
    """The reference path: every countable (customer, time) of BLOCK, whose first line is FIRST_LINE, in file order."""
    if block.too_long:
        skipped.add(first_line, f"line of {block.too_long:,} bytes, longer than any row ({MAX_LINE:,} bytes at most)")
        return
    lines = block.data[block.lo : block.hi].split(b"\n")[1:-1]
    for number, line in enumerate(lines, first_line):
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
T = TypeVar("T")


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
# timestamp like 2021-03-01 04:05:06.789+00.  Regular expressions prove a whole
# block has that shape and hand back (customer, hour) keys in file order, so C
# does the per-row work: by runs of rows that share customer and hour (one match
# a run) where the log comes in runs, else four rows a match.  A block with any
# other row is cut in two at a newline until the odd rows sit in small pieces
# that go through parse_row, the reference.  The fast path counts exactly what the
# reference counts, in the same order (tests/test_fast_path.py proves it on
# generated messy files).

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


class NotCanonical(Exception):
    """A row matched the fast pattern but is not a valid instant (say, February 30)."""


@lru_cache(maxsize=1 << 16)
def hour_bucket(key: bytes) -> int:
    """The bucket of an hour key like b'2021-03-01 04' (cached: a log has few hours)."""
    try:
        return to_micros(datetime(int(key[:4]), int(key[5:7]), int(key[8:10]), int(key[11:13])))
    except ValueError:
        raise NotCanonical(key) from None


@lru_cache(maxsize=64)
def timed_pattern(hours: bytes) -> re.Pattern[bytes]:
    """Canonical rows whose hour key matches HOURS, capturing customer, hour key, minute, second, fraction."""
    exact_time = rb"(" + hours + rb"):([0-5]\d):([0-5]\d)(?:\.(\d{1,6}+))?+"
    return re.compile(_ROW_START + exact_time + _UTC_END + rb"(?=\n)")


def row_columns(rows: list[tuple[bytes, ...]]) -> tuple[list[str], list[int], list[int]]:
    """Customers, buckets and offsets in the hour of timed_pattern's ROWS: each column a map that C runs."""
    if not rows:
        return [], [], []
    customers, keys, minutes, seconds, fractions = zip(*rows, strict=True)
    micros = map(int, map(methodcaller("ljust", 6, b"0"), fractions))
    offsets = map(add, map(mul, map(int, minutes), repeat(60_000_000)), map(mul, map(int, seconds), repeat(10**6)))
    return list(map(bytes.decode, customers)), list(map(hour_bucket, keys)), list(map(add, offsets, micros))


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


RUN_PROBE = 1 << 14  # bytes sampled to tell long runs from short ones
LONG_RUN = 4  # rows: from this average on, runs beat groups of four


@lru_cache(maxsize=1)
def run_pattern() -> re.Pattern[bytes]:
    """A run of canonical rows that share customer and hour: captures the run, its customer and its hour key."""
    # Most logs come in runs (events.csv averages 36 rows of one customer in one
    # hour): the backreferences check the rows after the first without making a
    # string for any of them, so a run costs one match and one tuple.
    first = _ROW_START + rb"(" + _DATE_HOUR + rb")" + _MINUTES + _UTC_END
    same = rb"\n\2," + _FIELD + rb"," + _FIELD + rb",\3" + _MINUTES + _UTC_END
    return re.compile(rb"(" + first + rb"(?:" + same + rb")*+)(?=\n)")


def long_runs(data: bytes, lo: int, hi: int) -> bool:
    """Whether the first rows of DATA[LO:HI] come in runs long enough for run_pairs."""
    end = data.rfind(b"\n", lo + 1, lo + RUN_PROBE) + 1 or hi
    runs = run_pattern().findall(data, lo, end)
    return bool(runs) and sum(run.count(b"\n") for run, _, _ in runs) >= LONG_RUN * len(runs)


def run_pairs(data: bytes, lo: int, hi: int) -> tuple[dict[tuple[bytes, bytes], int] | None, int]:
    """Rows per (customer, hour key) of DATA[LO:HI], first-seen order, and its lines; None unless all canonical."""
    runs = run_pattern().findall(data, lo, hi)
    # The runs cover every byte but the last newline exactly when every line is canonical.
    if sum(len(run) for run, _, _ in runs) != hi - lo - 1:
        return None, 0
    pairs: dict[tuple[bytes, bytes], int] = {}
    texts, customers, hours = zip(*runs, strict=True) if runs else ((), (), ())
    for pair, rows in zip(zip(customers, hours, strict=True), map(bytes.count, texts, repeat(b"\n")), strict=True):
        pairs[pair] = pairs.get(pair, 0) + rows
    return pairs, sum(pairs.values())


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
    if customer is None or not CUSTOMER_NAME.fullmatch(customer.encode("utf-8", "surrogateescape")):
        return None  # no canonical row can be this customer's: count all, keep none
    return customer.encode("ascii")


def count_canonical(data: bytes, lo: int, hi: int, pairs: dict[tuple[bytes, bytes], int], window: Window) -> Counts:
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
            counts[(bucket, name)] = counts.get((bucket, name), 0) + n  # b"... 04" and b"...T04" share a bucket
    if edges:
        # An hour cut by START or END: only these rows need their exact time.
        hours = b"|".join(re.escape(key) for key in dict.fromkeys(edges))
        names, buckets, offsets = row_columns(timed_pattern(hours).findall(data, lo, hi))
        for name, bucket, offset in zip(names, buckets, offsets, strict=True):
            if window.start <= bucket + offset < window.end and window.customer in (None, name):
                counts[(bucket, name)] = counts.get((bucket, name), 0) + 1
    return counts


def count_segment(
    data: bytes, lo: int, hi: int, first_line: int, window: Window, skipped: Skipped, lines: int | None = None
) -> tuple[Counts, int]:
    """Count DATA[LO:HI], from a newline to a newline: fast where it can prove the shape.  Return it and its lines."""
    customer = fast_customer(window.customer)
    try:
        if long_runs(data, lo, hi):
            pairs, lines_seen = run_pairs(data, lo, hi)
            if pairs is not None:
                return count_canonical(data, lo, hi, pairs, window), lines_seen
        if lines is None:
            lines = data.count(b"\n", lo + 1, hi)
        pairs, canonical = canonical_pairs(data, lo, hi, lines, customer)
        if canonical == lines:
            return count_canonical(data, lo, hi, pairs, window), lines
    except NotCanonical:
        canonical = None  # a date that does not exist: cut the segment to find its row
    if lines is None:
        lines = data.count(b"\n", lo + 1, hi)
    middle = split_point(data, lo, hi)
    if hi - lo <= SMALL_SEGMENT or (canonical is not None and canonical < lines // 2) or middle < 0:
        return count_events(block_events(Block(data, lo, hi), first_line, skipped), window), lines
    counts, before = count_segment(data, lo, middle + 1, first_line, window, skipped)
    later, after = count_segment(data, middle, hi, first_line + before, window, skipped)
    merge_counts(counts, later)
    return counts, before + after


def split_point(data: bytes, lo: int, hi: int) -> int:
    """A newline strictly inside DATA[LO:HI], near its middle; -1 if it is one line."""
    half = (lo + hi) // 2
    middle = data.rfind(b"\n", lo + 1, half)
    return middle if middle >= 0 else data.find(b"\n", half, hi - 1)


def count_block(
    block: Block, first_line: int, window: Window, skipped: Skipped, fast: bool = True
) -> tuple[Counts, int]:
    """Count one block, whose first line is FIRST_LINE, by the fast path or the reference; return it and its lines."""
    if fast and not block.too_long:
        return count_segment(block.data, block.lo, block.hi, first_line, window, skipped, block.lines)
    return count_events(block_events(block, first_line, skipped), window), block_lines(block)


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
        self.skipped.extend(later.skipped.shifted(self.lines))
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
            counts, lines = count_block(block, tally.lines + 1, window, tally.skipped, fast)
            merge_counts(tally.counts, counts)
            tally.lines += lines
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


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def quiet_worker() -> None:
    """Start a worker: Ctrl-C is its parent's to handle; SIGTERM, from the parent, ends it on the spot."""
    # SIG_DFL, not the parent's Python handler, which runs only between bytecodes: a
    # SIGTERM landing just before the worker blocked on the pool's queue was lost, and
    # Pool.terminate() waited for the worker forever (4 times in 40 runs here).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def count_part(part: tuple[str, int, int, Window]) -> Tally:
    """count_range for Pool.imap, which passes one argument."""
    return count_range(*part)


def in_parts(path: str, size: int, jobs: int, work: Callable[[tuple], T], *args: object) -> Iterator[tuple[int, T]]:
    """WORK((PATH, lo, hi, *ARGS)) for line-aligned parts [lo, hi) of PATH on JOBS workers: (hi, result) in order."""
    from multiprocessing import get_context

    bounds = line_bounds(path, size, max(jobs, -(-size // PART_SIZE)))
    jobs = min(jobs, len(bounds) - 1)  # no worker without a part to read
    # fork starts a worker in milliseconds; macOS lacks a safe fork, so it spawns.
    context = get_context("spawn" if sys.platform == "darwin" else "fork")
    # Workers leave Ctrl-C to this process, and leaving the block (done, --strict,
    # Ctrl-C, SIGTERM) kills them: no traceback from each, no orphan counting on.
    # Held back while the pool starts, a signal lands inside the block, not half-way.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pool = context.Pool(jobs, initializer=quiet_worker)
    except OSError as error:
        raise InputError(f"cannot start {jobs} worker processes ({error.strerror or error}); try --jobs 1") from None
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    with pool:
        parts = zip(repeat(path), bounds[:-1], bounds[1:], *map(repeat, args))
        yield from zip(bounds[1:], pool.imap(work, parts), strict=True)


def count_parallel(path: str, size: int, window: Window, jobs: int, strict: bool, progress: Progress) -> Tally:
    """Count PATH in parts on JOBS worker processes, merging their tallies in file order."""
    tally = Tally()
    for end, part in in_parts(path, size, jobs, count_part, window):
        tally.add(part)
        progress(end)
        if strict and tally.skipped.count:
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


def parts_size(path: str, stream: BinaryIO, jobs: int) -> int:
    """PATH's size if JOBS workers should read it in parts (a big plain file, more than one job), else 0."""
    if path == "-" or isinstance(stream, COMPRESSED) or jobs < 2:
        return 0
    size = os.fstat(stream.fileno()).st_size
    return size if size >= PARALLEL_MIN else 0


def count_file(path: str, window: Window, strict: bool = False, jobs: int = 0, fast: bool = True) -> Tally:
    """Count PATH ('-' for standard input): in parallel when it is a big plain file, else as a stream."""
    jobs = jobs or default_jobs()
    with opened(path) as stream:
        raw = stream if path == "-" else getattr(stream, "fileobj", stream)  # gzip: progress in its bytes
        progress = Progress(os.fstat(raw.fileno()).st_size if path != "-" else 0)
        if fast and (size := parts_size(path, stream, jobs)):
            tally = count_parallel(path, size, window, jobs, strict, progress)
        else:
            report = (lambda: progress(raw.tell())) if progress.enabled else None
            tally = count_stream(stream, window, fast, strict, progress=report)
        progress.close()
    if strict and tally.skipped.count:
        line, reason = tally.skipped.first[0]
        raise InputError(f"{display(path)}: line {line}: {reason}")
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
    """The reference's JSON: buckets in time order, customers in first-seen order.

    Exactly json.dumps(document, indent=2) plus a newline, written out by hand:
    with indent, json falls back to its pure-Python encoder, half of an HTTP reply's time.
    """
    buckets = []
    for bucket, rows in by_bucket(counts, window):
        inner = ",\n".join(f"    {quote(customer)}: {n}" for customer, n in rows)
        buckets.append(f'  "{format_bucket(bucket)}": ' + (f"{{\n{inner}\n  }}" if rows else "{}"))
    return "{\n" + ",\n".join(buckets) + "\n}\n"


# ---------------------------------------------------------------------------
# Serving: the log is read once into an index by hour and customer; a query is
# answered from the index, in time that grows with the buckets and customers in
# its answer, never with the events in the log.  Whole hours are precomputed
# counts; an hour cut by the window bisects each customer's sorted times in it,
# and a segment tree of file positions orders its customers in log(events) steps.
# The server is http.server's threaded one with HTTP/1.1 keep-alive, one write per
# reply with TCP_NODELAY, a small header parser of its own (http.server hands
# headers to the email package: a third of a request's time), and a listen
# backlog of 1024 (the default 5 cost 1 s SYN retries in a burst of 50 connects).


ANSWERS_KEPT = 1024


class HourIndex:
    """One UTC hour of the log: its whole-hour counts, and each customer's times for partial hours."""

    __slots__ = ("counts", "firsts", "times")

    def __init__(self, events: dict[str, tuple[array[int], array[int]]]) -> None:
        """EVENTS: customer -> (offsets in the hour, positions in the file), in file order, customers first-seen."""
        self.counts = {customer: len(times) for customer, (times, _) in events.items()}
        self.times: dict[str, array[int]] = {}  # each customer's offsets, sorted
        self.firsts: dict[str, array[int]] = {}  # a min-tree of their file positions, in the same order
        for customer, (times, positions) in events.items():
            if not all(map(le, times, islice(times, 1, None))):  # a log mostly comes in time order
                order = sorted(range(len(times)), key=times.__getitem__)  # stable: ties keep file order
                times = array("q", map(times.__getitem__, order))
                positions = array("q", map(positions.__getitem__, order))
            self.times[customer] = times
            self.firsts[customer] = min_tree(positions)

    def whole(self, customer: str | None) -> list[tuple[str, int]]:
        """Every customer's count for the whole hour, in first-seen order (or CUSTOMER's)."""
        if customer is None:
            return list(self.counts.items())
        return [(customer, self.counts[customer])] if customer in self.counts else []

    def part(self, lo: int, hi: int, customer: str | None) -> list[tuple[str, int]]:
        """Counts of events with LO <= offset < HI, customers in order of their first such event."""
        found = []
        for name in self.counts if customer is None else [customer] if customer in self.counts else []:
            times = self.times[name]
            i, j = bisect_left(times, lo), bisect_left(times, hi)
            if i < j:
                found.append((range_min(self.firsts[name], i, j), name, j - i))
        return [(name, n) for _, name, n in sorted(found)]


def min_tree(values: Iterable[int]) -> array[int]:
    """A segment tree for range_min: VALUES padded to a power of two as leaves, each node the min of its two."""
    leaves = array("q", values)
    size = 1 << (len(leaves) - 1).bit_length()
    tree = array("q", bytes(8 * size)) + leaves + array("q", [2**63 - 1]) * (size - len(leaves))
    width = size
    while width > 1:  # one level at a time, each a map that C runs
        tree[width // 2 : width] = array("q", map(min, tree[width : 2 * width : 2], tree[width + 1 : 2 * width : 2]))
        width //= 2
    return tree


def range_min(tree: array[int], i: int, j: int) -> int:
    """The least of values[i:j] (i < j), in steps that grow with log(len(values))."""
    n = len(tree) // 2
    i, j, least = i + n, j + n, tree[i + n]
    while i < j:
        if i & 1:
            least = min(least, tree[i])
            i += 1
        if j & 1:
            j -= 1
            least = min(least, tree[j])
        i, j = i // 2, j // 2
    return least


@dataclass(frozen=True)
class Index:
    """A whole log, by hour: what the server answers from."""

    path: str
    hours: dict[int, HourIndex]
    buckets: list[int]  # the hours with events, sorted
    events: int
    customers: int
    skipped: Skipped
    seconds: float
    answers: dict[str, bytes] = field(default_factory=dict, compare=False)  # recent /counts replies

    def answer(self, query: str, max_hours: int) -> bytes:
        """The /counts reply to QUERY: the JSON the command line prints for the same window."""
        payload = self.answers.get(query)
        if payload is None:
            window = parse_query(query, max_hours)
            payload = render_json(window, self.counts(window)).encode("ascii")
            if len(self.answers) >= ANSWERS_KEPT:
                self.answers.clear()  # crude, but bounded, and a dashboard asks few questions
            self.answers[query] = payload
        return payload

    def counts(self, window: Window) -> Counts:
        """The same counts count_file gives for WINDOW, from the index."""
        counts: Counts = {}
        first = bisect_left(self.buckets, hour_floor(window.start))
        for bucket in self.buckets[first : bisect_left(self.buckets, window.end)]:
            hour = self.hours[bucket]
            lo, hi = max(window.start - bucket, 0), min(window.end - bucket, HOUR)
            rows = hour.whole(window.customer) if (lo, hi) == (0, HOUR) else hour.part(lo, hi, window.customer)
            for customer, n in rows:
                counts[(bucket, customer)] = n
        return counts


def block_times(block: Block, first_line: int, skipped: Skipped) -> tuple[list[str], list[int], list[int], int]:
    """The customer, hour bucket and offset in the hour of every countable row of BLOCK, and its lines."""
    lines = block_lines(block)
    rows = [] if block.too_long else timed_pattern(_DATE_HOUR).findall(block.data, block.lo, block.hi)
    if rows and len(rows) == lines:
        try:
            return (*row_columns(rows), lines)
        except NotCanonical:
            pass
    events = list(block_events(block, first_line, skipped))
    buckets = [hour_floor(moment) for _, moment in events]
    offsets = [moment - bucket for (_, moment), bucket in zip(events, buckets, strict=True)]
    return [customer for customer, _ in events], buckets, offsets, lines


@dataclass
class IndexPart:
    """A part of the log, read for the index: its events by hour and customer, in file order."""

    hours: dict[int, dict[str, tuple[array[int], array[int]]]] = field(default_factory=dict)  # (offsets, positions)
    events: int = 0
    lines: int = 0
    skipped: Skipped = field(default_factory=Skipped)

    def arrays(self, bucket: int, customer: str) -> tuple[array[int], array[int]]:
        """CUSTOMER's (offsets, positions) in BUCKET, empty ones the first time."""
        hour = self.hours.setdefault(bucket, {})
        if customer not in hour:
            hour[customer] = (array("q"), array("q"))
        return hour[customer]

    def put(self, customer: str, bucket: int, offsets: list[int], first: int) -> None:
        """File OFFSETS (in BUCKET, CUSTOMER's), the events at positions FIRST, FIRST + 1, ... of the part."""
        times, positions = self.arrays(bucket, customer)
        times.extend(offsets)
        positions.extend(range(first, first + len(offsets)))

    def add(self, later: IndexPart) -> None:
        """Append LATER, the part right after ours: its positions and line numbers move on."""
        for bucket, customers in later.hours.items():
            for customer, (times, positions) in customers.items():
                mine = self.arrays(bucket, customer)
                mine[0].extend(times)
                mine[1].extend(map(add, positions, repeat(self.events)))
        self.skipped.extend(later.skipped.shifted(self.lines))
        self.events += later.events
        self.lines += later.lines


def index_stream(stream: BinaryIO, limit: int = -1, at_start: bool = True) -> IndexPart:
    """Read a stream (or its next LIMIT bytes) for the index."""
    part = IndexPart()
    with gc_paused():
        for block in read_blocks(stream, limit, at_start):
            customers, buckets, offsets, lines = block_times(block, part.lines + 1, part.skipped)
            part.lines += lines
            start = 0
            for (customer, bucket), run in groupby(zip(customers, buckets, strict=True)):  # runs of one key
                end = start + len(list(run))
                part.put(customer, bucket, offsets[start:end], part.events + start)
                start = end
            part.events += start
    return part


def index_part(part: tuple[str, int, int]) -> IndexPart:
    """A worker's share of the index: bytes [lo, hi) of a file, which start and end at line boundaries."""
    path, lo, hi = part
    with open(path, "rb") as stream:
        stream.seek(lo)
        return index_stream(stream, hi - lo, at_start=lo == 0)


def build_index(path: str, jobs: int = 1) -> Index:
    """Read PATH once into an Index, a big plain file on JOBS workers (0: one per CPU); InputError if unreadable."""
    started = time.monotonic()
    jobs = jobs or default_jobs()
    with opened(path) as stream:
        if size := parts_size(path, stream, jobs):
            whole = IndexPart()
            for _, part in in_parts(path, size, jobs, index_part):
                whole.add(part)
        else:
            whole = index_stream(stream)
    with gc_paused():
        index = {bucket: HourIndex(events) for bucket, events in whole.hours.items()}
    customers = len({customer for events in whole.hours.values() for customer in events})
    return Index(path, index, sorted(index), whole.events, customers, whole.skipped, time.monotonic() - started)


class BadRequest(ValueError):
    """A request the server will not answer (HTTP 400); the message names the parameter."""


QUERY_PARAMETERS = ("start", "end", "customer_id")
LOST_PLUS = re.compile(r"\d \d\d(?::?\d\d)?$")  # '09:30:00 05:30': the '+' of an offset, read as a space


def parse_query(query: str, max_hours: int) -> Window:
    """The window a /counts query string asks for; BadRequest names what is wrong."""
    params = parse_qs(query, keep_blank_values=True)
    for name, values in params.items():
        if name not in QUERY_PARAMETERS:
            raise BadRequest(f"unknown parameter {name!r}; use start, end and customer_id")
        if len(values) > 1:
            raise BadRequest(f"{name} is given {len(values)} times")
    for name in ("start", "end"):
        if name not in params:
            raise BadRequest(f"{name} is missing (e.g. /counts?start=2021-03-01T04:00:00Z&end=2021-03-01T06:30:00Z)")
    customer = params.get("customer_id", [None])[0]
    try:
        return parse_window(params["start"][0], params["end"][0], customer, max_hours, QUERY_PARAMETERS)
    except UsageError as error:
        lost_plus = any(LOST_PLUS.search(params[name][0]) for name in ("start", "end"))
        hint = " (a '+' in a URL must be written %2B)" if lost_plus else ""
        raise BadRequest(f"{error}{hint}") from None


class CountsHandler(BaseHTTPRequestHandler):
    """GET /counts and /healthz; JSON in, JSON out, nothing else reachable."""

    server: CountsServer
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = f"totaler/{__version__}"
    sys_version = ""
    disable_nagle_algorithm = True  # no 40 ms wait for a delayed ACK between writes
    wbufsize = 1 << 16  # and headers and body leave in one write anyway
    timeout = 60  # an idle keep-alive connection is closed after a minute

    def parse_request(self) -> bool:
        """Read the request line and headers; set close_connection.  False when an error was sent."""
        # http.server hands the headers to the email package, which takes a third of
        # a request's time here; this server needs three headers and a dict.
        self.requestline = line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = line.split()
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            self.command, self.request_version = "", "HTTP/1.1"
            self.send_error(400, f"bad request line {line[:80]!r}")
            return False
        self.command, self.path, self.request_version = words
        headers: dict[str, str] = {}
        while (raw := self.rfile.readline(8193)) not in (b"\r\n", b"\n", b""):
            name, colon, value = raw.decode("iso-8859-1").partition(":")
            if not colon or len(raw) > 8192 or len(headers) > 100:
                self.send_error(431 if colon else 400, "request header line too long or malformed")
                return False
            headers[name.strip().lower()] = value.strip()
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("connection", "").lower()
        keep = connection == "keep-alive" if self.request_version == "HTTP/1.0" else connection != "close"
        # A body we will not read would be taken for the next request: close after answering.
        has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        self.close_connection = not keep or has_body
        return True

    def do_GET(self) -> None:
        """Answer with a body."""
        self.answer(body=True)

    def do_HEAD(self) -> None:
        """Answer with the headers GET would send."""
        self.answer(body=False)

    def __getattr__(self, name: str) -> Callable[[], None]:
        """Any other method (POST, PUT, BREW...) gets 405."""
        if name.startswith("do_"):
            return self.refuse_method
        raise AttributeError(name)

    def refuse_method(self) -> None:
        """405 with the methods we do answer."""
        self.close_connection = True  # it may have sent a body we will not read
        self.send_json(405, {"error": f"method {self.command} is not allowed; use GET"}, extra={"Allow": "GET, HEAD"})

    def answer(self, body: bool) -> None:
        """Route a GET or HEAD."""
        url = urlsplit(self.path)
        index = self.server.index  # one index for the whole request, whatever a reload does
        try:
            if url.path == "/counts":
                self.send_payload(200, index.answer(url.query, self.server.max_hours), body)
            elif url.path == "/healthz":
                self.send_json(200, health(index), body)
            else:
                self.send_json(404, {"error": f"no such path {url.path!r}; try /counts or /healthz"}, body)
        except BadRequest as error:
            self.send_json(400, {"error": str(error)}, body)

    def send_json(self, status: int, document: dict, body: bool = True, extra: dict[str, str] | None = None) -> None:
        """Send DOCUMENT as the reply."""
        self.send_payload(status, (json.dumps(document, indent=2) + "\n").encode("ascii"), body, extra)

    def send_payload(self, status: int, payload: bytes, body: bool, extra: dict[str, str] | None = None) -> None:
        """Send PAYLOAD with its headers, in one write."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors http.server finds itself (a garbled request line, say), as JSON too."""
        self.close_connection = True
        self.send_json(code, {"error": message or HTTPStatus(code).phrase}, body=self.command != "HEAD")

    def version_string(self) -> str:
        """The Server header: no Python version on display."""
        return self.server_version

    def log_message(self, format: str, *args: object) -> None:
        """One access-log line per request, unless --quiet."""
        if not self.server.quiet:
            super().log_message(format, *args)


def health(index: Index) -> dict:
    """What /healthz says about the index being served."""
    return {
        "status": "ok",
        "file": index.path,
        "events": index.events,
        "customers": index.customers,
        "skipped": index.skipped.count,
        "indexed_in_seconds": round(index.seconds, 3),
    }


class CountsServer(ThreadingHTTPServer):
    """A thread per connection, the index swapped whole on reload."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024  # the default of 5 drops a burst of new connections: a 1 s SYN retry each

    def __init__(self, address: tuple[str, int], index: Index, max_hours: int, quiet: bool) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.index = index
        self.max_hours = max_hours
        self.quiet = quiet
        self.reloading = threading.Lock()
        super().__init__(address, CountsHandler)

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up or times out is not an error; anything else is logged in one line."""
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            log(f"error answering {client_address}: {error!r}")

    def reload(self) -> None:
        """Read the file again and swap the new index in; on failure keep serving the old one."""
        with self.reloading:
            try:
                index = build_index(self.index.path)  # one process: forking a threaded server is unsafe
            except InputError as error:
                log(f"reload failed, still serving the old index: {error}")
                return
            self.index = index  # one assignment: requests see the old index or the new, never a mix
            log(f"reloaded: {describe(index)}")


def describe(index: Index) -> str:
    """One line about an index."""
    return (
        f"indexed {index.events:,} events of {index.customers} customers from {index.path} "
        f"in {index.seconds:.2f} s, {index.skipped.count} rows skipped"
    )


def log(message: str) -> None:
    """A line on stderr."""
    print(f"totaler: {message}", file=sys.stderr, flush=True)


def serve(path: str, host: str, port: int, max_hours: int, quiet: bool, jobs: int = 0) -> int:
    """Index PATH (on JOBS workers, 0: one per CPU), then answer HTTP until SIGTERM or SIGINT; SIGHUP reloads PATH."""
    if path == "-":
        raise UsageError("--serve needs a file, not standard input: it is read again on SIGHUP")
    index = build_index(path, jobs)  # before any thread starts, workers may be forked
    try:
        server = CountsServer((host, port), index, max_hours, quiet)
    except OSError as error:
        raise InputError(f"cannot listen on {host}:{port} ({error.strerror})") from None
    if index.skipped.count:
        log(f"warning: {index.skipped.summary()}")
    name = f"[{host}]" if ":" in host else host
    url = f"http://{name}:{server.server_address[1]}"
    log(f"{describe(index)}; serving {url}/counts?start=2021-03-01T04:00:00Z&end=2021-03-01T06:30:00Z")

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever(), which runs in this very thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    def reload(signum: int, frame: object) -> None:
        threading.Thread(target=server.reload, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, reload)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    log("stopped")
    return 0


# ---------------------------------------------------------------------------
# The command line.

EXAMPLES = """examples:
  totaler events.csv 2021-03-01T04:00:00Z 2021-03-01T06:30:00Z
  totaler events.csv 2021-03-01T04:00:00Z 2021-03-01T06:30:00Z 30330c9c4e7173ba9474c46ee5191570 --json
  gzip -c events.csv | totaler - '2021-03-01 04:00:00 UTC' 2021-03-01T09:30:00+05:30
  totaler events.csv --serve --port 8000

Buckets are UTC hours; an event counts when START <= time < END. Exit status:
0 answered, 1 the input could not be read (or --strict met a bad row), 2 bad arguments."""


class UsageError(Exception):
    """A bad command line (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse, but every error is one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Raise instead of printing usage."""
        raise UsageError(f"{message} (see --help)")


def whole_number(least: int, most: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from LEAST to MOST."""

    def convert(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if number < least or (most is not None and number > most):
            bounds = f"from {least} to {most}" if most is not None else f"{least} or more"
            raise argparse.ArgumentTypeError(f"{text!r} is out of range: give {bounds}")
        return number

    return convert


def build_parser() -> Parser:
    """The command line's arguments."""
    parser = Parser(
        prog="totaler",
        description="Count each customer's events per UTC hour in [START, END) of a CSV log\n"
        "(customer_id,event_type,transaction_id,timestamp), or serve the same answers over HTTP.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="the CSV log, gzip or plain; '-' reads standard input")
    parser.add_argument("start", metavar="START", nargs="?", help="window start, ISO 8601 (no offset means UTC)")
    parser.add_argument("end", metavar="END", nargs="?", help="window end, exclusive")
    parser.add_argument("customer", metavar="CUSTOMER_ID", nargs="?", help="count only this customer")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--strict", action="store_true", help="fail on the first malformed row")
    parser.add_argument(
        "--max-hours", type=whole_number(1), default=100_000, metavar="N", help="longest window allowed (100000)"
    )
    parser.add_argument("--jobs", type=whole_number(0), default=0, metavar="N", help="worker processes (default: CPUs)")
    parser.add_argument("--version", action="version", version=f"totaler {__version__}")
    http = parser.add_argument_group("HTTP service", "totaler FILE --serve: GET /counts?start=A&end=B[&customer_id=X]")
    http.add_argument("--serve", action="store_true", help="index FILE once, then answer over HTTP")
    host = os.environ.get("TOTALER_HOST", "127.0.0.1")  # the image sets 0.0.0.0: `docker run -p` just works
    http.add_argument("--host", default=host, help=f"address to listen on (default {host}; env TOTALER_HOST)")
    http.add_argument("--port", type=whole_number(0, 65535), default=8000, help="port (default 8000; 0 picks one)")
    http.add_argument("--quiet", action="store_true", help="no access log")
    return parser


def parse_window(
    start: str,
    end: str,
    customer: str | None,
    max_hours: int,
    names: tuple[str, str, str] = ("START", "END", "CUSTOMER_ID"),
) -> Window:
    """Check and convert the window arguments; raise UsageError naming the bad one as NAMES does."""
    if customer is not None and not customer.strip():
        raise UsageError(f"{names[2]} is empty: leave it out to count every customer")
    bounds = []
    for name, text in zip(names[:2], (start, end), strict=True):
        try:
            bounds.append(parse_bound(text))
        except BadTimestamp as error:
            raise UsageError(f"{name} {error}") from None
    window = Window(bounds[0], bounds[1], customer)
    if window.start >= window.end:
        raise UsageError(f"{names[0]} {start!r} is not before {names[1]} {end!r}")
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
        args = parser.parse_intermixed_args(argv)
        if args.serve:
            if args.start is not None:
                raise UsageError("--serve takes only FILE: the window comes with each request")
            return serve(args.file, args.host, args.port, args.max_hours, args.quiet, args.jobs)
        missing = [name for name, value in (("START", args.start), ("END", args.end)) if value is None]
        if missing:
            raise UsageError(f"the following arguments are required: {', '.join(missing)} (see --help)")
        window = parse_window(args.start, args.end, args.customer, args.max_hours)
        tally = count_file(args.file, window, args.strict, args.jobs)
    except (UsageError, InputError) as error:
        log(f"error: {error}")
        return 2 if isinstance(error, UsageError) else 1
    if tally.skipped.count:
        log(f"warning: {tally.skipped.summary()}")
    output = render_json(window, tally.counts) if args.json else render_text(args.file, window, tally.counts)
    return write_answer(output)


def write_answer(output: str) -> int:
    """Print OUTPUT on standard output; 1 with one line on stderr if it cannot be written (a full disk, say)."""
    try:
        # surrogateescape: an argument that was not UTF-8 (FILE, CUSTOMER_ID) is printed as the bytes it was.
        sys.stdout.buffer.write(output.encode("utf-8", "surrogateescape"))
        sys.stdout.flush()
    except BrokenPipeError:
        raise  # the reader went away: run() exits quietly
    except (OSError, AttributeError) as error:  # AttributeError: standard output was closed (>&-)
        log(f"error: cannot write the answer ({getattr(error, 'strerror', None) or 'standard output is closed'})")
        silence_stdout()
        return 1
    return 0


def silence_stdout() -> None:
    """Point standard output at /dev/null, so that the exit's own flush of what is left fails no more."""
    if sys.stdout is not None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run() -> None:
    """The console script: main() with a quiet exit on a closed pipe, Ctrl-C or SIGTERM."""
    # As PID 1 in a container a process ignores SIGTERM unless it handles it, and
    # `docker stop` would wait ten seconds to kill it (--serve sets its own handler).
    signal.signal(signal.SIGTERM, exit_on_signal)
    try:
        status = main()
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error worth a traceback.
        silence_stdout()
        status = 1
    except KeyboardInterrupt:
        status = 130
    sys.exit(status)


def exit_on_signal(signum: int, frame: object) -> None:
    """Unwind (closing files, stopping workers) and exit with 128 + the signal's number."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    run()
