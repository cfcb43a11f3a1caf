"""totaler: how many events did each customer send in each bucket (a UTC hour by default) of [START, END)?

Reads a header-less CSV log, customer_id,event_type,transaction_id,timestamp, and
prints the count per one-hour bucket, as text or JSON, or serves the same answers
over HTTP.  One file, read top to bottom; each section uses only those before it:
time; reading rows; the contract (count_events over plain_events, the whole
specification); rendering; the question (a window, as typed); the fast path; whole
files (workers, a Dask cluster); the index; HTTP (with its page); the entry point.

Glossary (each word in this sense only):
  instant      a point in time: an int, microseconds since the Unix epoch, UTC
  line         bytes up to a newline; numbered from 1 in every message
  row          a line read as the four CSV fields; valid (an event) or malformed (skipped and counted)
  event        a valid row: customer_id, instant, event_type, transaction_id; its position: the events before it
  transaction  the events sharing one transaction_id; under --unique only the first counts, a later one is a duplicate
  bucket       the interval of instants counted together: a UTC hour unless --bucket/--tz (Buckets)
  window       the question: [START, END), maybe one customer and event types, its buckets (Window)
  counts       the answer: events by (bucket start, customer), in first-seen order (Counts)
  block        whole lines read together; the plain and the fast path each count blocks
  plain path   the stdlib csv reader, row by row: count_events(plain_events(...)), the specification
  fast path    regular expressions over a block whose shape they prove (else _Unproved); equal to the plain path
  hour key     a timestamp up to its hour as written, b'2021-03-01T04' (a slot key adds a minute's first digit)
  run          consecutive rows that share customer, key (hour or slot) and zone (and event type, where asked)
  byte range   [lo, hi) of a file, starting and ending at line boundaries: what a worker or cluster task reads
  part         what is read of a byte range or a stream (a _Tally, an _IndexPart, a _Survey), added in file order
  tally        a part that counts one window, with its skipped rows and duplicates
  hour index   the server's events by UTC hour, from which any window is answered (Index)
  file-backed  an hour index that reads the hours a window reaches again from the file, kept open
  segment      256 KiB of a file whose UTC hours a survey notes, so that a file-backed index reads only those
  cut hour     an hour a window's bound falls inside, read event by event

The data flow:
  files -> _read_blocks: blocks of whole lines (a line over _MAX_LINE becomes one bad row)
        -> a _Part takes each block: a _Tally counts it (_count_block: the fast path proves
           a block's shape with regular expressions, else the plain path), an _IndexPart
           files its events for --serve; both give what count_events(plain_events(...)) gives
           (under --unique, a _UniqueTally reads columns: count_events(_first_events(...)))
        -> parts read by workers or cluster tasks, appended in file order (_Part.add); under
           --unique each part's transaction ids settled against the earlier parts' (_Transactions)
        -> render_text / render_json, or the Index that forked HTTP workers answer from
           (a big log in time order: first a file-backed one, reading the hours a window
           reaches again from the file, while the one holding every event is built)

    python totaler.py events.csv 2021-03-01T04:00:00Z 2021-03-01T06:30:00Z [CUSTOMER_ID] [--json]
    python totaler.py events.csv --serve --port 8000
"""

from __future__ import annotations

import sys

if sys.version_info < (3, 11):  # noqa: UP036 - before an import that needs 3.11 fails with a traceback
    _found = ".".join(map(str, sys.version_info[:3]))
    sys.stderr.write(f"totaler: error: needs Python 3.11 or newer; this is Python {_found} ({sys.executable})\n")
    sys.exit(2)

import argparse
import bz2
import csv
import errno
import gc
import glob
import gzip
import io
import json
import lzma
import os
import re
import signal
import socket
import stat
import time
import warnings
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache, partial
from http import HTTPStatus
from itertools import accumulate, chain, compress, islice, pairwise, repeat, starmap
from json.encoder import encode_basestring_ascii as quote
from operator import add, and_, eq, ge, getitem, gt, itemgetter, le, mod, ne, not_, sub, truth
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, TypeVar
from urllib.parse import parse_qs, urlencode

if TYPE_CHECKING:
    import asyncio
    from multiprocessing.context import BaseContext
    from multiprocessing.pool import Pool

__version__ = "1.0.0"
__all__ = [  # the public API; every other name is machinery that may change
    "Buckets",
    "Counts",
    "Event",
    "Index",
    "InputError",
    "ServeSettings",
    "UsageError",
    "Window",
    "build_index",
    "count_events",
    "count_files",
    "main",
    "parse_instant",
    "parse_width",
    "parse_window",
    "plain_events",
    "render_csv",
    "render_json",
    "render_text",
    "run",
    "serve",
]

# ---------------------------------------------------------------------------
# Time: every instant is an int, microseconds since the Unix epoch, in UTC.
# Integers compare exactly and floor to the hour with one modulo.  A bucket is
# the interval of instants a question counts together: a UTC hour unless asked
# otherwise (Buckets: a width of local wall time in a zone, below).

_MICROSECOND = timedelta(microseconds=1)
_MINUTE = 60_000_000
_HOUR = 3_600_000_000
_DAY = 24 * _HOUR
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What goes to dateutil: an ISO date, maybe a time, maybe one zone name or offset.
# Anything looser (dateutil reads '2021-03-01 05:30' after a lost '+' as 05:30 local) is refused.
_DATEUTIL_SHAPE = re.compile(
    r"(?P<local>\d{4}-\d{2}-\d{2}"  # the date, year first
    r"(?:[ T]\d{1,2}(?::\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?)?)"  # a time, maybe
    r"(?:\s*(?:(?P<name>[A-Za-z]{1,5})|(?P<offset>[+-]\d{2}(?::?\d{2})?)))?"  # a zone name or an offset, maybe
)
_ZONE_WITH_OFFSET = re.compile(r"(?:UTC|GMT|UT|Z)\s*[+-]\d", re.IGNORECASE)
_UTC_NAMES = {"UTC", "GMT", "UT", "Z"}
# The instants a datetime can hold: a bound outside them cannot even be printed.
_FIRST_INSTANT = -62_135_596_800_000_000  # 0001-01-01 00:00:00 UTC
_LAST_INSTANT = 253_402_300_799_999_999  # 9999-12-31 23:59:59.999999 UTC


class _BadTimestamp(ValueError):
    """A timestamp that is not ISO 8601."""


def _to_micros(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def _from_micros(micros: int) -> datetime:
    """The UTC datetime of MICROS."""
    return _EPOCH + micros * _MICROSECOND


def _hour_floor(micros: int) -> int:
    """The start of the UTC hour that contains MICROS."""
    return micros - micros % _HOUR


def _format_seconds(moment: datetime) -> str:
    """2021-03-01 04:00:00; years below 1000 zero-padded, which strftime's %Y does not do on Linux."""
    return f"{moment.year:04d}-{moment:%m-%d %H:%M:%S}"


@lru_cache(maxsize=1 << 16)
def _format_bucket(micros: int) -> str:
    """A bucket as the reference printed it: 2021-03-01 04:00:00 +0000."""
    return _format_seconds(_from_micros(micros)) + " +0000"


def _format_utc(micros: int) -> str:
    """An instant as the reference printed it: 2021-03-01 04:00:00 UTC (fraction if any)."""
    moment = _from_micros(micros)
    text = _format_seconds(moment)
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + " UTC"


def _format_iso(micros: int) -> str:
    """2021-03-01T00:00:00Z (fraction if any): the form a URL or a header carries best (no space, no '+')."""
    return _format_utc(micros).removesuffix(" UTC").replace(" ", "T") + "Z"


def _parse_event_time(text: str) -> int:
    """A row's timestamp: ISO 8601 with a time of day, offset optional (UTC)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _BadTimestamp(f"timestamp {text!r} is not ISO 8601") from None
    if "T" not in text and " " not in text:
        raise _BadTimestamp(f"timestamp {text!r} has no time of day")
    micros = _to_micros(moment)
    if not _FIRST_INSTANT <= micros <= _LAST_INSTANT:  # 0001-01-01 00:30+01:00 is in year 0 in UTC
        raise _BadTimestamp(f"timestamp {text!r} falls outside the years 1 to 9999 in UTC")
    return micros


def _parse_bound(text: str, zone: str = "UTC") -> int:
    """A window bound: ISO 8601, or a form this tool prints; never a guess; within years 1 to 9999 in UTC.
    Without an offset it is a wall time in ZONE (UTC unless told)."""
    micros = parse_instant(text.strip(), zone)
    if not _FIRST_INSTANT <= micros <= _LAST_INSTANT:
        raise _BadTimestamp(f"{text!r} falls outside the years 1 to 9999 in UTC")
    return micros


def parse_instant(text: str, zone: str = "UTC") -> int:
    """_parse_bound without the range check."""
    if not (text.isascii() and text.isprintable()):  # fromisoformat reads fullwidth digits
        raise _BadTimestamp(f"{text!r} is not an ISO 8601 timestamp (e.g. 2021-03-01T04:00:00Z)")
    try:
        return _instant_in(datetime.fromisoformat(text), zone, text)
    except ValueError as error:
        if isinstance(error, _BadTimestamp):
            raise
    # dateutil reads '... UTC' and '... +0000' but also guesses at '03/01/21' or
    # '4pm': insist on an ISO date first, so year, month and day are never guessed.
    if _ZONE_WITH_OFFSET.search(text):  # 'UTC+3' means UTC-3 to POSIX: refuse to guess
        raise _BadTimestamp(f"{text!r} mixes a zone name and an offset; give one offset like +03:00")
    shape = _DATEUTIL_SHAPE.fullmatch(text)
    if not shape:
        raise _BadTimestamp(f"{text!r} is not an ISO 8601 timestamp (e.g. 2021-03-01T04:00:00Z)")
    name = shape["name"]
    if name and name.upper() in ("AM", "PM"):
        raise _BadTimestamp(f"{text!r} ends in {name}; give a 24-hour time")
    if name and name.upper() not in _UTC_NAMES:  # dateutil would ignore a word ('Sat') or guess a zone ('EST')
        raise _BadTimestamp(f"{text!r} ends in {name!r}: only UTC, Z or an offset like -05:00 may follow the time")
    try:  # the forms this tool prints itself, '2021-03-01 04:00:00 UTC' and '... +0000', need no dateutil
        offset = shape["offset"] or ("+00:00" if name else "")
        return _instant_in(datetime.fromisoformat(shape["local"] + offset), zone, text)
    except ValueError as error:
        if isinstance(error, _BadTimestamp):
            raise
    return _instant_in(_parse_with_dateutil(text), zone, text)


def _parse_with_dateutil(text: str) -> datetime:
    """What fromisoformat does not read of _DATEUTIL_SHAPE (an hour of one digit, say), read by dateutil."""
    try:
        from dateutil import parser
    except ImportError:
        raise _BadTimestamp(f"{text!r} needs python-dateutil to be read (pip install python-dateutil)") from None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return parser.parse(text, tzinfos=_utc_zone_only)
        except (ValueError, OverflowError, Warning) as error:
            reason = str(error) if isinstance(error, _BadTimestamp) else "is not an ISO 8601 timestamp"
            raise _BadTimestamp(f"{text!r} {reason}") from None


def _utc_zone_only(name: str | None, offset: int | None) -> tzinfo | None:
    """dateutil's zone lookup, made the same on every machine: offsets and UTC names only."""
    # Left to itself dateutil maps a name that matches the machine's own zone to
    # local time, so 'EST' would work on one laptop and fail on the next.
    if name is None:  # no zone at all (dateutil asks even then): a wall time, which --tz places
        return None if offset is None else timezone(timedelta(seconds=offset))
    if name.upper() in _UTC_NAMES and not offset:
        return UTC
    raise _BadTimestamp(f"names a time zone ({name}); give an offset like -05:00")


# Zones: an IANA name from the system's tz database (else from python-dateutil's own
# copy, as in a slim container image), UTC, or a fixed offset like +05:30.
_FIXED_OFFSET = re.compile(r"([+-])([01]\d|2[0-3]):([0-5]\d)")
_ZONE_HELP = "an IANA name like America/New_York, UTC, or a fixed offset like +05:30"


class _BadZone(ValueError):
    """A zone that is not one (exit status 2)."""


@lru_cache(maxsize=64)
def _zone_named(name: str) -> tzinfo:
    """The tzinfo NAME stands for; _BadZone if none."""
    if name == "UTC":
        return UTC
    if fixed := _FIXED_OFFSET.fullmatch(name):
        minutes = int(fixed[2]) * 60 + int(fixed[3])
        return timezone(timedelta(minutes=-minutes if fixed[1] == "-" else minutes))
    import zoneinfo  # here: a command line in UTC never needs it

    with suppress(zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return zoneinfo.ZoneInfo(name)
    with suppress(ImportError, OSError, ValueError), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dateutil warns that its copy may be older than the system's
        from dateutil.zoneinfo import get_zonefile_instance

        if (bundled := get_zonefile_instance().get(name)) is not None:
            return bundled
    raise _BadZone(f"{name!r} is not a time zone: give {_ZONE_HELP}")


def _local_wall(micros: int, zone: tzinfo) -> tuple[int, int]:
    """The wall time ZONE's clocks show at MICROS, as microseconds since 1970-01-01 00:00 on such a clock, and
    ZONE's offset from UTC then."""
    offset = _from_micros(micros).astimezone(zone).utcoffset() // _MICROSECOND
    return micros + offset, offset


def _instant_in(moment: datetime, zone: str, text: str) -> int:
    """MOMENT as an instant: itself if it has an offset, else a wall time in ZONE; _BadTimestamp (naming TEXT)
    if that wall time does not exist there or exists twice."""
    if moment.tzinfo is not None or zone == "UTC":
        return _to_micros(moment)
    tz = _zone_named(zone)
    found = set()
    for fold in (0, 1):
        micros = _to_micros(moment.replace(tzinfo=tz, fold=fold))
        try:
            if _from_micros(micros).astimezone(tz).replace(tzinfo=None) == moment:
                found.add(micros)
        except OverflowError:  # a wall time of the year 1 ahead of UTC, or of 9999 behind it
            raise _BadTimestamp(f"{text!r} in {zone} falls outside the years 1 to 9999 in UTC") from None
    if not found:
        raise _BadTimestamp(f"{text!r} does not exist in {zone} (the clocks skip it): give an offset")
    if len(found) > 1:
        offsets = " and ".join(_format_offset(_local_wall(micros, tz)[1]) for micros in sorted(found))
        raise _BadTimestamp(f"{text!r} happens twice in {zone} (at {offsets}): give an offset")
    return found.pop()


def _format_offset(offset: int) -> str:
    """+0530, as strftime's %z writes an offset of microseconds OFFSET (seconds too, if any)."""
    sign, offset = ("-", -offset) if offset < 0 else ("+", offset)
    minutes, seconds = divmod(offset // 1_000_000, 60)
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}" + (f"{seconds:02d}" if seconds else "")


# Buckets of any width in any zone.  An instant's bucket is its local wall time
# floored to the width, counted from local midnight; a bucket is the interval of
# instants that share it, so a bucket that holds a change of offset is longer or
# shorter than its width.  Its boundaries are the instants at which the clock shows
# a multiple of the width, and the changes of offset across which the floored wall
# time differs: after a skipped wall time a bucket starts at the first instant after
# the gap, and when the clock goes back to a wall time it showed before, that begins
# a bucket of its own.  A bucket is named by its first instant.  The tz database
# never changes a zone's offset twice within four days, and a bucket is at most a
# day and a few hours, so one change at most bears on any bucket.
_WIDTH = re.compile(r"([1-9]\d{0,2})([mhd])")
_WIDTHS = {"m": (_MINUTE, 60), "h": (_HOUR, 24), "d": (_DAY, 1)}  # unit, and what N must divide
_WIDTH_HELP = "Nm with N dividing 60 (1m, 5m, 15m, 30m), Nh with N dividing 24 (1h, 2h, 6h, 12h), or 1d"


def parse_width(text: str) -> int:
    """A bucket width like 15m, 6h or 1d, in microseconds; ValueError saying what is accepted."""
    found = _WIDTH.fullmatch(text)
    if found is None or _WIDTHS[found[2]][1] % int(found[1]):
        raise ValueError(f"{text!r} is not a bucket width: give {_WIDTH_HELP}")
    return int(found[1]) * _WIDTHS[found[2]][0]


@lru_cache(maxsize=64)
def _fixed_offset(zone: str) -> int | None:
    """ZONE's offset from UTC in microseconds if it never changes (UTC, +05:30), else None."""
    offset = _zone_named(zone).utcoffset(None)
    return None if offset is None else offset // _MICROSECOND


def _change_before(micros: int, zone: tzinfo) -> int | None:
    """The first instant of ZONE's offset in force at MICROS, if it began within the two days before."""
    # Not back past the first day of the year 1, whose wall time a zone behind UTC puts in the year 0 (no datetime
    # holds it): no zone changed its offset then.
    low, high = max(micros - 2 * _DAY, min(micros, _FIRST_INSTANT + _DAY)), micros
    before, now = _local_wall(low, zone)[1], _local_wall(high, zone)[1]
    if before == now:
        return None
    while high - low > 1:  # offset(low) is the old one, offset(high) the new one
        middle = (low + high) // 2
        low, high = (middle, high) if _local_wall(middle, zone)[1] == before else (low, middle)
    return high


class Buckets(NamedTuple):
    """How a question cuts time: buckets WIDTH microseconds wide in local wall time, in ZONE (a name)."""

    width: int = _HOUR
    zone: str = "UTC"

    def floor(self, micros: int) -> int:
        """The first instant of the bucket that holds MICROS."""
        return self._floor_seen(micros)[0]

    def _floor_seen(self, micros: int) -> tuple[int, int | None]:
        """floor(MICROS), and the change of offset it saw: the first instant of the offset in force at MICROS, if
        that began within the two days before (else None)."""
        if (fixed := _fixed_offset(self.zone)) is not None:  # the epoch is a midnight: buckets count from it
            return micros - (micros + fixed) % self.width, None
        zone = _zone_named(self.zone)
        wall, offset = _local_wall(micros, zone)
        floored = wall - wall % self.width
        start = floored - offset  # the clock showed FLOORED then, if its offset has held since
        change = _change_before(micros, zone)
        if change is None or change <= start:
            return start, change
        # The offset changed after the clock last showed a multiple of the width: the change
        # begins this bucket, unless the floored wall time is the same on both sides of it.
        wall_before = _local_wall(change - 1, zone)[0]
        return (self.floor(change - 1) if wall_before - wall_before % self.width == floored else change), change

    def following(self, bucket: int) -> int:
        """The first instant of the bucket after BUCKET (which must be a bucket's first instant)."""
        if _fixed_offset(self.zone) is not None:
            return bucket + self.width
        later = bucket + self.width
        try:
            while (seen := self._floor_seen(later))[0] == bucket:  # a bucket longer than its width (clocks went back)
                later += self.width
        except OverflowError:  # its wall time is past the year 9999: no window reaches it (parse_window)
            return later
        start, change = seen
        if change is None or not bucket < change < start:
            return start
        # The offset changed between them, and START's floor cannot see a bucket that the change begins
        # and a multiple of the width ends (Pacific/Chatham, 03:45 back to 02:45: 02:45 to 03:00): the
        # first instant after BUCKET that is not in it, by halves.
        low, high = bucket, start
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if self.floor(middle) == bucket else (low, middle)
        return high

    def label(self, bucket: int) -> str:
        """A bucket as totaler prints it: its first instant's wall time and offset, 2021-03-01 09:30:00 +0530."""
        if self.zone == "UTC":
            return _format_bucket(bucket)  # cached: the default answer prints many
        moment = _from_micros(bucket).astimezone(_zone_named(self.zone))
        return f"{_format_seconds(moment)} {_format_offset(moment.utcoffset() // _MICROSECOND)}"

    def starts(self, start: int, end: int) -> Iterator[int]:
        """The first instant of every bucket an instant of [START, END) falls in, in time order."""
        if _fixed_offset(self.zone) is not None:
            yield from range(self.floor(start), end, self.width)
            return
        bucket = self.floor(start)
        while bucket < end:
            yield bucket
            bucket = self.following(bucket)

    def whole(self, first: int, span: int) -> int | None:
        """The bucket that holds all of [FIRST, FIRST + SPAN), if one does."""
        bucket = self.floor(first)
        return bucket if self.floor(first + span - 1) == bucket else None


_UTC_HOURS = Buckets()


# ---------------------------------------------------------------------------
# Reading rows.  A row is one physical line; a quote left open at the end of
# a line makes that row malformed instead of swallowing the lines after it, so a
# file can be cut into blocks (and workers) at any newline.

_HEADER = ["customer_id", "event_type", "transaction_id", "timestamp"]
_BLOCK_SIZE = 1 << 21
_MAX_LINE = 1 << 20
_SHOWN_SKIPS = 3
_BOM = b"\xef\xbb\xbf"


class _Malformed(ValueError):
    """A row that cannot be counted; the message says why."""


class InputError(Exception):
    """The input cannot be read at all (exit status 1)."""


def _display(path: str) -> str:
    """PATH as it can be printed: bytes that are not UTF-8 escaped (a file name can hold any bytes)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class _Skipped:
    """Rows skipped as malformed: how many, and the first few with line, reason and likely cause; and the lines
    that hold no row at all (blank, or the header), which are not reported."""

    def __init__(
        self,
        count: int = 0,
        first: list[tuple[int, str]] | None = None,
        files: list[str] | None = None,
        causes: list[str] | None = None,
        blank: int = 0,
    ):
        self.count = count
        self.first = first or []
        self.files = files or []  # the file of each of FIRST, when several are read
        self.causes = causes or []  # what each of FIRST suggests went wrong ('' when nothing does)
        self.blank = blank

    def add(self, line: int, reason: str, file: str = "", text: bytes = b"", cause: str | None = None) -> None:
        """Count one skipped row; of the first few, keep the likely cause that its TEXT suggests (or CAUSE)."""
        self.count += 1
        if len(self.first) < _SHOWN_SKIPS:
            self.first.append((line, reason))
            self.files.append(file)
            self.causes.append(_likely_cause(text) if cause is None else cause)

    def file_of(self, shown: int) -> str:
        """The file of the SHOWN-th of FIRST ('' when one file is read)."""
        return self.files[shown] if shown < len(self.files) else ""

    def extend(self, other: _Skipped, file: str | None = None) -> None:
        """Count OTHER's rows after ours: later in the same file, or from FILE, read after ours."""
        for shown, (line, reason) in enumerate(other.first):
            cause = other.causes[shown] if shown < len(other.causes) else ""
            self.add(line, reason, other.file_of(shown) if file is None else file, cause=cause)
        self.count += other.count - len(other.first)
        self.blank += other.blank

    def shifted(self, lines: int) -> _Skipped:
        """The same rows, numbered LINES lines further down (a part's rows, as lines of the file)."""
        first = [(line + lines, reason) for line, reason in self.first]
        return _Skipped(self.count, first, list(self.files), list(self.causes), self.blank)

    def where(self, shown: int) -> str:
        """'line 3', or 'logs/b.csv line 3' when several files are read."""
        line, file = self.first[shown][0], self.file_of(shown)
        return f"{_display(file)} line {line}" if file else f"line {line}"

    def strict_error(self, path: str) -> InputError:
        """What --strict says of the first skipped row: its file (PATH if one file is read), line and reason."""
        line, reason = self.first[0]
        return InputError(f"{_display(self.file_of(0) or path)}: line {line}: {reason}")

    def cause(self) -> str:
        """The likely cause the first skipped rows suggest most often ('' if none does)."""
        causes = [cause for cause in self.causes if cause]
        return max(causes, key=causes.count) if causes else ""

    def summary(self) -> str:
        """One line for stderr: how many rows were skipped, and where and why the first were."""
        shown = "; ".join(f"{self.where(i)}: {reason}" for i, (_, reason) in enumerate(self.first))
        more = ", ..." if self.count > len(self.first) else ""
        return f"skipped {_plural(self.count, 'malformed row')} ({shown}{more})"


def _plural(count: int, noun: str) -> str:
    """'1 row', '2,000 rows'."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


_GOOD_ROW = "b4f9279a0196e40632e947dd1a88e857,INGEST,401938ed-f16c-407a-9c99-e7132856e7bf,2021-03-01 00:01:11.055+00"
_EPOCH_SECONDS = re.compile(r"\d{9,10}(?:\d{3})?(?:\.\d+)?")
_SLASHED_DATE = re.compile(r"\d{1,2}/\d{1,2}/\d{2,4}\b")


def _likely_cause(text: bytes) -> str:
    """What a malformed row's TEXT suggests is wrong with the whole file: '' when nothing in particular."""
    line = text.decode("utf-8", "replace").removesuffix("\r")
    fields = line.split(",")
    for separator, name in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
        if len(fields) < 4 and len(line.split(separator)) >= 4:
            return f"fields separated by {name}, not commas"
    if [field.strip().strip('"').lower() for field in fields] == _HEADER:
        return "a header not on line 1 (only line 1 may be one)"
    if len(fields) == 5:
        return "a fifth column (an index?): a row has 4 fields"
    timestamp = fields[-1].strip().strip('"')
    if len(fields) == 4 and _EPOCH_SECONDS.fullmatch(timestamp):
        return "timestamps in epoch seconds, not ISO 8601"
    if len(fields) == 4 and _SLASHED_DATE.match(timestamp):
        return "dates written m/d/yyyy, not ISO 8601"
    return ""


def _parse_row(line: bytes) -> tuple[str, int, str, str]:
    """The plain reader: one line (no newline) to (customer_id, UTC microseconds, event_type, transaction_id),
    by the csv module; every field stripped of the whitespace around it."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _Malformed(f"bytes that are not UTF-8 at column {error.start + 1}") from None
    if "\x00" in text:
        raise _Malformed("NUL byte")
    fields = _csv_fields(text.removesuffix("\r"))
    if len(fields) != 4:
        raise _Malformed(f"{_plural(len(fields), 'field')}, expected 4")
    customer = fields[0].strip()
    if not customer:
        raise _Malformed("empty customer_id")
    try:
        return customer, _parse_event_time(fields[3].strip()), fields[1].strip(), fields[2].strip()
    except _BadTimestamp as error:
        raise _Malformed(str(error)) from None


# Spaces between a quoted field's closing quote and the comma after it: `"abc" ,INGEST`.
_SPACE_AFTER_QUOTE = re.compile(r'((?:^|,) *"(?:[^"]|"")*")[ \t]+(?=,|$)')


def _csv_fields(text: str) -> list[str]:
    """The fields of one CSV line, spaces around them allowed, quoted or not."""
    try:
        return next(csv.reader((text,), strict=True, skipinitialspace=True))
    except csv.Error as error:
        loose = _SPACE_AFTER_QUOTE.sub(r"\1", text)
        if loose == text:
            raise _Malformed(f"bad CSV: {error}") from None
    return _csv_fields(loose)


def _is_header(line: bytes) -> bool:
    """Whether LINE is the optional header row."""
    return [f.strip().strip('"').lower() for f in line.decode("utf-8", "replace").split(",")] == _HEADER


# What a compressed file starts with, and how to read it; zstd has no reader in the standard library.
_DECOMPRESSORS: dict[bytes, Callable[[BinaryIO], BinaryIO]] = {
    b"\x1f\x8b": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),  # type: ignore[dict-item]
    b"BZh": lambda raw: bz2.BZ2File(raw, "rb"),  # type: ignore[dict-item]
    b"\xfd7zXZ\x00": lambda raw: lzma.LZMAFile(raw, "rb"),  # type: ignore[dict-item]  # noqa: SIM115
}
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_COMPRESSED = (gzip.GzipFile, bz2.BZ2File, lzma.LZMAFile)
# What a damaged file raises while being read: gzip, zlib, bz2 (an OSError) and lzma each their own.
_READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)


@contextmanager
def _opened(path: str) -> Iterator[BinaryIO]:
    """PATH open for reading, closed after; an error while reading it becomes an InputError naming it."""
    stream = _open_input(path)
    try:
        yield stream
    except _READ_ERRORS as error:
        raise InputError(f"{_display(path)}: cannot read ({error})") from None
    finally:
        if path != "-":
            stream.close()


def _open_input(path: str) -> BinaryIO:
    """A binary stream of PATH ('-' is standard input), decompressed if its first bytes say gzip, bzip2 or xz."""
    if path == "-":
        if sys.stdin is None:  # started with standard input closed (<&-)
            raise InputError("-: standard input is closed")
        raw = sys.stdin.buffer
    else:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - the caller closes it
        except IsADirectoryError:
            raise InputError(f"{_display(path)}: is a directory") from None
        except FileNotFoundError:
            raise InputError(f"{_display(path)}: no such file") from None
        except OSError as error:
            raise InputError(f"{_display(path)}: cannot read ({error.strerror})") from None
    try:
        start = raw.peek(8)
    except OSError as error:
        raise InputError(f"{_display(path)}: cannot read ({error.strerror})") from None
    if start.startswith(_ZSTD_MAGIC):
        raise InputError(f"{_display(path)}: zstd-compressed; decompress it first (zstd -dc FILE | totaler - ...)")
    for magic, decompress in _DECOMPRESSORS.items():
        if start.startswith(magic):
            return decompress(raw)
    return raw


class _Block(NamedTuple):
    """Whole lines of the input: DATA[LO:HI] runs from the newline before its first line to its last newline."""

    data: bytes
    lo: int
    hi: int
    lines: int | None = None  # how many lines it stands for, when known without counting
    too_long: int = 0  # > 0: one line of this many bytes, longer than _MAX_LINE, whose bytes were not kept


_NO_ROW = b"\n\n"  # a block of one line that holds no row: the header, or a line too long to keep


def _read_chunks(stream: BinaryIO, limit: int = -1) -> Iterator[bytes]:
    """STREAM's bytes (or only its next LIMIT bytes, if LIMIT >= 0) in reads of _BLOCK_SIZE."""
    while limit:
        chunk = stream.read(_BLOCK_SIZE if limit < 0 else min(_BLOCK_SIZE, limit))
        if not chunk:
            return
        if limit > 0:
            limit -= len(chunk)
        yield chunk


def _read_blocks(stream: BinaryIO, limit: int = -1, at_start: bool = True) -> Iterator[_Block]:
    """Cut STREAM (or its next LIMIT bytes) into blocks of whole lines; AT_START, drop a BOM and a header on line 1.

    Every line longer than _MAX_LINE, wherever the reads fall, becomes a block of its
    own that keeps none of its bytes: memory is one read plus one line.
    """
    head, over = b"", 0  # the line cut by the end of the last read: its bytes, or its length once too long
    first = at_start  # line 1 is still to come
    for number, chunk in enumerate(_read_chunks(stream, limit)):
        if at_start and number == 0:
            chunk = chunk.removeprefix(_BOM)  # _BLOCK_SIZE is never below len(BOM)
        newline = chunk.find(b"\n")
        if newline < 0:
            head, over = _grown(head, over, chunk)
            continue
        yield _line_block(*_grown(head, over, chunk[:newline]), first)
        first = False
        last = chunk.rfind(b"\n")
        if last > newline:
            yield from _short_line_blocks(chunk, newline, last + 1)
        head, over = _grown(b"", 0, chunk[last + 1 :])
    if head or over:
        yield _line_block(head, over, first)


def _grown(head: bytes, over: int, chunk: bytes) -> tuple[bytes, int]:
    """The line HEAD (or OVER bytes long, too long to keep) continued by CHUNK."""
    if over or len(head) + len(chunk) > _MAX_LINE:
        return b"", (over or len(head)) + len(chunk)
    return head + chunk, 0


def _line_block(line: bytes, over: int, first: bool) -> _Block:
    """A block of one line: LINE, or a line of OVER bytes too long to keep; FIRST, line 1, which may be the header."""
    if over:
        return _Block(_NO_ROW, 0, 2, 1, too_long=over)
    if first and _is_header(line.removesuffix(b"\r")):
        return _Block(_NO_ROW, 0, 2, 1)  # no row, but a line, so that the lines after it are numbered right
    return _Block(b"\n" + line + b"\n", 0, len(line) + 2, 1)


def _short_line_blocks(data: bytes, lo: int, hi: int) -> Iterator[_Block]:
    """DATA[LO:HI], newline to newline, as blocks of lines of at most _MAX_LINE bytes, each longer line on its own."""
    # A line longer than _MAX_LINE holds a whole stride of STEP bytes without a newline,
    # so only such a stride needs a closer look: four finds per 2 MiB read.
    step = (_MAX_LINE + 1) // 2
    start = probe = lo + 1
    while probe < hi:
        if data.find(b"\n", probe, probe + step) >= 0:
            probe += step
            continue
        before, after = data.rfind(b"\n", lo, probe), data.find(b"\n", probe, hi)
        if after - before - 1 > _MAX_LINE:
            if before >= start:
                yield _Block(data, start - 1, before + 1)
            yield _Block(_NO_ROW, 0, 2, 1, too_long=after - before - 1)
            start = after + 1
        probe = after + 1
    if hi > start:
        yield _Block(data, start - 1, hi)


def _block_lines(block: _Block) -> int:
    """How many lines BLOCK stands for."""
    return block.data.count(b"\n", block.lo + 1, block.hi) if block.lines is None else block.lines


def _block_events(block: _Block, first_line: int, skipped: _Skipped) -> Iterator[tuple[str, int, str, str]]:
    """The plain path: every countable event of BLOCK, whose first line is FIRST_LINE, in file order."""
    if block.too_long:
        skipped.add(first_line, f"line of {block.too_long:,} bytes, longer than any row ({_MAX_LINE:,} bytes at most)")
        return
    lines = block.data[block.lo : block.hi].split(b"\n")[1:-1]
    for number, line in enumerate(lines, first_line):
        if not line.strip():
            skipped.blank += 1
            continue
        try:
            yield _parse_row(line)
        except _Malformed as error:
            skipped.add(number, str(error), text=line)


# ---------------------------------------------------------------------------
# The contract: count events per (bucket, customer) inside [start, end).  The whole
# specification is count_events(plain_events(stream), window): _wanted() is the one
# filter (customer, event types) and Buckets.floor the one bucket of an instant;
# everything after this section (the fast path, workers, the cluster, the index)
# must give exactly what they give.


class Window(NamedTuple):
    """The question: [start, end) in UTC microseconds; optionally one customer and some event types; and the
    buckets it counts in (UTC hours unless asked otherwise)."""

    start: int
    end: int
    customer: str | None = None
    buckets: Buckets = _UTC_HOURS
    event_types: frozenset[str] | None = None
    unique: bool = False  # each transaction counted once (--unique)


Event = tuple[str, int, str, str]  # customer_id, instant (UTC microseconds), event_type, transaction_id
Counts = dict[tuple[int, str], int]


def _wanted(window: Window, customer: str, event_type: str) -> bool:
    """Whether WINDOW asks about events of CUSTOMER and EVENT_TYPE, their time aside."""
    return window.customer in (None, customer) and (window.event_types is None or event_type in window.event_types)


def count_events(events: Iterable[Event], window: Window) -> Counts:
    """Count events per (bucket, customer) in WINDOW, in order of first counted event."""
    counts: Counts = {}
    floor = window.buckets.floor
    for customer, instant, event_type, _ in events:
        if window.start <= instant < window.end and _wanted(window, customer, event_type):
            key = (floor(instant), customer)
            counts[key] = counts.get(key, 0) + 1
    return counts


def plain_events(stream: BinaryIO, skipped: _Skipped | None = None) -> Iterator[Event]:
    """Every countable event of STREAM in file order, row by row; bad rows go to SKIPPED."""
    skipped = _Skipped() if skipped is None else skipped
    line = 1
    for block in _read_blocks(stream):
        yield from _block_events(block, line, skipped)
        line += _block_lines(block)


# --unique: each transaction counted once.  The first valid row of the input (files in
# name order, then lines) carrying a transaction_id is the transaction; every later valid
# row carrying it is a duplicate, whatever its time, customer or event type; a row with
# an empty id is never one.  The rule lives in two calls every path makes, in file order:
# _PartIds.marked marks the rows whose id an earlier row of their part carried, and
# _Transactions.added says which of a part's ids no earlier part carried.  A row counts
# under --unique when it is first in its part and its id new to the input, or empty.


_REPEATED = -2  # the number of a row whose id an earlier row of its part carried (-1: an empty id)


class _PartIds:
    """The transaction ids of one part of the input read so far, each numbered once, in order of first row."""

    def __init__(self) -> None:
        self.first_rows: dict[bytes, int] = {}  # each id's first row in the part, in order: its number is its place
        self.rows = 0  # the part's rows marked so far
        self.keys: list[bytes | None] | bytes | None = None  # sealed: the ids as keys

    def marked(self, ids: list[bytes]) -> list[int]:
        """For each of IDS (the next rows of the part, in file order, UTF-8, stripped), its id's number; REPEATED
        where an earlier row of the part carried it, -1 where it is empty (an empty id is carried by none)."""
        rows = range(self.rows, self.rows + len(ids))
        self.rows += len(ids)
        numbered = len(self.first_rows)
        # A row is its id's first where setdefault keeps the row it offers, in C: 0.3 us a row, where a dict of
        # each id's first row and a set of those an earlier batch carried took 0.5 to 0.7.
        firsts = list(map(eq, map(self.first_rows.setdefault, ids, rows), rows))
        empty = self.first_rows.pop(b"", None) is not None  # an empty id is no transaction: never repeated
        if empty:
            firsts = list(map(and_, firsts, map(truth, ids)))
        numbers = islice(accumulate(firsts, initial=numbered - 1), 1, None)  # a first row's: the firsts before it
        marked = list(map(getitem, zip(repeat(_REPEATED), numbers), firsts))  # (REPEATED, number)[first]
        return list(map(getitem, zip(marked, repeat(-1)), map(not_, ids))) if empty else marked

    def ids(self) -> list[bytes]:
        """The part's ids, in the order of their numbers."""
        return list(self.first_rows)

    def seal(self) -> None:
        """In a worker, once its part is read: the ids as keys, so that settling them is all the merger does; one
        bytes of them, and the ids dropped, where each id has a key (a list of them took as long to send as to
        read)."""
        self.keys = _id_keys(self.ids())
        if isinstance(self.keys, bytes):
            self.first_rows = {}

    def settle(self, transactions: _Transactions) -> list[bool]:
        """For each of the part's ids, by number, whether no earlier part carried it (TRANSACTIONS, their ids,
        which then hold ours too); then a number too many, and one too few: False (a row whose id an earlier
        row of the part carried) and True (a row with an empty id)."""
        if isinstance(self.keys, bytes):
            new = transactions.keys.added(_split_keys(self.keys))
        else:
            new = transactions.added(self.ids(), self.keys) if self.first_rows else []
        return [*new, False, True]


def _first_events(events: Iterable[Event], part: _PartIds, transactions: _Transactions) -> Iterator[Event]:
    """EVENTS, in file order, but for the duplicates (the plain path's --unique: the rule, a row at a time)."""
    for event in events:
        key = event[3].encode("utf-8", "surrogateescape")
        (number,) = part.marked([key])
        if number == -1 or (number != _REPEATED and transactions.added([key])[0]):
            yield event


_KEY_SIZE = 17  # a key: one byte for the id's shape, then 16 bytes
_UUID_SHAPE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX_SHAPE = re.compile(rb"[0-9a-f]{32}")
_HEX_DIGITS = b"0123456789abcdef"
# Shapes whose ids become their 16 bytes of digits: (shape byte, length with its newline, where its hyphens are).
_DIGIT_SHAPES = ((b"\x01", 37, (8, 13, 18, 23)), (b"\x02", 33, ()))
_SHORT_ID = 15  # bytes: an id this short is its own key (shape 3), padded with NULs, then its length
_LENGTH = [bytes([_n]) for _n in range(_SHORT_ID + 1)]


def _id_key(key: bytes) -> bytes | None:
    """The 17-byte key of one transaction id, or None when it is kept as it is: shape, then its bytes."""
    if len(key) <= _SHORT_ID:
        return b"\x03" + key.ljust(_SHORT_ID, b"\0") + _LENGTH[len(key)]
    if _UUID_SHAPE.fullmatch(key):
        return b"\x01" + bytes.fromhex(key.replace(b"-", b"").decode())
    if _HEX_SHAPE.fullmatch(key):
        return b"\x02" + bytes.fromhex(key.decode())
    return None


def _digit_keys(ids: list[bytes]) -> bytes | None:
    """The keys of IDS, one after another, where all share a shape of digits (a UUID's, or 32 hex digits); else
    None: a few passes of C over them all (0.4 us an id against _id_key's 1.2)."""
    joined, count = b"\n".join(ids) + b"\n", len(ids)
    for shape, length, hyphens in _DIGIT_SHAPES:
        if len(joined) != length * count or joined[length - 1 :: length] != b"\n" * count:
            continue
        if any(joined[at::length] != b"-" * count for at in hyphens):
            continue
        digits = joined.replace(b"-", b"")
        if len(digits) != 33 * count or digits.translate(None, _HEX_DIGITS + b"\n"):
            continue
        return bytes.fromhex((shape.hex().encode() + digits[:-1]).replace(b"\n", shape.hex().encode()).decode())
    return None


def _id_keys(ids: list[bytes]) -> list[bytes | None] | bytes:
    """The key of each of IDS (None: kept as it is), as _id_key gives it; one bytes of them where each has one.
    Where most have the length of a shape of digits, those are keyed by _digit_keys and the rest one by one
    (events.csv's ids: 2,728 of 147,370 are UUIDs and a suffix, and one by one all took 1.4 us an id)."""
    if (keys := _digit_keys(ids)) is not None:
        return keys
    lengths = list(map(len, ids))
    for _, length, _ in _DIGIT_SHAPES:
        shaped = list(map(eq, lengths, repeat(length - 1)))
        if 2 * shaped.count(True) > len(ids) and (keys := _digit_keys(list(compress(ids, shaped)))) is not None:
            digits, others = iter(_split_keys(keys)), map(_id_key, compress(ids, map(not_, shaped)))
            each = [next(digits) if is_shaped else next(others) for is_shaped in shaped]
            break
    else:
        each = list(map(_id_key, ids))
    return each if None in each else b"".join(each)  # type: ignore[arg-type]


def _split_keys(keys: bytes) -> list[bytes]:
    """KEYS, one after another, as a list."""
    return list(
        map(keys.__getitem__, map(slice, range(0, len(keys), _KEY_SIZE), range(_KEY_SIZE, len(keys) + 1, _KEY_SIZE)))
    )


class _KeyTable:
    """An exact set of 17-byte keys in one bytearray of cells, open addressing by double hashing; an empty cell
    is all NULs, which no key is (its first byte is its shape).  It grows to twice its cells when 7 in 10 are
    taken: 24 to 49 bytes a key.  A loop a key, in Python: a set of the keys took 100 bytes one."""

    def __init__(self, cells: int = 1 << 10) -> None:
        self.cells, self.count, self.table = cells, 0, bytearray(_KEY_SIZE * cells)

    def added(self, keys: list[bytes]) -> list[bool]:
        """For each of KEYS (distinct), whether it is new; the new ones are added."""
        new: list[bool] = []
        done = 0
        while done < len(keys):
            room = _held(self.cells) - self.count  # keys it may take before it grows: it grows only when full
            if room <= 0:
                self.grow()
                continue
            new += self.probed(keys[done : done + room])
            done += room
        return new

    def probed(self, keys: list[bytes]) -> list[bool]:
        """Look up and add KEYS (distinct), for which there is room: linear probing, whose next cell is most often
        in the same cache line (double hashing took 0.86 us a new key, this 0.6)."""
        table, end, cells, new = self.table, _KEY_SIZE * self.cells, self.cells, []
        starts, append = table.startswith, new.append
        for key in keys:
            at = hash(key) % cells * _KEY_SIZE
            while True:
                # An empty cell by its first byte, which no key's is: 1.6 against 2.0 us a new key (3 million
                # UUIDs), where the cell was compared with an empty key too.
                if not table[at]:
                    table[at : at + _KEY_SIZE] = key
                    append(True)
                    break
                if starts(key, at):
                    append(False)
                    break
                at += _KEY_SIZE
                if at == end:
                    at = 0
        self.count += new.count(True)
        return new

    def reserve(self, count: int) -> None:
        """Room for COUNT keys in all, made at once (the fewest cells, a power of two, that hold them 7 in 10)."""
        cells = self.cells
        while _held(cells) < count:
            cells *= 2
        if cells > self.cells:
            self.grow(cells)

    def grow(self, cells: int = 0) -> None:
        """Twice the cells (or CELLS), every key moved to its place there, a slice of the old cells at a time (a
        list of every key would take 60 bytes one)."""
        old, size, empty = self.table, _KEY_SIZE * _GROW_CELLS, bytes(_KEY_SIZE)
        self.__init__(cells or 2 * self.cells)  # type: ignore[misc]
        table, end, cells, moved = self.table, len(self.table), self.cells, 0
        for lo in range(0, len(old), size):
            hi = min(lo + size, len(old))
            # distinct, and new to the table: only a free cell is looked for
            for key in filter(empty.__ne__, _split_keys(bytes(old[lo:hi]))):
                at = hash(key) % cells * _KEY_SIZE
                while table[at]:
                    at = at + _KEY_SIZE if at + _KEY_SIZE < end else 0
                table[at : at + _KEY_SIZE] = key
                moved += 1
        self.count = moved


_GROW_CELLS = 1 << 16


def _held(cells: int) -> int:
    """The keys a _KeyTable of CELLS cells holds before it grows: 7 in 10 cells taken at most."""
    return 7 * cells // 10


class _Transactions:
    """Every transaction id of the input's earlier parts, exactly: 17-byte keys in a _KeyTable, other ids (longer
    than _SHORT_ID and not shaped like a UUID or 32 hex digits) as they are, in a set."""

    def __init__(self) -> None:
        self.keys = _KeyTable()
        self.others: set[bytes] = set()
        self.merged = (0, 0)  # bytes of the file settled, and keys held then (expect)

    @property
    def held(self) -> int:
        """How many ids it holds."""
        return self.keys.count + len(self.others)

    def expect(self, done: int, total: int) -> None:
        """Told that DONE of a file's TOTAL bytes are settled: room for the keys the rest will likely add, at the
        last part's rate, made at once.  One growth moves each key once, where doubling again and again moved
        each about once more (37% of the time to settle 64 MiB of 10 million distinct ids).  Not after a file's
        first part, whose ids are all new even where every later part repeats them."""
        before, held = self.merged
        if 0 < before < done:
            self.keys.reserve(self.keys.count + (self.keys.count - held) * (total - done) // (done - before))
        self.merged = (done, self.keys.count)

    def added(self, ids: list[bytes], keys: list[bytes | None] | bytes | None = None) -> list[bool]:
        """For each of IDS (one part's, distinct, none empty), whether no earlier part carried it; all remembered.
        KEYS: theirs by _id_keys, if made already."""
        keys = _id_keys(ids) if keys is None else keys
        if isinstance(keys, bytes):
            return self.keys.added(_split_keys(keys))
        new, fresh = [], iter(self.keys.added([key for key in keys if key is not None]))
        for text, key in zip(ids, keys, strict=True):  # a loop an id: ids of mixed shapes are rare
            if key is None:
                new.append(text not in self.others)
                self.others.add(text)
            else:
                new.append(next(fresh))
        return new


def _merge_counts(total: Counts, later: Counts) -> None:
    """Add LATER, which comes later in the file, into TOTAL, keeping first-seen order."""
    for key, n in later.items():
        total[key] = total.get(key, 0) + n


# ---------------------------------------------------------------------------
# Rendering: the reference program's text, its JSON, and CSV.


def _bucket_starts(window: Window) -> Iterable[int]:
    """Every bucket an instant of the window falls in, in time order, by its first instant."""
    return window.buckets.starts(window.start, window.end)


def _by_bucket(counts: Counts, window: Window) -> list[tuple[int, list[tuple[str, int]]]]:
    """The answer: each bucket in time order with its (customer, count) pairs."""
    table: dict[int, list[tuple[str, int]]] = {b: [] for b in _bucket_starts(window)}
    for (bucket, customer), n in counts.items():
        table[bucket].append((customer, n))
    if window.customer is not None:
        for bucket, pairs in table.items():
            table[bucket] = pairs or [(window.customer, 0)]
    return list(table.items())


def _format_bound(micros: int, buckets: Buckets) -> str:
    """A bound as the text report prints it: 2021-03-01 04:00:00 UTC, or in the buckets' zone with its offset
    (2021-03-01 09:30:00 +0530); a fraction if any."""
    if buckets.zone == "UTC":
        return _format_utc(micros)
    try:
        label, fraction = buckets.label(micros), micros % 1_000_000
    except OverflowError:  # an end at the midnight that ends the year 9999 in a zone ahead of UTC: ISO 8601's 24:00
        before = buckets.label(micros - 1)
        return f"{before[:11]}24:00:00{before[19:]}"
    return f"{label[:19]}.{fraction:06d}{label[19:]}" if fraction else label  # after the seconds


def render_text(path: str, window: Window, counts: Counts) -> str:
    """The reference's text report."""
    start, end = _format_bound(window.start, window.buckets), _format_bound(window.end, window.buckets)
    lines = [f"Input file: {path}", f"Start time: {start}", f"End time: {end}"]
    if window.customer is not None:
        lines.append(f"Customer ID: {window.customer}")
    label = window.buckets.label
    for bucket, pairs in _by_bucket(counts, window):
        lines += ["", f"Timebucket: {label(bucket)}"]
        lines += [f"Customer ID: {customer} Calls: {n}" for customer, n in pairs]
    return "\n".join(lines) + "\n"


def render_json(window: Window, counts: Counts) -> str:
    """The reference's JSON: buckets in time order, customers in first-seen order.

    Exactly json.dumps(document, indent=2) plus a newline, written out by hand:
    with indent, json falls back to its pure-Python encoder, half of an HTTP reply's time.
    Whole days without events are written from one template each where a day's buckets
    are alike (a zone that never changes its offset): a window of 100,000 hours then
    costs milliseconds, not a loop of 100,000 formatted keys.
    """
    table = _customers_by_bucket(counts)
    buckets = window.buckets
    fixed = _fixed_offset(buckets.zone)
    busy = {bucket - (bucket + fixed) % _DAY for bucket in table} if fixed is not None else set()  # days
    empty = "{}" if window.customer is None else f"{{\n    {quote(window.customer)}: 0\n  }}"
    entries = []
    bucket = buckets.floor(window.start)
    while bucket < window.end:
        if fixed is not None and (bucket + fixed) % _DAY == 0 and bucket + _DAY <= window.end and bucket not in busy:
            entries.append(_empty_day(empty, buckets).replace("\0", buckets.label(bucket)[:10]))
            bucket += _DAY
            continue
        # A list, not a generator, and a dict a bucket, not tuples: 26-35 ms, not 48-56, for 62,000 pairs.
        customers = table.get(bucket)
        inner = ",\n".join([f"    {quote(customer)}: {n}" for customer, n in customers.items()]) if customers else ""
        entries.append(f'  "{buckets.label(bucket)}": ' + (f"{{\n{inner}\n  }}" if customers else empty))
        bucket = buckets.following(bucket)
    return "{\n" + ",\n".join(entries) + "\n}\n"


def _customers_by_bucket(counts: Counts) -> dict[int, dict[str, int]]:
    """COUNTS as {bucket: {customer: count}}, customers in their order."""
    table: dict[int, dict[str, int]] = {}
    for (bucket, customer), n in counts.items():
        if (customers := table.get(bucket)) is None:
            customers = table[bucket] = {}
        customers[customer] = n
    return table


@lru_cache(maxsize=16)
def _empty_day(empty: str, buckets: Buckets) -> str:
    """A day of empty buckets holding EMPTY in a zone of fixed offset, its date left as NUL (which quote()
    never writes) to fill in."""
    offset = _format_offset(_fixed_offset(buckets.zone) or 0)
    times = [f"{start // _HOUR:02d}:{start % _HOUR // _MINUTE:02d}:00" for start in range(0, _DAY, buckets.width)]
    return ",\n".join(f'  "\0 {time} {offset}": {empty}' for time in times)


def render_csv(window: Window, counts: Counts) -> str:
    """The answer as CSV (RFC 4180 quoting, \n line ends): bucket,customer_id,count, a line per customer of
    each bucket in the JSON's order; an empty bucket has no line unless one customer is asked about."""
    lines = ["bucket,customer_id,count"]
    if window.customer is None:  # only buckets with counts have lines: no walk over the empty ones (466,000
        # minutes in UTC: 0.57 s, in a zone that changes its offset 4.5 s, where every bucket was walked)
        by_bucket = sorted(_customers_by_bucket(counts).items(), key=itemgetter(0))
        table: Iterable = [(bucket, customers.items()) for bucket, customers in by_bucket]
    else:
        table = _by_bucket(counts, window)
    for bucket, pairs in table:
        label = window.buckets.label(bucket)
        lines += [f"{label},{_csv_field(customer)},{n}" for customer, n in pairs]
    return "\n".join(lines) + "\n"


_NEEDS_QUOTES = re.compile(r'[,"\r\n]')


def _csv_field(text: str) -> str:
    """TEXT as a CSV field: quoted, its quotes doubled, if it holds a comma, a quote, CR or LF (RFC 4180; the
    csv module, told of \n line ends, would leave a CR bare)."""
    return '"' + text.replace('"', '""') + '"' if _NEEDS_QUOTES.search(text) else text


_RENDERINGS = {"json": render_json, "csv": render_csv}


# ---------------------------------------------------------------------------
# The question as a person types it: a window [START, END), maybe one customer and
# some event types, and the buckets, checked the same way on the command line and
# in an HTTP query.


class UsageError(Exception):
    """A bad command line (exit status 2)."""


def parse_window(
    start: str,
    end: str,
    customer: str | None,
    max_hours: int,
    names: tuple[str, str, str] = ("START", "END", "CUSTOMER_ID"),
    buckets: Buckets = _UTC_HOURS,
    event_types: Iterable[str] | None = None,
) -> Window:
    """Check and convert the window arguments (bounds without an offset are wall times in the buckets' zone);
    raise UsageError naming the bad one as NAMES does."""
    if customer is not None and not customer.strip():
        raise UsageError(f"{names[2]} is empty: leave it out to count every customer")
    bounds = []
    for name, text in zip(names[:2], (start, end), strict=True):
        try:
            bounds.append(_parse_bound(text, buckets.zone))
        except _BadTimestamp as error:
            raise UsageError(f"{name} {error}") from None
    types = None if event_types is None else frozenset(event_types)
    window = Window(bounds[0], bounds[1], customer, buckets, types)
    if window.start >= window.end:
        raise UsageError(f"{names[0]} {start!r} is not before {names[1]} {end!r}")
    if window.end - window.start > max_hours * _HOUR:
        raise UsageError(f"window {start!r} to {end!r} is longer than --max-hours {max_hours}")
    try:  # the first and last buckets must be printable: their local dates within the years 1 to 9999
        buckets.label(buckets.floor(window.start)) and buckets.label(buckets.floor(window.end - 1))
    except (OverflowError, ValueError):
        raise UsageError(f"window {start!r} to {end!r} falls outside the years 1 to 9999 in {buckets.zone}") from None
    return window


# ---------------------------------------------------------------------------
# The fast path.  Most rows of a log look alike: ASCII fields with no quote or
# comma inside, and an ISO timestamp with a fixed zone.  Regular expressions
# prove a whole block has such a shape and hand back (customer, hour key, zone)
# keys in file order, so C does the per-row work: by runs of rows that share
# customer, hour and zone (one match a run) where the log comes in runs, else four
# rows a match; where few rows of a block can fall in the window, only those (sparse
# blocks, below).  A block with any other row is cut in two at a newline until the
# odd rows sit in small blocks that go through _parse_row, the plain path.  The
# fast path counts exactly what the plain path counts, in the same order
# (tests/test_fast_path.py proves it on generated files of every shape).
#
# Shapes: fields bare, or each wrapped in double quotes ("abc","INGEST",...,
# what csv.QUOTE_ALL and spreadsheets write); zones Z, ±HH, ±HHMM, ±HH:MM or none
# (UTC).  A whole-hour zone maps an (hour key, zone) pair to one UTC bucket.  A
# zone with minutes (+05:30) splits a local hour across two UTC hours: its rows
# are timed one by one, as are the rows of an hour the window cuts, and so is
# every row of a bucket that such rows reach, so that customers keep file order.

# Possessive quantifiers (3.11) keep the engine from saving states it will never
# backtrack to; month, day and hour are checked once per distinct hour key.
_CUSTOMER = rb"[!#-+\--~]{1,256}+"  # printable ASCII without space, comma or quote
_FIELD = rb"[ !#-+\--~]{0,1024}+"
# The same, for a block _plain_bytes passed: [^,] runs in C without a character class (rows in no order, a
# 2 MiB block: findall 0.37 us a row against 0.42), and what the class refuses is ruled out for the block.
_LOOSE_FIELD = rb"[^,]{0,1024}+"
_DATE_HOUR = rb"\d{4}-\d\d-\d\d[ T]\d\d"
_SECONDS = rb":[0-5]\d(?:\.\d{1,6}+)?+"
_MINUTES = rb":[0-5]\d" + _SECONDS
_ZONE = rb"(?:Z|[+-](?:[01]\d|2[0-3])(?::?[0-5]\d)?+)?+"  # a subset of what fromisoformat reads
_WHOLE_HOUR_ZONE = rb"(?:Z|[+-](?:[01]\d|2[0-3])(?::?00)?+)?+"
_ZONE_AT_END = re.compile(rb"\d(" + _ZONE + rb')"?\r?\Z')
# Four rows a match: a quarter of the matches and tuples, and Counter keys that
# repeat just as often in a log where neighbours share customer and hour.
_GROUP = 4
_SMALL_BLOCK = 1 << 16  # bytes: a block this small with odd rows goes to the plain path, not cut again
_Pairs = dict[tuple[bytes, bytes, bytes], int]  # rows per (customer, key, zone), in first-seen order


class _Unproved(Exception):
    """A row matched the fast pattern but is not a valid instant (say, February 30)."""


@lru_cache(maxsize=1 << 16)
def _hour_key_utc(key: bytes) -> int:
    """The start of an hour key like b'2021-03-01 04' read as UTC (cached: a log has few hours)."""
    try:
        return _to_micros(datetime(int(key[:4]), int(key[5:7]), int(key[8:10]), int(key[11:13])))
    except ValueError:
        raise _Unproved(key) from None


@lru_cache(maxsize=256)
def _zone_micros(zone: bytes) -> int:
    """How far a zone like b'+05:30' is ahead of UTC; b'' and b'Z' are UTC."""
    if zone in (b"", b"Z"):
        return 0
    digits = zone[1:].replace(b":", b"")
    micros = (int(digits[:2]) * 60 + int(digits[2:4] or 0)) * 60_000_000
    return -micros if zone[:1] == b"-" else micros


_EARLY, _LATE = b"<", b">"  # marks on a zone with minutes: the row's minute is before, or from, the UTC hour's turn


def _unmarked(zone: bytes) -> bytes:
    """A zone without its early or late mark."""
    return zone.rstrip(_EARLY + _LATE)


@lru_cache(maxsize=1 << 16)
def _local_hour_start(key: bytes, zone: bytes) -> int:
    """The UTC instant at which the local hour KEY of ZONE begins; _Unproved unless all of that hour lies in
    years 1 to 9999 in UTC (rows of an hour at either end go to the plain path, which decides row by row)."""
    start = _hour_key_utc(key) - _zone_micros(zone)
    if not _FIRST_INSTANT <= start <= _LAST_INSTANT + 1 - _HOUR:
        raise _Unproved(key)
    return start


@lru_cache(maxsize=1 << 16)
def _key_utc_start(key: bytes, zone: bytes) -> int | None:
    """The UTC hour (or, for a slot key like b'2021-03-01 04:3' and a marked zone, the five minutes) of every row
    with this key and zone; None for an hour key when the zone has minutes and no mark."""
    mark = zone[-1:]
    if len(key) > 13:
        minutes = int(key[14:15]) * 10 + (5 if mark == _LATE else 0)
        return _local_hour_start(key[:13], _unmarked(zone)) + minutes * _MINUTE
    start = _local_hour_start(key, _unmarked(zone))
    if mark in (_EARLY, _LATE):
        return _hour_floor(start) + (_HOUR if mark == _LATE else 0)
    return None if _zone_micros(zone) % _HOUR else start


def _reach(key: bytes, zone: bytes) -> tuple[int, ...]:
    """The UTC hours (or slot) the rows of a key and (unmarked) zone can fall in: two hours when the zone has
    minutes."""
    if len(key) > 13:  # a slot key, and its two halves
        return tuple(_key_utc_start(key, zone + mark) for mark in (_EARLY, _LATE))  # type: ignore[misc]
    first = _hour_floor(_local_hour_start(key, zone))
    return (first,) if _zone_micros(zone) % _HOUR == 0 else (first, first + _HOUR)


def _late_minutes(zone: bytes) -> bytes:
    """A pattern of the minutes from which a local hour's rows fall in the next UTC hour (zone +05:30: 30 to 59)."""
    # With a zone O minutes ahead of UTC, local minute m of an hour lands in the
    # next UTC hour exactly when m >= O mod 60.
    turn = _zone_micros(zone) // 60_000_000 % 60
    tens, units = divmod(turn, 10)
    return rb"(?:%d[%d-9]" % (tens, units) + (rb"|[%d-5]\d)" % (tens + 1) if tens < 5 else rb")")


class _RowShape(NamedTuple):
    """How the rows of a block are matched: QUOTED, every field in double quotes; LOOSE, the two middle fields
    any bytes but a comma (in a block _plain_bytes passed); TYPED, the event type captured with the customer
    (a question about some event types): "customer,type" as one capture, so every pattern keeps its groups;
    SLOTS, rows keyed by the five minutes they fall in, not their hour (buckets whose boundaries are not on UTC
    hours): the key takes the minute's first digit, and the colon after it is captured by one group for the
    minutes 0-4 of that ten and by another for 5-9, so that a backreference keeps a run in its five minutes."""

    quoted: bool
    loose: bool = False
    typed: bool = False
    slots: bool = False


_SLOT = 5 * _MINUTE


def _key_pattern(shape: _RowShape) -> tuple[bytes, bytes]:
    """The pattern of a row's key (date and hour; and the minute's first digit, then the two colon groups, if
    SLOTS), and of the rest of its time up to the zone."""
    if shape.slots:
        return _DATE_HOUR + rb":[0-5]", rb"(?:[0-4](:)|[5-9](:))[0-5]\d(?:\.\d{1,6}+)?+"
    return _DATE_HOUR, _MINUTES


def _slot_zone(zone: bytes, early: bytes) -> bytes:
    """ZONE marked with the half of its ten minutes a slot key's row is in: EARLY (0-4, the first colon group
    matched) or LATE (5-9)."""
    return zone + (_EARLY if early else _LATE)


def _row_frame(shape: _RowShape) -> tuple[bytes, bytes]:
    """The pattern of a row up to its timestamp, capturing the customer (and event type, if TYPED), and of what
    follows the zone."""
    q = b'"' if shape.quoted else b""
    field = _LOOSE_FIELD if shape.loose else _FIELD
    customer = rb"(" + _CUSTOMER + (q + rb"," + q + field + rb")" if shape.typed else rb")")
    start = rb"\n" + q + customer + q + (rb"," + q + field + q) * (1 if shape.typed else 2) + rb"," + q
    return start, q + rb"\r?"


def _plain_bytes(data: bytes, lo: int, hi: int) -> bool:
    """Whether DATA[LO:HI] is ASCII with no quote or NUL and \r only before a newline: then the plain path reads
    a field of any other bytes but a comma as one field, and a row whose middle fields hold them as valid."""
    if not data[lo:hi].isascii() or data.find(b'"', lo, hi) >= 0 or data.find(b"\0", lo, hi) >= 0:
        return False
    return data.find(b"\r", lo, hi) < 0 or data.count(b"\r", lo, hi) == data.count(b"\r\n", lo, hi)


_TIME_IN_HOUR = rb"([0-5]\d:[0-5]\d)(?:\.(\d{1,3}+)(\d{0,3}+))?+"  # "MM:SS", fraction's first 3 digits, the rest


@lru_cache(maxsize=64)
def _timed_rows_pattern(keys: bytes, shape: _RowShape) -> re.Pattern[bytes]:
    """Rows whose hour key matches KEYS (a pattern): customer, hour key, "MM:SS", a fraction's first three
    digits and the rest, zone."""
    start, end = _row_frame(shape)
    exact_time = rb"(" + keys + rb"):" + _TIME_IN_HOUR + rb"(" + _ZONE + rb")"
    return re.compile(start + exact_time + end + rb"(?=\n)")


# Each part of a time in the hour as one dict lookup, in microseconds: "MM:SS", then up
# to three digits of fraction (".5" is 500,000), then up to three more (".0551": 100).
_MINUTE_SECOND = {b"%02d:%02d" % divmod(_second, 60): _second * 10**6 for _second in range(3600)}
_MILLIS = {b"": 0} | {b"%0*d" % (_n, _k): _k * 10 ** (6 - _n) for _n in (1, 2, 3) for _k in range(10**_n)}
_MICROS = {b"": 0} | {b"%0*d" % (_n, _k): _k * 10 ** (3 - _n) for _n in (1, 2, 3) for _k in range(10**_n)}


def _micros_in_hour(minute_seconds: Iterable[bytes], millis: Iterable[bytes], micros: Iterable[bytes]) -> list[int]:
    """Microseconds into the hour of each row's "MM:SS", fraction's first three digits and the rest."""
    in_hour = map(add, map(_MINUTE_SECOND.__getitem__, minute_seconds), map(_MILLIS.__getitem__, millis))
    return list(map(add, in_hour, map(_MICROS.__getitem__, micros)))


def _decoded(customers: Iterable[bytes], shape: _RowShape, window: Window | None) -> list[str | None]:
    """The customers captured as text, each distinct one decoded once; None for those of a customer or event
    type WINDOW does not ask about (None: every one is wanted)."""
    customers = tuple(customers)
    if window is None or not (shape.typed or window.customer):
        names = {customer: customer.decode() for customer in set(customers)}
    else:
        names = {captured: _wanted_name(captured.decode(), shape, window) for captured in set(customers)}
    return list(map(names.__getitem__, customers))


def _wanted_name(captured: str, shape: _RowShape, window: Window) -> str | None:
    """The customer of CAPTURED ("customer,type" if TYPED, with the quotes between), if WINDOW wants its events."""
    customer, event_type = captured, ""
    if shape.typed:
        customer, _, event_type = captured.partition(",")
        if shape.quoted:
            customer, event_type = customer[:-1], event_type[1:]
    return customer if _wanted(window, customer, event_type.strip()) else None


def _row_columns(
    rows: list[tuple[bytes, ...]], shape: _RowShape, window: Window | None = None
) -> tuple[list[str | None], list[int], list[int]]:
    """Customers (None: not asked about by WINDOW), UTC hours and microseconds into the hour of
    _timed_rows_pattern's ROWS: each column a map that C runs."""
    # Plainly: for each row, instant = _hour_key_utc(key) - zone + minutes, seconds and fraction;
    # bucket = _hour_floor(instant).  Map chains and dict lookups do it in C, each customer is
    # decoded once, and a whole-hour zone's hour start is the bucket: a 2 MiB block of the
    # 10-million-row file in 0.37 us a row instead of 0.69.
    if not rows:
        return [], [], []
    customers, *times = zip(*rows, strict=True)
    return _decoded(customers, shape, window), *_row_times(*times)  # type: ignore[return-value]


def _row_times(
    keys: tuple[bytes, ...],
    minute_seconds: tuple[bytes, ...],
    millis: tuple[bytes, ...],
    micros: tuple[bytes, ...],
    zones: tuple[bytes, ...],
) -> tuple[list[int], list[int]]:
    """The UTC hour and microseconds into it of each row, from the columns of its hour key, "MM:SS", fraction's
    first three digits and the rest, and zone (as _timed_rows_pattern captures them)."""
    in_hour = _micros_in_hour(minute_seconds, millis, micros)
    starts = list(map(_local_hour_start, keys, zones))
    if not any(_zone_micros(zone) % _HOUR for zone in set(zones)):
        return starts, in_hour
    instants = list(map(add, starts, in_hour))
    in_hour = list(map(mod, instants, repeat(_HOUR)))
    return list(map(sub, instants, in_hour)), in_hour


@lru_cache(maxsize=64)
def _row_pattern(rows: int, zone: bytes | None, shape: _RowShape) -> re.Pattern[bytes]:
    """ROWS consecutive rows of a fast shape, capturing customer, hour key and (unless ZONE is given) zone of each.

    ZONE, when known, is the one zone every row ends with: a literal is cheaper than
    the alternatives, and leaves one capture fewer (capturing it anyway made shuffled
    rows of few customers 8% slower, and saved a loop a key only where keys rarely repeat).
    """
    start, end = _row_frame(shape)
    key, rest = _key_pattern(shape)
    if zone is None:
        timestamp = rest + rb"(" + _ZONE + rb")"
    elif _zone_micros(zone) % _HOUR and not shape.slots:  # a late minute's first digit, nothing for an early one
        timestamp = rb":(?:(?=" + _late_minutes(zone) + rb")(\d)\d|[0-5]\d)" + _SECONDS + re.escape(zone)
    else:
        timestamp = rest + re.escape(zone)
    return re.compile((start + rb"(" + key + rb")" + timestamp + end) * rows + rb"(?=\n)")


def _line_zone(line: bytes) -> bytes | None:
    """The zone LINE's timestamp ends with (b'' for none), or None if it does not end like a timestamp."""
    found = _ZONE_AT_END.search(line, max(0, len(line) - 16))
    return found.group(1) if found else None


def _shared_zone(data: bytes, lo: int, hi: int) -> bytes | None:
    """The zone of the first and the last line of DATA[LO:HI], if they agree."""
    first = _line_zone(data[lo + 1 : data.find(b"\n", lo + 1, hi)])
    last = _line_zone(data[data.rfind(b"\n", lo, hi - 1) + 1 : hi - 1])
    return first if first == last else None


def _match_rows(
    data: bytes, lo: int, hi: int, lines: int, zone: bytes | None, shape: _RowShape, group: int = _GROUP
) -> tuple[_Pairs, int]:
    """Rows per (customer, key, zone) of the fast-shaped rows of DATA[LO:HI], first-seen order; and how many.

    GROUP rows a match where neighbours repeat, else one: Counter then counts in C.  A LOOSE middle field
    that ran across a newline would leave fewer rows than lines.
    """
    # The first lines % GROUP lines go one by one, the rest GROUP at a time: the
    # groups can then only account for all their lines if every line has a fast shape.
    split = lo if group > 1 else hi - 1  # one row a match: all of them go one by one
    for _ in range(lines % group):
        split = data.find(b"\n", split + 1)
    keys: Counter[tuple[bytes, ...]] = Counter(_row_pattern(1, zone, shape).findall(data, lo, split + 1))
    rows = keys.total()
    if group > 1:
        groups = Counter(_row_pattern(group, zone, shape).findall(data, split, hi))
        rows += group * groups.total()
        # Plainly: for each group, n times, for each of its rows, keys[row] += 1.
        # zip(*[flat] * width) cuts the flattened groups into rows without a Python loop a row.
        width = (3 if zone is None or (_zone_micros(zone) % _HOUR and not shape.slots) else 2) + 2 * shape.slots
        flat = iter(chain.from_iterable(groups))
        weights = chain.from_iterable(repeat(n, group) for n in groups.values())
        for key, n in zip(zip(*[flat] * width, strict=True), weights, strict=True):
            keys[key] += n
    return _with_zones(keys, zone, shape.slots), rows


def _with_zones(keys: Counter[tuple[bytes, ...]], zone: bytes | None, slots: bool = False) -> _Pairs:
    """_Pairs from _match_rows' KEYS: as they are when each row's zone was captured, else with ZONE; marked for an
    hour key in a zone with minutes, and for a slot key (its half of the ten minutes)."""
    if slots:
        pairs: _Pairs = {}
        for (customer, key, early, *_, captured), n in keys.items():  # the zone ZONE, or the one captured
            pair = (customer, key, _slot_zone(captured if zone is None else zone, early))
            pairs[pair] = pairs.get(pair, 0) + n
        return pairs
    if zone is None:
        return keys  # type: ignore[return-value]
    if _zone_micros(zone) % _HOUR:
        marked: _Pairs = {}
        for (customer, key, late), n in keys.items():  # late is the minute's first digit: 3, 4 and 5 add up
            pair = (customer, key, zone + (_LATE if late else _EARLY))
            marked[pair] = marked.get(pair, 0) + n
        return marked
    return {(customer, key, zone): n for (customer, key), n in keys.items()}


@lru_cache(maxsize=8)
def _run_pattern(shape: _RowShape, zones: bytes = _WHOLE_HOUR_ZONE) -> re.Pattern[bytes]:
    """A run of rows that share customer (and event type, if TYPED), key (hour or slot) and a zone of ZONES (whole-hour
    ones unless told): captures the run, customer, key and zone.  Middle fields are never loose here."""
    # Most logs come in runs (events.csv averages 36 rows of one customer in one
    # hour): the backreferences check the rows after the first without making a
    # string for any of them, so a run costs one match and one tuple.
    start, end = _row_frame(shape._replace(loose=False))
    key, rest = _key_pattern(shape)
    q = b'"' if shape.quoted else b""
    first = start + rb"(" + key + rb")" + rest + rb"(" + zones + rb")" + end
    fields = (rb"," + q + _FIELD + q) * (1 if shape.typed else 2)
    if shape.slots:  # the same key, and the colon group of the same half of its ten minutes
        rest, zone = rb"(?:[0-4]\4|[5-9]\5)[0-5]\d(?:\.\d{1,6}+)?+", rb"\6"
    else:
        zone = rb"\4"
    same = rb"\n" + q + rb"\2" + q + fields + rb"," + q + rb"\3" + rest + zone + end
    return re.compile(rb"(" + first + rb"(?:" + same + rb")*+)(?=\n)")


_RUN_PROBE = 1 << 14  # bytes sampled to tell long runs from short ones
_LONG_RUN = 4  # rows: from this average on, runs beat groups of four
_SHORT_RUN = 1.5  # below this average, neighbours rarely repeat: one row a match (measured on shuffled rows:
# 19.8 ms a 2 MiB block against 22.6 by fours; with 100,000 customers 15.7 against 31.8)


def _mean_run(data: bytes, lo: int, hi: int, shape: _RowShape, zones: bytes = _WHOLE_HOUR_ZONE) -> float:
    """The average run (rows that share customer, hour and a zone of ZONES) among the first rows of DATA[LO:HI]."""
    end = data.rfind(b"\n", lo + 1, lo + _RUN_PROBE) + 1 or hi
    found = len(_run_pattern(shape, zones).findall(data, lo, end))
    return data.count(b"\n", lo, end) / found if found else 0.0  # lines a run: odd lines only make it longer


_Proved = tuple[tuple[bytes, ...], tuple[bytes, ...], tuple[bytes, ...], tuple[int, ...]]


def _proved_runs(data: bytes, lo: int, hi: int, shape: _RowShape) -> _Proved | None:
    """The customer, key, zone and rows of each run of DATA[LO:HI]; None unless every line has a fast shape."""
    matches = _run_pattern(shape, _ZONE if shape.slots else _WHOLE_HOUR_ZONE).findall(data, lo, hi)
    # The matches cover every byte but the last newline exactly when every line has a fast shape.
    if sum(map(len, map(itemgetter(0), matches))) != hi - lo - 1:
        return None
    if not matches:
        return (), (), (), ()
    texts, customers, keys, *marks, zones = zip(*matches, strict=True)
    if shape.slots:  # the zones marked with each run's half of its ten minutes
        zones = tuple(map(_slot_zone, zones, marks[0]))
    return customers, keys, zones, tuple(map(bytes.count, texts, repeat(b"\n")))


def _run_pairs(data: bytes, lo: int, hi: int, shape: _RowShape) -> _Pairs | None:
    """Rows per (customer, key, zone) of DATA[LO:HI], first-seen order; None unless every line has a fast shape."""
    if (proved := _proved_runs(data, lo, hi, shape)) is None:
        return None
    customers, keys, zones, sizes = proved
    pairs: _Pairs = {}
    for pair, rows in zip(zip(customers, keys, zones, strict=True), sizes, strict=True):
        pairs[pair] = pairs.get(pair, 0) + rows
    return pairs


def _read_by_runs(mean_run: float, zone: bytes | None, slots: bool = False) -> bool:
    """Whether a block whose average run is MEAN_RUN and whose first and last rows share ZONE is read by runs: long
    ones, keyed by slot or in a zone of whole hours (a run is counted by its key; a zone with minutes splits
    a local hour)."""
    return mean_run >= _LONG_RUN and (slots or not (zone and _zone_micros(zone) % _HOUR))


def _fast_pairs(
    data: bytes, lo: int, hi: int, lines: int | None, shape: _RowShape, mean_run: float | None = None
) -> tuple[_Pairs | None, int, int]:
    """DATA[LO:HI]'s _Pairs if every line has a fast shape (else None), its lines, and how many had one.

    MEAN_RUN, _mean_run's average (measured here if not given), says whether to match by runs, fours or rows;
    SHAPE.loose (a block _plain_bytes passed), whether rows not read by runs may have middle fields of any bytes.
    """
    if mean_run is None:
        mean_run = _mean_run(data, lo, hi, shape, _ZONE)
    zone = _shared_zone(data, lo, hi)
    if _read_by_runs(mean_run, zone, shape.slots):
        pairs = _run_pairs(data, lo, hi, shape)
        if pairs is not None:
            rows = sum(pairs.values())
            return pairs, rows, rows
    if lines is None:
        lines = data.count(b"\n", lo + 1, hi)
    # Groups of four where neighbours repeat, in any zone: +05:30 rows in time order take 470 ns a row by
    # fours, 561 one by one (a 2 MiB block).
    group = _GROUP if mean_run >= _SHORT_RUN else 1
    pairs, rows = _match_rows(data, lo, hi, lines, zone, shape, group)
    if rows != lines and zone is not None:  # the first and last lines agreed, others differ
        pairs, rows = _match_rows(data, lo, hi, lines, None, shape, group)
    return (pairs if rows == lines else None), lines, rows


def _cut_units(window: Window, unit: int = _HOUR) -> set[int]:
    """The (at most two) UTC hours (or five-minute slots: UNIT) WINDOW cuts: those of its ends, unless an end
    falls on one's start."""
    return {edge - edge % unit for edge in (window.start, window.end) if edge % unit}


def _cut_buckets(window: Window) -> set[int]:
    """The (at most two) buckets WINDOW cuts: those of its ends, unless an end is a bucket's first instant."""
    return {bucket for edge in (window.start, window.end) if (bucket := _floor_or_edge(window.buckets, edge)) != edge}


def _floor_or_edge(buckets: Buckets, edge: int) -> int:
    """The first instant of the bucket that holds EDGE, a window's bound; EDGE itself where its wall time is past
    the year 9999: a window's end, which parse_window lets reach no later than that year's last midnight."""
    try:
        return buckets.floor(edge)
    except OverflowError:
        return edge


class _Memo(dict):
    """FUNCTION's value for each key asked, worked out the first time: map(memo.__getitem__, keys) runs in C.
    None for the key None, and where the value is past what a datetime can hold (a bucket after 9999)."""

    def __init__(self, function: Callable[[int], int | None]) -> None:
        super().__init__()
        self.function = function

    def __missing__(self, key: int | None) -> int | None:
        try:
            value = None if key is None else self.function(key)
        except OverflowError:
            value = None
        self[key] = value  # type: ignore[index]
        return value


@lru_cache(maxsize=8)
def _hour_memos(buckets: Buckets) -> tuple[_Memo, _Memo]:
    """For each UTC hour: the zone's offset all through it (None if it changes inside), and the bucket of its first
    instant."""
    zone = _zone_named(buckets.zone)

    def steady_offset(hour: int) -> int | None:
        offset = _local_wall(hour, zone)[1]
        return offset if _local_wall(hour + _HOUR - 1, zone)[1] == offset else None

    return _Memo(steady_offset), _Memo(buckets.floor)


@lru_cache(maxsize=16)
def _whole_units(buckets: Buckets, unit: int) -> _Memo:
    """For each UTC hour (or five-minute slot: UNIT), the bucket of BUCKETS that holds all of it; None if one
    begins inside."""
    if unit == _HOUR or _fixed_offset(buckets.zone) is not None:
        return _Memo(lambda start: buckets.whole(start, unit))
    steady, floors = _hour_memos(buckets)

    def floor(instant: int) -> int:  # as _bucket_column floors, an hour's offset and first bucket found once
        hour = instant - instant % _HOUR
        if (offset := steady[hour]) is None:
            return buckets.floor(instant)
        latest = instant - (instant + offset) % buckets.width
        return latest if latest >= hour else floors[hour]

    return _Memo(lambda start: bucket if (bucket := floor(start)) == floor(start + unit - 1) else None)


@lru_cache(maxsize=64)
def _keys_by_slot(window: Window) -> bool:
    """Whether the fast path keys rows by five minutes for WINDOW: its buckets' boundaries are not all on UTC
    hours (a width under an hour, or a zone whose offset at the window's ends has minutes)."""
    buckets = window.buckets
    if buckets.width % _HOUR:
        return True
    zone = _zone_named(buckets.zone)
    return any(_local_wall(edge, zone)[1] % _HOUR for edge in (window.start, window.end - 1))


def _bucket_column(hours: list[int], instants: list[int], buckets: Buckets) -> list[int]:
    """buckets.floor of each of INSTANTS (in the UTC hour HOURS gives), worked out in C.

    Where the zone's offset holds through an hour, its clocks show a multiple of the width
    at the instants congruent to minus the offset, modulo the width: an instant's bucket
    begins at the latest of those at or before it, if that is in its hour, else where
    the hour's first instant's bucket begins.  Where the offset changes inside an hour (an
    hour or two a year), its rows are floored one by one.
    """
    if buckets == _UTC_HOURS:
        return hours
    width = buckets.width
    if (fixed := _fixed_offset(buckets.zone)) is not None:
        return list(map(sub, instants, map(mod, map(add, instants, repeat(fixed)), repeat(width))))
    steady, floors = _hour_memos(buckets)
    offsets = list(map(steady.__getitem__, hours))
    if None in offsets:
        return [buckets.floor(instant) for instant in instants]
    latest = list(map(sub, instants, map(mod, map(add, instants, offsets), repeat(width))))
    # Plainly: latest if latest >= hour else floors[hour]; a pair indexed by the comparison.
    choices = zip(map(floors.__getitem__, hours), latest, strict=True)
    return list(map(getitem, choices, map(ge, latest, hours)))


def _keys_of(pairs: _Pairs) -> Iterator[tuple[bytes, bytes]]:
    """The (key, zone) of each pair, in order."""
    return map(itemgetter(1, 2), pairs)


_KeyStarts = dict[tuple[bytes, bytes], int | None]  # (key, zone) -> its UTC hour or slot (_key_utc_start)


def _key_starts(pairs: _Pairs) -> _KeyStarts:
    """The UTC hour (or slot) of each (key, zone) of PAIRS, looked up once: a block of rows in no order has a
    thousand hours, and as many pairs again as customers."""
    keys = dict.fromkeys(_keys_of(pairs))
    return dict(zip(keys, starmap(_key_utc_start, keys), strict=True))


def _key_buckets(starts: _KeyStarts, window: Window, unit: int) -> _KeyStarts:
    """The bucket of WINDOW's buckets that holds all of each UTC hour (or five-minute slot: UNIT) of STARTS (None: none
    does)."""
    if window.buckets == _UTC_HOURS:
        return starts  # an hour is its own bucket
    return dict(zip(starts, map(_whole_units(window.buckets, unit).__getitem__, starts.values()), strict=True))


def _timed_keys(starts: _KeyStarts, window: Window, unit: int = _HOUR) -> set[tuple[bytes, bytes]]:
    """The (key, unmarked zone) of STARTS (hours or five-minute slots: UNIT) whose rows must be timed one by one."""
    # The rows of a zone with minutes and no mark (no UTC hour), of a unit the window
    # cuts or that no bucket holds whole, and then of every unit whose bucket timed rows
    # reach, until none is left to add: so that every row of a bucket with timed rows is
    # counted in file order, once.
    buckets = _key_buckets(starts, window, unit)
    cut = _cut_units(window, unit)
    if buckets is starts:  # UTC hours: no UTC hour, or cut
        needs_time: Iterable[bool] = map({None, *cut}.__contains__, starts.values())
    else:  # ... or in the window, and no bucket holds it whole
        pairs = zip(starts.values(), buckets.values(), strict=True)
        needs_time = [u is None or u in cut or (b is None and _overlaps(u, window, unit)) for u, b in pairs]
    timed = {(key, _unmarked(zone)) for key, zone in compress(starts, needs_time)}
    while timed:
        reached = {bucket for key, zone in timed for bucket in _buckets_reached(key, zone, window, unit)}
        more = {(key, _unmarked(zone)) for (key, zone), bucket in buckets.items() if bucket in reached} - timed
        if not more:
            break
        timed |= more
    return timed


def _overlaps(start: int | None, window: Window, unit: int = _HOUR) -> bool:
    """Whether the UTC hour (or five-minute slot: UNIT) from START has an instant in WINDOW."""
    return start is not None and window.start < start + unit and start < window.end


def _buckets_reached(key: bytes, zone: bytes, window: Window, unit: int) -> set[int]:
    """The buckets of WINDOW that the rows of a key and (unmarked) zone can fall in."""
    if window.buckets == _UTC_HOURS:
        return set(_reach(key, zone))
    reached, whole = set(), _whole_units(window.buckets, unit)
    for start in _reach(key, zone):
        if _overlaps(start, window, unit):
            bucket = whole[start]
            reached |= {bucket} if bucket is not None else set(window.buckets.starts(start, start + unit))
    return reached


def _whole_keys(starts: _KeyStarts, timed: set, window: Window, unit: int = _HOUR) -> set[tuple[bytes, bytes]]:
    """The (key, zone) of STARTS (hours or five-minute slots: UNIT) counted by key: not TIMED, and inside WINDOW."""
    inside = {key for key, start in starts.items() if start is not None and window.start <= start < window.end}
    return {(key, zone) for key, zone in inside if (key, _unmarked(zone)) not in timed} if timed else inside


def _count_timed(names: list[str | None], hours: list[int], in_hour: list[int], window: Window) -> Counts:
    """count_events for rows of NAMES (None: not asked about) at HOURS + IN_HOUR (_row_columns' columns),
    customers of each bucket in file order: buckets the window holds whole by a Counter, in C; the two at
    most it cuts, row by row."""
    # count_events costs 0.32 us a row; the Counter 0.13 (19,064 rows of a 2 MiB block timed one by one,
    # window of a year).
    instants = hours if window.buckets == _UTC_HOURS else list(map(add, hours, in_hour))
    buckets = _bucket_column(hours, instants, window.buckets)
    distinct = set(buckets)
    following = window.buckets.following
    whole = {b for b in distinct if window.start <= b < window.end and following(b) <= window.end}
    cut = distinct & _cut_buckets(window)
    pairs = zip(buckets, names, strict=True)
    counted = Counter(pairs if whole == distinct else compress(pairs, map(whole.__contains__, buckets)))
    counts: Counts = {key: n for key, n in counted.items() if key[1] is not None}
    if cut:
        if instants is hours:
            instants = list(map(add, hours, in_hour))
        timed = compress(zip(names, instants, strict=True), map(cut.__contains__, buckets))
        asked = window._replace(customer=None, event_types=None)  # NAMES are those asked about
        _merge_counts(counts, count_events(((name, instant, "", "") for name, instant in timed if name), asked))
    return counts


def _count_proved(data: bytes, lo: int, hi: int, pairs: _Pairs, window: Window, shape: _RowShape) -> Counts:
    """Count PAIRS, from the fast-shaped rows of DATA[LO:HI] (read as SHAPE says): whole hours by key, the other
    hours row by row."""
    unit = _SLOT if shape.slots else _HOUR
    starts = _key_starts(pairs)
    timed = _timed_keys(starts, window, unit)
    whole = _whole_keys(starts, timed, window, unit)
    # Plainly: each pair whose hour is whole and inside; compress picks them in C (with
    # 100,000 customers, most pairs fall outside a window of one day), and each of their
    # customers is decoded once.
    chosen = list(compress(pairs.items(), map(whole.__contains__, _keys_of(pairs))))
    names = _decoded((customer for (customer, _, _), _ in chosen), shape, window)
    buckets = _key_buckets(starts, window, unit)
    counts: Counts = {}
    for ((_, key, zone), n), name in zip(chosen, names, strict=True):
        if name is not None:
            bucket = buckets[key, zone]  # b"... 04" and b"...T04" share a bucket, as the hours of a day may
            counts[(bucket, name)] = counts.get((bucket, name), 0) + n
    if timed:
        alternatives = b"|".join(re.escape(key) for key in dict.fromkeys(key[:13] for key, _ in timed))
        rows = _timed_rows_pattern(alternatives, shape).findall(data, lo, hi)
        rows = list(compress(rows, map(timed.__contains__, _row_keys(rows, shape))))
        _merge_counts(counts, _count_timed(*_row_columns(rows, shape, window), window))
    return counts


def _row_keys(rows: list[tuple[bytes, ...]], shape: _RowShape) -> Iterable[tuple[bytes, bytes]]:
    """The (key, zone) of each of _timed_rows_pattern's ROWS: an hour key, or with SLOTS "hour key:M" (the minute's
    first digit), made in C."""
    if not shape.slots:
        return map(itemgetter(1, 5), rows)
    tens = map(itemgetter(slice(0, 1)), map(itemgetter(2), rows))  # "M" of "MM:SS"
    keys = map(add, map(add, map(itemgetter(1), rows), repeat(b":")), tens)
    return zip(keys, map(itemgetter(5), rows), strict=True)


# Sparse blocks: a window of a few days over a log whose rows come in no order.
# There each row costs the fast path a match, a tuple and a Counter key.  When few of
# a block's rows carry a date the window can reach, one pass over the block proves
# every row valid and captures only the rows on those dates, which are then timed
# one by one.  Each match is a run of rows off those dates, then one row on them.
# Where fields are bare, the rows off them are read loosely: [^,] runs in C without
# a character class (0.21 µs a row, not 0.29, on 100,000 UUID customers), so the
# bytes a class would refuse are ruled out for the whole block first, and the
# block's commas, three a line, keep a loose field from running across a newline.
_MONTH_DAY = (
    rb"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])"  # months of 31 days
    rb"|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)"  # of 30
    rb"|02-(?:0[1-9]|1\d|2[0-8]))"  # February but its 29th
)
_LEAP_DAY = rb"(?:\d\d(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29"
# Not the first and last dates: an offset may take a row there outside the years 1 to 9999 in UTC (malformed).
_CALENDAR_HOUR = (
    rb"(?!0000|0001-01-01|9999-12-31)(?:\d{4}-" + _MONTH_DAY + rb"|" + _LEAP_DAY + rb")[ T](?:[01]\d|2[0-3])"
)
# The csv reader refuses a field over its limit, not counting the spaces skipinitialspace skips: so do these.
_FIELD_LIMIT = csv.field_size_limit()
# A customer not all spaces, any two fields (checked by _loose_rows); the two written out, not a group repeated
# twice, which the engine steps through more slowly (a block of 100,000 customers: 252 -> 232 ns a row).
_LOOSE_START = rb"\n *+[^ ,][^,]{0,%d}+" % (_FIELD_LIMIT - 1) + rb", *+[^,]{0,%d}+" % _FIELD_LIMIT * 2 + rb","
_SPARSE_DAYS = 64  # the most dates a window may reach for a block to be tried as sparse
_SPARSE_RATIO = 4  # sparse when at most one probed row in this many carries a reachable date
# What a loose customer may not hold besides what _plain_bytes rules out: whitespace str.strip() would take
# from its ends (a space alone is kept out by the pattern).
_STRIPPED = b"\t\x0b\x0c\x1c\x1d\x1e\x1f"


@lru_cache(maxsize=64)
def _reachable_dates(first: int, last: int) -> bytes | None:
    """A pattern for the dates of [FIRST, LAST) (their shared start as a literal); None if over _SPARSE_DAYS."""
    first, last = max(first, _FIRST_INSTANT), min(last, _LAST_INSTANT + 1)
    if not 0 < last - first <= _SPARSE_DAYS * _DAY:  # none (a window the zone shifts past year 9999 or 1), or many
        return None
    days = range(first // _DAY, (last - 1) // _DAY + 1)
    dates = [_from_micros(day * _DAY).date().isoformat().encode() for day in days]
    # A literal start lets the engine skip ahead fast (68 ns a row, not 103): the characters all dates share.
    common = os.path.commonprefix(dates)  # noqa: RUF071
    return re.escape(common) + rb"(?:" + b"|".join(re.escape(date[len(common) :]) for date in dates) + rb")"


@lru_cache(maxsize=64)
def _date_search(first: int, last: int, quoted: bool) -> re.Pattern[bytes] | None:
    """Where a timestamp on a local date of [FIRST, LAST) begins; None if that is over _SPARSE_DAYS dates."""
    dates = _reachable_dates(first, last)
    return None if dates is None else re.compile(b"," + (b'"' if quoted else b"") + dates + rb"[ T]")


@lru_cache(maxsize=64)
def _sparse_pattern(dates: bytes, zone: bytes | None, shape: _RowShape) -> re.Pattern[bytes]:
    """Valid rows off DATES, in ZONE (None: any), then one on them captured as _timed_rows_pattern captures, or the
    block's last newline."""
    start, end = _row_frame(shape._replace(loose=False))
    zone_pattern = _ZONE if zone is None else re.escape(zone)
    off_start = _row_frame(_RowShape(quoted=True))[0].replace(b"(", b"(?:", 1) if shape.quoted else _LOOSE_START
    off = off_start + rb"(?!" + dates + rb"[ T])" + _CALENDAR_HOUR + _MINUTES + zone_pattern + end
    on_stamp = rb"(" + dates + rb"[ T](?:[01]\d|2[0-3])):" + _TIME_IN_HOUR + rb"(" + zone_pattern + rb")"
    return re.compile(rb"(?:" + off + rb")*+(?:" + start + on_stamp + end + rb"|\n\Z)")


def _loose_rows(data: bytes, lo: int, hi: int, lines: int) -> bool:
    """Whether the bare rows of DATA[LO:HI] may be read loosely: plain bytes, none of STRIPPED, and three commas
    a line."""
    if not _plain_bytes(data, lo, hi) or any(data.find(byte, lo, hi) >= 0 for byte in _STRIPPED):
        return False
    return data.count(b",", lo, hi) == 3 * lines


def _sparse_counts(data: bytes, lo: int, hi: int, lines: int, window: Window, shape: _RowShape) -> Counts | None:
    """Count DATA[LO:HI], of LINES lines, by its rows on a date WINDOW can reach; None unless few and every row
    valid."""
    # Local time is UTC plus the zone's offset.  When the first and last rows agree on a
    # zone, the block is proved in that zone alone, and a row in the window has a local
    # date of [start, end) shifted by its offset; else any zone, less than a day from UTC.
    zone = _shared_zone(data, lo, hi)
    early, late = (-_DAY, _DAY) if zone is None else (_zone_micros(zone), _zone_micros(zone))
    search = _date_search(window.start + early, window.end + late, shape.quoted)
    if search is None:
        return None
    probe = data.rfind(b"\n", lo + 1, lo + _RUN_PROBE) + 1 or hi
    if len(search.findall(data, lo, probe)) * _SPARSE_RATIO > data.count(b"\n", lo, probe):
        return None
    if not shape.quoted and not _loose_rows(data, lo, hi, lines):
        return None
    step = _sparse_pattern(_reachable_dates(window.start + early, window.end + late), zone, shape)
    rows, at = [], lo
    while (found := step.match(data, at, hi)) is not None and (at := found.end()) < hi:
        rows.append(found.groups(b""))
    if at != hi:
        return None
    return _count_timed(*_row_columns(rows, shape, window), window)


def _count_data(
    data: bytes, lo: int, hi: int, first_line: int, window: Window, skipped: _Skipped, lines: int | None = None
) -> tuple[Counts, int]:
    """Count DATA[LO:HI], from a newline to a newline: fast where it can prove the shape.  Return it and its lines."""
    counts, lines, fast_rows = _count_fast(data, lo, hi, window, lines)
    if counts is not None:
        return counts, lines
    middle = _split_point(data, lo, hi)
    # Mostly odd rows: one failed attempt, then the plain path, not a cascade of cuts.
    if hi - lo <= _SMALL_BLOCK or (fast_rows is not None and fast_rows < lines // 2) or middle < 0:
        return count_events(_block_events(_Block(data, lo, hi), first_line, skipped), window), lines
    counts, before = _count_data(data, lo, middle + 1, first_line, window, skipped)
    later, after = _count_data(data, middle, hi, first_line + before, window, skipped)
    _merge_counts(counts, later)
    return counts, before + after


def _count_fast(
    data: bytes, lo: int, hi: int, window: Window, lines: int | None
) -> tuple[Counts | None, int, int | None]:
    """Count DATA[LO:HI] by the fast shapes: counts (None unless every row has one), its lines, and how many
    rows had one (None when a row's date does not exist: the block is then cut to find it)."""
    quoted, typed = data.startswith(b'\n"', lo), window.event_types is not None
    shape = _RowShape(quoted, typed=typed, slots=window.buckets != _UTC_HOURS and _keys_by_slot(window))
    mean_run = _mean_run(data, lo, hi, shape, _ZONE)
    by_runs = _read_by_runs(mean_run, _shared_zone(data, lo, hi), shape.slots)
    try:
        if not by_runs:
            lines = data.count(b"\n", lo + 1, hi) if lines is None else lines
            if (counts := _sparse_counts(data, lo, hi, lines, window, shape)) is not None:
                return counts, lines, lines
        if not (by_runs or shape.quoted) and _plain_bytes(data, lo, hi):
            shape = shape._replace(loose=True)
        pairs, lines, fast_rows = _fast_pairs(data, lo, hi, lines, shape, mean_run)
        counts = None if pairs is None else _count_proved(data, lo, hi, pairs, window, shape)
        return counts, lines, fast_rows
    except _Unproved:  # from either: an hour key is checked when first met
        return None, data.count(b"\n", lo + 1, hi) if lines is None else lines, None


def _split_point(data: bytes, lo: int, hi: int) -> int:
    """A newline strictly inside DATA[LO:HI], near its middle; -1 if it is one line."""
    half = (lo + hi) // 2
    middle = data.rfind(b"\n", lo + 1, half)
    return middle if middle >= 0 else data.find(b"\n", half, hi - 1)


def _count_block(
    block: _Block, first_line: int, window: Window, skipped: _Skipped, fast: bool = True
) -> tuple[Counts, int]:
    """Count one block, whose first line is FIRST_LINE, by the fast path or the plain one; return it and its lines."""
    if fast and not block.too_long:
        return _count_data(block.data, block.lo, block.hi, first_line, window, skipped, block.lines)
    return count_events(_block_events(block, first_line, skipped), window), _block_lines(block)


# ---------------------------------------------------------------------------
# Columns: a block's events as columns, by the fast shapes where every row has one,
# else row by row; what --unique counts from, and what the index files by hour.


class _Columns(NamedTuple):
    """Events of a block of the log, in file order, as columns."""

    names: list[bytes]  # each customer_id, as UTF-8
    hours: list[int]  # each event's UTC hour
    in_hour: list[int]  # and its microseconds into it
    types: list[bytes]  # each event type, as UTF-8, stripped
    ids: list[bytes]  # each transaction_id, as UTF-8, stripped


@lru_cache(maxsize=2)
def _index_pattern(quoted: bool) -> re.Pattern[bytes]:
    """A row of a fast shape (middle fields strict), capturing customer, event type, transaction id, hour key,
    "MM:SS", a fraction's first three digits and the rest, and zone."""
    q = b'"' if quoted else b""
    fields = (
        rb"(" + _CUSTOMER + rb")" + q + rb"," + q + rb"(" + _FIELD + rb")" + q + rb"," + q + rb"(" + _FIELD + rb")" + q
    )
    timestamp = rb"(" + _DATE_HOUR + rb"):" + _TIME_IN_HOUR + rb"(" + _ZONE + rb")"
    return re.compile(rb"\n" + q + fields + rb"," + q + timestamp + q + rb"\r?(?=\n)")


@lru_cache(maxsize=2)
def _id_pattern(quoted: bool) -> re.Pattern[bytes]:
    """The third field of each row whose shape _run_pattern proved: no comma or quote inside."""
    q = b'"' if quoted else b""
    field = rb'[^,"]*+'
    return re.compile(rb"\n" + q + field + q + rb"," + q + field + q + rb"," + q + rb"(" + field + rb")" + q + rb",")


@lru_cache(maxsize=2)
def _run_times_pattern(quoted: bool) -> re.Pattern[bytes]:
    """The end of a row whose shape _run_pattern proved: "MM:SS", a fraction's first three digits and the rest."""
    # From the colon after the hour to the line's end: in a proved row only the timestamp
    # can end a line like this, so each row gives exactly one match.
    q = b'"' if quoted else b""
    return re.compile(rb":" + _TIME_IN_HOUR + _WHOLE_HOUR_ZONE + q + rb"\r?(?=\n)")


def _stripped_each(fields: tuple[bytes, ...]) -> list[bytes]:
    """Each of FIELDS without the spaces around it (no part of a field), each distinct one stripped once."""
    stripped = {raw: raw.strip() for raw in set(fields)}
    return list(map(stripped.__getitem__, fields))


class _Runs(NamedTuple):
    """A block's rows in runs that share customer, event type, hour key and whole-hour zone: each run's fields once,
    and each row's transaction id."""

    names: tuple[bytes, ...]  # each run's customer_id, as UTF-8
    types: list[bytes]  # its event type, stripped
    hours: list[int]  # its UTC hour
    sizes: tuple[int, ...]  # its rows
    ids: list[bytes]  # each row's transaction_id, stripped


def _run_fields(data: bytes, lo: int, hi: int, lines: int, shape: _RowShape) -> _Runs | None:
    """DATA[LO:HI]'s runs, each run's fields made once, and each row's id; None unless every line is in a run."""
    if (proved := _proved_runs(data, lo, hi, shape)) is None:
        return None
    captured, keys, zones, sizes = proved
    # Every line proved to have three commas: unquoted, its id is every third piece (0.15 us a row, findall 0.33).
    ids = _id_pattern(True).findall(data, lo, hi) if shape.quoted else data[lo + 1 : hi].split(b",")[2::3]
    if len(ids) != lines:
        return None
    split = {text: text.split(b'","' if shape.quoted else b",", 1) for text in set(captured)}
    names, types = zip(*map(split.__getitem__, captured), strict=True) if captured else ((), ())
    hours = list(map(_local_hour_start, keys, zones))
    return _Runs(names, _stripped_each(types), hours, sizes, list(map(bytes.strip, ids)))


def _block_runs(block: _Block) -> _Runs | None:
    """BLOCK's runs (_run_fields) where its rows come in long ones, else None."""
    data, lo, hi = block.data, block.lo, block.hi
    shape = _RowShape(quoted=data.startswith(b'\n"', lo), typed=True)
    with suppress(_Unproved):
        if not block.too_long and _mean_run(data, lo, hi, shape) >= _LONG_RUN:
            return _run_fields(data, lo, hi, _block_lines(block), shape)
    return None


def _run_columns(block: _Block, runs: _Runs) -> _Columns | None:
    """The columns of BLOCK, read as RUNS: each run's fields repeated, only the times read row by row; None unless
    every row's time has a fast shape (events.csv's shape: 1.9 against 0.9 s for 100 MB)."""
    quoted = block.data.startswith(b'\n"', block.lo)
    times = _run_times_pattern(quoted).findall(block.data, block.lo, block.hi)
    if len(times) != len(runs.ids):
        return None
    minute_seconds, millis, micros = zip(*times, strict=True) if times else ((), (), ())
    names, types, hours = (list(chain.from_iterable(map(repeat, column, runs.sizes))) for column in runs[:3])
    return _Columns(names, hours, _micros_in_hour(minute_seconds, millis, micros), types, runs.ids)


def _block_columns(block: _Block, first_line: int, skipped: _Skipped) -> tuple[_Columns, int]:
    """BLOCK's events as columns, by the fast shapes where every row has one, else row by row; and its lines."""
    return _columns_of(block, _block_runs(block), first_line, skipped)


def _columns_of(block: _Block, runs: _Runs | None, first_line: int, skipped: _Skipped) -> tuple[_Columns, int]:
    """_block_columns, where RUNS are BLOCK's (_block_runs), found already."""
    lines = _block_lines(block)
    data, lo, hi = block.data, block.lo, block.hi
    shape = _RowShape(quoted=data.startswith(b'\n"', lo), typed=True)
    if runs is not None and (columns := _run_columns(block, runs)) is not None:
        return columns, lines
    with suppress(_Unproved):
        rows = [] if block.too_long else _index_pattern(shape.quoted).findall(data, lo, hi)
        if rows and len(rows) == lines:
            names, types, ids, *times = zip(*rows, strict=True)
            hours, in_hour = _row_times(*times)  # type: ignore[arg-type]
            columns = _Columns(names, hours, in_hour, _stripped_each(types), list(map(bytes.strip, ids)))
            return columns, lines
    return _plain_columns(block, first_line, skipped)


def _plain_columns(block: _Block, first_line: int, skipped: _Skipped) -> tuple[_Columns, int]:
    """BLOCK's events as columns, row by row by the plain reader; and its lines."""
    lines = _block_lines(block)
    events = list(_block_events(block, first_line, skipped))
    hours = [instant - instant % _HOUR for _, instant, _, _ in events]
    in_hour = [instant - hour for (_, instant, _, _), hour in zip(events, hours, strict=True)]
    names, types, ids = ([event[k].encode("utf-8", "surrogateescape") for event in events] for k in (0, 2, 3))
    return _Columns(names, hours, in_hour, types, ids), lines


# ---------------------------------------------------------------------------
# Whole files: one stream block by block, or a regular file cut into byte ranges at
# newlines and counted by worker processes, merged back in file order.

_RANGE_SIZE = 1 << 26
_PARALLEL_MIN = 8 << 20  # below this, starting workers costs more than it saves
_PROGRESS_MIN = 256 << 20


class _Part:
    """What a pass over a file, or a byte range of one, found: its lines and bad rows, and, in a subclass, what it
    collects from each block: counts (_Tally) or the index's columns (_IndexPart)."""

    def __init__(self) -> None:
        self.lines = 0  # lines read, to number the lines of the part after this one
        self.skipped = _Skipped()

    @property
    def events(self) -> int:
        """The events read: every line but the blank ones, the header and the malformed rows."""
        return self.lines - self.skipped.count - self.skipped.blank

    def take(self, block: _Block) -> None:
        """Collect BLOCK, whose first line is line self.lines + 1, and count its lines."""
        raise NotImplementedError

    def join(self, later: _Part) -> None:
        """Append what LATER, the part right after ours, collected."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Work done before a part is read, in the process that reads it: nothing, unless a subclass says."""

    def expect(self, done: int, total: int) -> None:
        """Told, as parts are merged, that DONE of the file's TOTAL bytes are merged: nothing, unless a subclass
        says."""

    def finish(self) -> None:
        """Work done once a part is read, in the process that read it: nothing, unless a subclass says."""

    def add(self, later: _Part, file: str | None = None) -> None:
        """Append LATER, the part right after ours (or the whole FILE read after ours)."""
        self.join(later)
        if file is None:
            self.skipped.extend(later.skipped.shifted(self.lines))  # its line numbers move on too
        else:
            self.skipped.extend(later.skipped, file=file)
        self.lines += later.lines


class _Tally(_Part):
    """The counts of a pass in WINDOW, by the fast path unless FAST is False (no window: it only adds up others)."""

    duplicates = 0  # rows not counted as duplicates: a _UniqueTally's

    def __init__(self, window: Window | None = None, fast: bool = True) -> None:
        super().__init__()
        self.counts: Counts = {}
        self.window = window
        self.fast = fast

    def take(self, block: _Block) -> None:
        """Count BLOCK."""
        assert self.window is not None, "only a tally with a window takes blocks"
        counts, lines = _count_block(block, self.lines + 1, self.window, self.skipped, self.fast)
        _merge_counts(self.counts, counts)
        self.lines += lines

    def join(self, later: _Tally) -> None:  # type: ignore[override]
        """Add LATER's counts (a _Tally: perhaps of the module a Dask worker imported, so no isinstance)."""
        _merge_counts(self.counts, later.counts)


class _Numbering(dict):
    """Each key its number, given in the order keys are first asked for."""

    def __missing__(self, key: object) -> int:
        number = self[key] = len(self)
        return number


class _UniqueTally(_Tally):
    """The counts of a pass in WINDOW, each transaction once (--unique).  Each block is read as columns; the rows
    WINDOW counts wait, with their ids' numbers (REPEATED where an earlier row of their part carried it), until
    settle() learns which of the part's ids no earlier part carried: the rows first in their part with those
    count, and the others are duplicates.  Where TRANSACTIONS (the input's
    earlier ids) is given, each block is settled at once; a worker's part waits for the process that merges,
    and goes to it as arrays and one bytes of keys (a list of a tuple a row took as long to send as to read)."""

    def __init__(self, window: Window | None = None, fast: bool = True, transactions: _Transactions | None = None):
        super().__init__(window, fast)
        self.transactions = transactions
        self.part_ids = _PartIds()
        self.pair_numbers = _Numbering()  # each (bucket, customer) of the rows waiting, numbered
        self.waiting = array("L")  # the number of each row waiting, in file order
        self.numbers = array("l")  # and its id's (REPEATED, -1: empty)
        self.duplicates = 0  # rows WINDOW would count but for --unique

    def expect(self, done: int, total: int) -> None:
        """Make room for the ids the rest of the file will likely add (_Transactions.expect)."""
        assert self.transactions is not None, "expected of the part others join"
        self.transactions.expect(done, total)

    def take(self, block: _Block) -> None:
        """Read BLOCK's rows, mark those first in the part, and hold those WINDOW counts until settled: by runs where
        the window and its buckets hold each run's hour whole or not at all, else row by row."""
        assert self.window is not None, "only a tally with a window takes blocks"
        runs = _block_runs(block) if self.fast else None
        if runs is not None and (asked := _asked_runs(runs, self.window)) is not None:
            self.lines += self.hold_runs(runs, *asked)
        else:
            self.lines += self.hold_rows(block, runs)
        if self.transactions is not None:
            self.settle(self.transactions)

    def hold_rows(self, block: _Block, runs: _Runs | None) -> int:
        """Hold the rows of BLOCK (its RUNS, if it has) that WINDOW counts, read row by row as columns; return its
        lines."""
        assert self.window is not None, "only a tally with a window takes blocks"
        if self.fast and not block.too_long:  # its runs not proved again where they could not be held
            columns, lines = _columns_of(block, runs, self.lines + 1, self.skipped)
        else:
            columns, lines = _plain_columns(block, self.lines + 1, self.skipped)
        numbers = self.part_ids.marked(columns.ids)
        instants = list(map(add, columns.hours, columns.in_hour))
        asked = _asked_rows(columns, instants, self.window)
        hours = list(compress(columns.hours, asked))
        instants = list(compress(instants, asked))
        buckets = _bucket_column(hours, instants, self.window.buckets)
        pairs = _named_pairs(buckets, list(compress(columns.names, asked)))
        self.waiting.extend(map(self.pair_numbers.__getitem__, pairs))
        self.numbers.extend(compress(numbers, asked))
        return lines

    def hold_runs(self, runs: _Runs, asked: list[bool], pairs: list[tuple[int, str]]) -> int:
        """Hold the rows of RUNS that WINDOW counts: those of each run ASKED, of its (bucket, customer) in PAIRS; no
        row's time read (64 MiB of the bench log: 2.2 us a row read as columns, 1.1 by runs).  Return its rows."""
        numbers = self.part_ids.marked(runs.ids)
        held = map(self.pair_numbers.__getitem__, pairs)
        self.waiting.extend(chain.from_iterable(map(repeat, held, compress(runs.sizes, asked))))
        if not all(asked):
            numbers = list(compress(numbers, chain.from_iterable(map(repeat, asked, runs.sizes))))
        self.numbers.extend(numbers)
        return len(runs.ids)

    def finish(self) -> None:
        """In the worker, once the part is read: seal its ids."""
        self.part_ids.seal()

    def settle(self, transactions: _Transactions) -> None:
        """Count the rows waiting whose ids are the first of the input, by TRANSACTIONS (the earlier parts' ids)."""
        fates = self.part_ids.settle(transactions)
        counted = list(map(fates.__getitem__, self.numbers))
        self.duplicates += counted.count(False)
        keys = list(self.pair_numbers)
        tallied = Counter(compress(self.waiting, counted))  # in order of first row
        _merge_counts(self.counts, dict(zip(map(keys.__getitem__, tallied), tallied.values(), strict=True)))
        self.part_ids, self.pair_numbers, self.waiting, self.numbers = _PartIds(), _Numbering(), array("L"), array("l")
        self.transactions = transactions

    def join(self, later: _UniqueTally) -> None:  # type: ignore[override]
        """Settle LATER, the part after ours, against every id before it, then add its counts and duplicates."""
        assert self.transactions is not None, "the part others join knows the earlier ids"
        later.settle(self.transactions)
        super().join(later)
        self.duplicates += later.duplicates


def _asked_rows(columns: _Columns | _Runs, instants: list[int], window: Window) -> list[bool]:
    """For each row of COLUMNS (at INSTANTS), whether WINDOW counts it (its time, customer and event type): _wanted()
    in C."""
    start, end = window.start, window.end
    asked = list(map(and_, map(le, repeat(start), instants), map(gt, repeat(end), instants)))
    if window.customer is not None:
        customer = window.customer.encode("utf-8", "surrogateescape")
        asked = list(map(and_, asked, map(eq, columns.names, repeat(customer))))
    if window.event_types is not None:
        types = {name.encode("utf-8", "surrogateescape") for name in window.event_types}
        asked = list(map(and_, asked, map(types.__contains__, columns.types)))
    return asked


def _asked_runs(runs: _Runs, window: Window) -> tuple[list[bool], list[tuple[int, str]]] | None:
    """For each of RUNS, whether WINDOW counts its rows (all or none of them), and the (bucket, customer) of those it
    counts; None where the window cuts a run's hour or no bucket holds one whole (its rows are then timed)."""
    if _cut_units(window) & set(runs.hours):
        return None
    asked = _asked_rows(runs, runs.hours, window)  # an hour that is not cut is in the window as its first instant is
    buckets = list(compress(runs.hours, asked))  # a UTC hour is its own bucket
    if window.buckets != _UTC_HOURS:  # else the bucket that holds all of each hour
        buckets = list(map(_whole_units(window.buckets, _HOUR).__getitem__, buckets))
    if None in buckets:
        return None
    return asked, _named_pairs(buckets, list(compress(runs.names, asked)))


def _named_pairs(buckets: list[int], names: list[bytes]) -> list[tuple[int, str]]:
    """Each (bucket, customer) of BUCKETS and NAMES (UTF-8), each distinct name decoded once."""
    decoded = {name: name.decode("utf-8", "surrogateescape") for name in set(names)}
    return list(zip(buckets, map(decoded.__getitem__, names), strict=True))


def _new_tally(window: Window, transactions: _Transactions | None = None, fast: bool = True) -> _Tally:
    """The part that counts WINDOW: each transaction once if it asks (settled against TRANSACTIONS)."""
    if window.unique:
        return _UniqueTally(window, fast, transactions or _Transactions())
    return _Tally(window, fast)


_P = TypeVar("P", bound=_Part)
_ByteRange = tuple[
    str, int, int, Callable[[], _P]
]  # [lo, hi) of a file, line-aligned, and the new part to read it into


def _read_stream(
    stream: BinaryIO,
    part: _P,
    limit: int = -1,
    at_start: bool = True,
    strict: bool = False,
    progress: Callable[[], None] | None = None,
) -> _P:
    """Hand STREAM (or its next LIMIT bytes) to PART block by block: memory is one block plus what PART keeps."""
    with _gc_paused():
        for block in _read_blocks(stream, limit, at_start):
            part.take(block)
            if progress:
                progress()
            if strict and part.skipped.count:
                break  # the caller fails on the first bad row: no need to read on
    return part


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cycle collector: counting makes millions of tuples but no cycles."""
    # Left on, it walks the young tuples every 700 allocations: about 20% of the time.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _release_free_memory() -> None:
    """Give the heap's free pages back to the system (glibc keeps them otherwise): after an index build the
    server's PSS on the 10-million-row file fell from 283 to 135 MiB (bench/index.py)."""
    with suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _read_range(byte_range: _ByteRange[_P]) -> _P:
    """A byte range: bytes [lo, hi) of a file, which start and end at line boundaries, into a new part."""
    path, lo, hi, new_part = byte_range
    part = new_part()
    part.prepare()
    with open(path, "rb") as stream:
        stream.seek(lo)
        part = _read_stream(stream, part, hi - lo, at_start=lo == 0)
    part.finish()
    return part


def _next_line(stream: BinaryIO, at: int) -> int:
    """Where the line after AT starts: just past the first newline at or after AT in STREAM, else its end."""
    stream.seek(at)
    while chunk := stream.read(1 << 12):
        if (found := chunk.find(b"\n")) >= 0:
            return at + found + 1
        at += len(chunk)
    return at


def _line_bounds(path: str, size: int, ranges: int) -> list[int]:
    """Where to cut PATH into about RANGES byte ranges, each starting at the beginning of a line."""
    bounds = [0]
    with open(path, "rb") as stream:
        for k in range(1, ranges):
            at = _next_line(stream, max(size * k // ranges, bounds[-1]))
            if at >= size:
                break
            bounds.append(at)
    return [*bounds, size]


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


_niceness = 0  # added to the nice value of the pools' workers: set while a server builds in the background


@contextmanager
def _niced_pools(niceness: int) -> Iterator[None]:
    """Start the pools' workers with NICENESS added to their nice value, within the with: a server's build in the
    background leaves the CPU to the workers answering (windows of 1-8 hours on 100,000 customers while every
    event is read into memory: median 261 -> 157 ms; a normal client beside the build of the 10M-row log,
    filebacked.py: 11,310 and 10,383 -> 19,288 and 21,467 requests a second)."""
    global _niceness
    _niceness = niceness
    try:
        yield
    finally:
        _niceness = 0


def _quiet_worker(niceness: int = 0) -> None:
    """Start a worker, NICENESS nicer: Ctrl-C is its parent's to handle; SIGTERM, from the parent, ends it on the
    spot."""
    os.nice(niceness)
    # SIG_DFL, not the parent's Python handler, which runs only between bytecodes: a
    # SIGTERM landing just before the worker blocked on the pool's queue was lost, and
    # Pool.terminate() waited for the worker forever (4 times in 40 tries here).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def _worker_pool(context: BaseContext, jobs: int) -> Pool:
    """A pool of JOBS workers, to use in a with statement."""
    # Workers leave Ctrl-C to this process, and leaving the with (done, --strict,
    # Ctrl-C, SIGTERM) kills them: no traceback from each, no orphan counting on.
    # Held back while the pool starts, a signal lands inside the with, not half-way.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        return context.Pool(jobs, initializer=_quiet_worker, initargs=(_niceness,))
    except OSError as error:
        raise InputError(f"cannot start {jobs} worker processes ({error.strerror or error}); try --jobs 1") from None
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def _in_ranges(
    path: str,
    size: int,
    jobs: int,
    new_part: Callable[[], _P],
    reader: Callable[[_ByteRange[_P]], _P] = _read_range,
    range_size: int = 0,
) -> Iterator[tuple[int, _P]]:
    """Line-aligned byte ranges [lo, hi) of PATH, of RANGE_SIZE bytes at most (_RANGE_SIZE unless told), each read by
    READER into NEW_PART() on JOBS workers: (hi, part) in file order."""
    from multiprocessing import get_context

    bounds = _line_bounds(path, size, max(jobs, -(-size // (range_size or _RANGE_SIZE))))
    jobs = min(jobs, len(bounds) - 1)  # no worker without a byte range to read
    # fork starts a worker in milliseconds; macOS lacks a safe fork, so it spawns.
    context = get_context("spawn" if sys.platform == "darwin" else "fork")
    with _worker_pool(context, jobs) as pool:
        # At most one part a worker, and one more, read ahead of the merge: pool.imap reads every part ahead, and
        # parts that wait to be merged (--unique's on 10 million distinct ids) held 1.9 GB.
        tasks = zip(repeat(path), bounds[:-1], bounds[1:], repeat(new_part))
        ahead = deque(pool.apply_async(reader, (task,)) for task in islice(tasks, jobs + 1))
        for end in bounds[1:]:
            part = ahead.popleft().get()
            ahead.extend(pool.apply_async(reader, (task,)) for task in islice(tasks, 1))
            yield end, part


def _read_parallel(
    path: str,
    size: int,
    jobs: int,
    new_part: Callable[[], _P],
    strict: bool = False,
    progress: _Progress | None = None,
    reader: Callable[[_ByteRange[_P]], _P] = _read_range,
    range_size: int = 0,
    whole: _P | None = None,
) -> _P:
    """Read PATH in byte ranges (of RANGE_SIZE bytes at most) on JOBS worker processes, each by READER into NEW_PART(),
    appended in file order (to WHOLE, if given)."""
    for end, part in _in_ranges(path, size, jobs, new_part, reader, range_size):
        if whole is None:
            whole = part  # the first part itself: copying it into an empty one cost a pass and its memory
        else:
            whole.add(part)
        whole.expect(end, size)
        if progress:
            progress(end)
        if strict and whole.skipped.count:
            break
    return whole or new_part()


class _Progress:
    """Bytes done and rate on a terminal's stderr, for big files only; silent otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.shown = False
        self.enabled = total > _PROGRESS_MIN and sys.stderr.isatty()
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


def _default_jobs() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _parallel_size(path: str, stream: BinaryIO, jobs: int) -> int:
    """PATH's size if JOBS workers should read it in byte ranges (a big plain file, more than one job), else 0."""
    if path == "-" or isinstance(stream, _COMPRESSED) or jobs < 2:
        return 0
    size = os.fstat(stream.fileno()).st_size
    return size if size >= _PARALLEL_MIN else 0


# On a Dask cluster: the same byte ranges (a compressed file is read whole)
# become Dask tasks running _count_range, and their tallies are merged in file order
# exactly as the local workers' are.  Dask is optional: imported only here.
_SCHEDULER_SECONDS = 10  # to reach the scheduler; then an error, not a hang


def _cluster_ranges(paths: list[str]) -> list[tuple[str, int, int]]:
    """The tasks for PATHS: (path, lo, hi) line-aligned ranges of big plain files, (path, 0, -1) for a whole file."""
    ranges = []
    for path in paths:
        with _opened(path) as stream:
            size = 0 if isinstance(stream, _COMPRESSED) else os.fstat(stream.fileno()).st_size
        if size > _RANGE_SIZE:
            bounds = _line_bounds(path, size, -(-size // _RANGE_SIZE))
            ranges += [(path, lo, hi) for lo, hi in pairwise(bounds)]
        else:
            ranges.append((path, 0, -1))
    return ranges


def _count_range(path: str, lo: int, hi: int, window: Window) -> _Tally:
    """A cluster task: bytes [LO, HI) of PATH, or the whole file (HI < 0), compressed or not."""
    part = partial(_UniqueTally if window.unique else _Tally, window=window)  # unsettled: the merger settles it
    if hi >= 0:
        return _read_range((path, lo, hi, part))
    with _opened(path) as stream:
        tally = _read_stream(stream, part())
    tally.finish()
    return tally


def _merge_ranges(
    results: Iterable[tuple[tuple[str, int, int], _Tally]],
    several: bool,
    strict: bool,
    new: Callable[[], _Tally] = _Tally,
) -> _Tally:
    """The tallies of consecutive ranges, merged in file order into NEW() ones; rows skipped name their file when
    SEVERAL."""
    total, current, path = new(), new(), ""
    for (range_path, _, _), tally in results:
        if range_path != path and path:
            total.add(current, file=path if several else "")
            current = new()
        path = range_path
        current.add(tally)  # ranges of one file: their lines number on
        if strict and current.skipped.count:
            break
    if path:
        total.add(current, file=path if several else "")
    if strict and total.skipped.count:
        raise total.skipped.strict_error(path)
    return total


def _count_on_cluster(paths: list[str], window: Window, address: str, strict: bool) -> _Tally:
    """Count PATHS as tasks of the Dask scheduler at ADDRESS, whose workers see the same paths."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs Dask: pip install '.[dask]' in a clone of totaler") from None
    import totaler as module  # tasks name module._count_range: the workers import totaler, never __main__

    if "-" in paths:
        raise UsageError("--scheduler counts files its workers can open, not standard input")
    ranges = _cluster_ranges(paths)
    try:
        client = Client(address, timeout=_SCHEDULER_SECONDS, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise InputError(f"cannot reach the Dask scheduler at {address} ({error})") from None
    tasks = [(os.path.abspath(path), lo, hi) for path, lo, hi in ranges]  # workers have another directory
    with client:
        client.upload_file(module.__file__)  # the workers run this very version
        # The window as the imported module's classes: those of __main__ would be pickled by value, code and all.
        asked = module.Window(*window[:3], module.Buckets(*window.buckets), *window[4:])
        futures = client.map(module._count_range, *zip(*tasks, strict=True), [asked] * len(tasks), pure=False)
        try:
            results = zip(ranges, (future.result() for future in futures), strict=True)
            return _merge_ranges(results, len(paths) > 1, strict, partial(_new_tally, window, _Transactions()))
        except (InputError, module.InputError) as error:  # raised by a worker: the module's own class
            raise InputError(str(error)) from None
        except Exception as error:  # a task that failed on its worker: say which, once
            raise InputError(f"a task failed on the Dask cluster at {address}: {error!r}") from None
        finally:
            client.cancel(futures)  # Ctrl-C, --strict or an error: no task counts on


def _input_files(name: str) -> list[str]:
    """The files NAME stands for, in name order: itself, a directory's regular files (recursively), or a glob's."""
    if name == "-" or os.path.isfile(name) or not (os.path.isdir(name) or any(c in name for c in "*?[")):
        return [name]  # a file, standard input, or a name _count_file will say is missing
    if os.path.isdir(name):
        found = [os.path.join(root, file) for root, _, files in os.walk(name) for file in files]
    else:
        found = glob.glob(name, recursive=True)
    files = sorted(path for path in found if os.path.isfile(path))
    if not files:
        raise InputError(f"{_display(name)}: {'no files in it' if os.path.isdir(name) else 'no file matches'}")
    return files


def count_files(
    paths: list[str], window: Window, strict: bool = False, jobs: int = 0, scheduler: str | None = None
) -> _Tally:
    """Count PATHS one after the other, as one log: files in name order, then lines; on a Dask cluster if asked.
    Under --unique, one _Transactions holds the ids of every file read so far."""
    if scheduler:
        return _count_on_cluster(paths, window, scheduler, strict)
    transactions = _Transactions()
    if len(paths) == 1:
        return _count_file(paths[0], window, strict, jobs, transactions=transactions)
    total = _new_tally(window, transactions)
    for path in paths:
        total.add(_count_file(path, window, strict, jobs, transactions=transactions), file=path)
    return total


def _read_warnings(name: str, rows: int, skipped: _Skipped) -> list[str]:
    """What to say of the input NAME once read: ROWS read fine, SKIPPED malformed.  InputError when not one row
    could be read: a log of the wrong shape is an error, not an answer of empty buckets."""
    cause = skipped.cause()
    if skipped.count and not rows:
        because = f"; likely cause: {cause}" if cause else ""
        raise InputError(
            f"{_display(name)}: not one of its {_plural(skipped.count, 'row')} could be read{because} "
            f"({skipped.where(0)}: {skipped.first[0][1]}); a row looks like {_GOOD_ROW}"
        )
    if skipped.count:
        most = f"; most rows are malformed, likely cause: {cause}" if cause and skipped.count > rows else ""
        return [skipped.summary() + most]
    if rows:
        return []
    return ["standard input gave no rows (docker run needs -i)" if name == "-" else f"{_display(name)} holds no rows"]


def _count_file(
    path: str,
    window: Window,
    strict: bool = False,
    jobs: int = 0,
    fast: bool = True,
    transactions: _Transactions | None = None,
) -> _Tally:
    """Count PATH ('-' for standard input): in parallel when it is a big regular uncompressed file, else as a stream.

    Whichever way it goes, the answer is count_events(plain_events(...))'s for the same bytes, skipped
    rows and their line numbers included: tests/test_fast_path.py holds every way to that.
    """
    jobs = jobs or _default_jobs()
    with _opened(path) as stream:
        raw = stream if path == "-" else getattr(stream, "fileobj", stream)  # gzip: progress in its bytes
        progress = _Progress(os.fstat(raw.fileno()).st_size if path != "-" else 0)
        whole = _new_tally(window, transactions, fast)  # the ids of earlier files, under --unique
        if fast and (size := _parallel_size(path, stream, jobs)):
            part = partial(_UniqueTally if window.unique else _Tally, window=window)  # unsettled: settled here
            # A _Tally starts as the first part itself: copying it into an empty one cost a pass and its memory.
            tally = _read_parallel(path, size, jobs, part, strict, progress, whole=whole if window.unique else None)
        else:
            report = (lambda: progress(raw.tell())) if progress.enabled else None
            tally = _read_stream(stream, whole, strict=strict, progress=report)
        progress.close()
    if strict and tally.skipped.count:
        raise tally.skipped.strict_error(path)
    return tally


# ---------------------------------------------------------------------------
# The index: the log read once into columns by UTC hour, so that a question is
# answered from the hours its window reaches, in time that grows with their events
# (with their customers, for whole hours of the default question), never with the
# log.  Each hour keeps its events in file order: microseconds into the hour, customer code,
# event type code and position (none where the hour's events lie together),
# at most 13 bytes an event; each customer id is stored once, in one table, and an hour
# where few customers send many events keeps its events by customer too.  Answers come from
# _count_hours, whichever way the hours came.


class _Codes(dict):
    """A table of names: each name's code (by its UTF-8), given in the order names are first asked for; NAMES,
    by code."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __missing__(self, name: bytes) -> int:
        code = self[name] = len(self.names)
        self.names.append(name.decode())
        return code


_MAX_INDEXED = (1 << 32) - 1  # events --serve indexes: 4-byte positions (a log of about 400 GB)
_Chunk = tuple[array, array, array, array]  # an hour's events: codes, microseconds into it, event types, positions


class _IndexPart(_Part):
    """What is read of a byte range (or a stream) for the index: its events by UTC hour, in file order, as
    chunks of columns: customer and event type codes (of this part's tables), microseconds into the hour, and
    positions (events before them in the part); once read (finish), each hour's events by customer where dense
    (None where not), and each customer's events.  Its events' transaction ids are marked as _UniqueTally marks
    them, and settled against TRANSACTIONS (each block, where given; else when the part is joined): REPEATED, 1
    for each duplicate, 0 for the others."""

    def __init__(self, transactions: _Transactions | None = None) -> None:
        super().__init__()
        self.transactions = transactions
        self.part_ids: _PartIds | None = _PartIds()  # None in a segment read again
        self.numbers = array("l")  # each event's id's number, until settled
        self.repeated = bytearray()  # once settled: whether each event is a duplicate
        self.customers, self.types = _Codes(), _Codes()
        self.hours: dict[int, list[_Chunk]] = {}
        self.by_customer: dict[int, Counter | None] = {}
        self.totals: Counter[int] = Counter()
        self.first_hours: dict[int, int] = {}  # each customer's first hour, and last, by code
        self.last_hours: dict[int, int] = {}
        self.indexed = 0

    @classmethod
    def again(cls, customers: _Codes, types: _Codes, before: int) -> _IndexPart:
        """A part for a segment read again: codes of CUSTOMERS and TYPES, positions after BEFORE events, no ids
        marked (the file-backed phase answers no unique=true).  An hour read again was coded twice, in a part's
        tables and then in the index's, and its ids marked (100,000 customers, windows of 1-8 hours: median 79
        -> 64 ms)."""
        part = cls()
        part.customers, part.types, part.indexed, part.part_ids = customers, types, before, None
        return part

    def take(self, block: _Block) -> None:
        """File BLOCK's events by hour."""
        columns, lines = _block_columns(block, self.lines + 1, self.skipped)
        self.check_room(len(columns.names))
        if self.part_ids is not None:
            self.numbers.extend(self.part_ids.marked(columns.ids))
        if self.transactions is not None:
            self.settle(self.transactions)
        codes = array("I", map(self.customers.__getitem__, columns.names))
        types = array("I", map(self.types.__getitem__, columns.types))
        positions = array("I", range(self.indexed, self.indexed + len(codes)))
        block_chunk = (codes, array("I", columns.in_hour), types, positions)
        for hour, rows in _rows_by_hour(columns.hours):
            if isinstance(rows, range):  # the rows lie together: a slice of each column, in C
                chunk = tuple(column[rows.start : rows.stop] for column in block_chunk)
            else:
                chunk = tuple(array("I", map(column.__getitem__, rows)) for column in block_chunk)
            self.hours.setdefault(hour, []).append(chunk)  # type: ignore[arg-type]
        self.lines += lines
        self.indexed += len(codes)

    def check_room(self, more: int) -> None:
        """Raise InputError if MORE events would take positions past 32 bits (4 bytes an event, not 8)."""
        if self.indexed + more > _MAX_INDEXED:
            raise InputError(f"more than {_MAX_INDEXED:,} events: too many for --serve (the command line counts any)")

    def prepare(self) -> None:
        """Give back the pages the last part freed, first: a worker forked from a server whose heap earlier builds
        had holed dirtied page after page of it (on the 10-million-row file, 88 MiB a worker where a fresh one
        takes 25)."""
        _release_free_memory()

    def settle(self, transactions: _Transactions) -> None:
        """Mark the events waiting that are duplicates, by TRANSACTIONS (the earlier parts' ids)."""
        fates = self.part_ids.settle(transactions)
        self.repeated += bytes(map(not_, map(fates.__getitem__, self.numbers)))
        self.part_ids, self.numbers, self.transactions = _PartIds(), array("l"), transactions

    def finish(self) -> None:
        """Join each hour's chunks into one, count each hour's customers and each customer's events, seal the
        ids if unsettled: in the worker that read them, not in the master."""
        if self.transactions is None:
            self.part_ids.seal()
        for hour, chunks in self.hours.items():
            if len(chunks) > 1:
                self.hours[hour] = chunks = [_joined(chunks)]
            counted = Counter(chunks[0][0])
            self.by_customer[hour] = _kept_by_customer(counted, len(chunks[0][0]))
            self.totals.update(counted if self.by_customer[hour] is not None else chunks[0][0])  # few keys, or in C
        # dict.fromkeys keeps the last value a key gets, in C: hours in time order give each customer's last
        # hour, and backwards its first.
        for hour in sorted(self.hours):
            self.last_hours.update(dict.fromkeys(self.by_customer[hour] or self.hours[hour][0][0], hour))
        for hour in sorted(self.hours, reverse=True):
            self.first_hours.update(dict.fromkeys(self.by_customer[hour] or self.hours[hour][0][0], hour))

    def join(self, later: _IndexPart) -> None:  # type: ignore[override]
        """Append LATER's events: its codes become ours, its positions move on by our events; its duplicates
        settled against every id before it (unless ours are not kept: a segment read again, in a file-backed
        index).  An empty part takes LATER's columns as they are."""
        if self.transactions is not None:
            later.settle(self.transactions)
            self.repeated += later.repeated
        if self.transactions is not None and not self.indexed and not self.hours:  # the first part of a build
            taken = ("customers", "types", "hours", "by_customer", "totals", "first_hours", "last_hours", "indexed")
            for name in taken:
                setattr(self, name, getattr(later, name))
            return
        self.append(later)

    def append(self, later: _IndexPart) -> None:
        """Append LATER's columns, events by customer and customers' hours to ours."""
        self.check_room(later.indexed)
        customers = array("I", map(self.customers.__getitem__, later.customers))  # keys, in the order of their codes
        types = array("I", map(self.types.__getitem__, later.types))
        for hour, chunks in later.hours.items():
            counted = later.by_customer.get(hour)
            if counted is not None:
                counted = Counter({customers[code]: n for code, n in counted.items()})
            if hour in self.hours:  # an hour both hold: its events by customer added, if both kept them
                mine = self.by_customer.get(hour)
                counted = None if mine is None or counted is None else mine + counted
            self.by_customer[hour] = counted
            for codes, in_hour, type_codes, positions in chunks:
                codes = array("I", map(customers.__getitem__, codes))
                type_codes = array("I", map(types.__getitem__, type_codes))
                positions = array("I", map(add, positions, repeat(self.indexed)))
                self.hours.setdefault(hour, []).append((codes, in_hour, type_codes, positions))
        for code, n in later.totals.items():
            mine = customers[code]
            self.totals[mine] += n
            self.first_hours[mine] = min(self.first_hours.get(mine, later.first_hours[code]), later.first_hours[code])
            self.last_hours[mine] = max(self.last_hours.get(mine, later.last_hours[code]), later.last_hours[code])
        self.indexed += later.indexed


def _rows_by_hour(hours: list[int]) -> Iterator[tuple[int, range | list[int]]]:
    """Each UTC hour of HOURS (a block's rows), in time order, with its rows in file order: a range where hours
    never go back, as in a log written in time order (100,000 customers, 64 MiB in process: 3.6-3.7 -> 3.2-3.3 us
    a row, where each hour's rows were gathered one by one)."""
    if hours == sorted(hours):
        for hour in sorted(set(hours)):
            yield hour, range(bisect_left(hours, hour), bisect_right(hours, hour))
        return
    order = sorted(range(len(hours)), key=hours.__getitem__)  # stable: rows keep file order within an hour
    ordered = list(map(hours.__getitem__, order))
    for hour in sorted(set(hours)):
        yield hour, order[bisect_left(ordered, hour) : bisect_right(ordered, hour)]


def _joined(chunks: list[_Chunk]) -> _Chunk:
    """CHUNKS of one hour, one after the other, as one."""
    first = tuple(array(column.typecode, column) for column in chunks[0])
    for chunk in chunks[1:]:
        for mine, theirs in zip(first, chunk, strict=True):
            mine.extend(theirs)
    return first  # type: ignore[return-value]


class _Hour:
    """One UTC hour of the log: its events in file order (customer codes, microseconds into the hour, event type
    codes or None if the log has one type, as bits where the hour has two; positions as gaps from the one before
    or None where they follow one another, duplicate flags as bits or None where there is none), and its events
    by customer code, in order of first event, where few customers send many events (else None: counting its
    codes is as quick).  Each column in the narrowest array its values fit: 6.7 bytes an event on the 10M-row
    log of 7 customers."""

    __slots__ = ("by_customer", "codes", "first", "gaps", "in_hour", "repeated", "types")

    def __init__(
        self,
        chunk: _Chunk,
        one_type: bool,
        by_customer: Counter | None = None,
        customers: int = 1 << 32,
        repeated: bytearray | None = None,
    ) -> None:
        codes, self.in_hour, types, positions = chunk
        flags = None if repeated is None else bytes(map(repeated.__getitem__, positions))
        self.repeated = _packed(flags) if flags and 1 in flags else None  # a bit for each event, 1 if a duplicate
        self.codes = _narrowest(codes, customers - 1)
        most = 0 if one_type else max(types, default=0)  # two event types, as most logs have: a bit an event
        narrow = None if one_type else _narrowest(types, most)  # bytes() of a "B" array: its values
        self.types = narrow if narrow is None or most > 1 else _packed(bytes(narrow))
        self.first = positions[0] if positions else 0  # in file order: positions rise
        # Kept as the gap from the event before (None where each is 1: the hour's events lie together): in a
        # log in time order most gaps are under 256, so 1.4 bytes an event, not the 2.1 of positions from FIRST.
        self.gaps = None
        if positions and positions[-1] - self.first != len(positions) - 1:
            gaps = array("I", map(sub, positions, chain((self.first,), positions)))
            self.gaps = _narrowest(gaps, max(gaps))
        self.by_customer = by_customer

    def position_column(self) -> Iterable[int]:
        """The position of each event."""
        if self.gaps is None:
            return range(self.first, self.first + len(self.codes))
        return islice(accumulate(self.gaps, initial=self.first), 1, None)

    def type_column(self) -> Iterable[int] | None:
        """The event type code of each event; None if the log has one type."""
        if isinstance(self.types, bytes):
            return _unpacked(self.types, len(self.codes))
        return self.types

    def duplicates(self) -> bytes:
        """1 for each event that is a duplicate, else 0 (empty if none is)."""
        return b"" if self.repeated is None else _unpacked(self.repeated, len(self.codes))


# Flags of 0 and 1 as bits, packed and unpacked in C by way of a base-2 int: 5 µs and 4 µs for an hour of
# 2,000 events.  Duplicate flags so kept take an eighth of a byte an event, not a byte.
_TO_DIGITS, _FROM_DIGITS = bytes.maketrans(b"\0\1", b"01"), bytes.maketrans(b"01", b"\0\1")


def _packed(flags: bytes) -> bytes:
    """FLAGS (each 0 or 1) as bits: flag I is bit I of the little-endian result."""
    return int(flags.translate(_TO_DIGITS)[::-1] or b"0", 2).to_bytes((len(flags) + 7) // 8, "little")


def _unpacked(bits: bytes, count: int) -> bytes:
    """The first COUNT flags of BITS, as _packed packed them, each a byte 0 or 1."""
    digits = bin(int.from_bytes(bits, "little"))[2:].zfill(count)
    return digits[::-1].encode("ascii").translate(_FROM_DIGITS)[:count]


def _narrowest(column: array, largest: int) -> array:
    """COLUMN in the narrowest array of unsigned ints that holds LARGEST (itself if that is its own)."""
    code = "B" if largest < 1 << 8 else "H" if largest < 1 << 16 else "I"
    return column if column.typecode == code else array(code, column)


_DENSE = 4  # an hour keeps its events by customer when its events are at least this many times its customers


def _kept_by_customer(counted: Counter, events: int) -> Counter | None:
    """COUNTED, an hour's events by customer code, if the hour keeps them (of EVENTS, few customers send many)."""
    return counted if len(counted) * _DENSE <= events else None


def _hours_of_part(whole: _IndexPart) -> dict[int, _Hour]:
    """The _Hour of each hour of a part read whole, in time order; each hour's chunks freed once its _Hour is made."""
    hours = {}
    one_type, customers = len(whole.types) <= 1, len(whole.customers)
    repeated = whole.repeated if 1 in whole.repeated else None
    with _gc_paused():
        for hour in sorted(whole.hours):
            chunks = whole.hours.pop(hour)
            chunk = chunks[0] if len(chunks) == 1 else _joined(chunks)
            hours[hour] = _Hour(chunk, one_type, whole.by_customer.get(hour), customers, repeated)
    return hours


# Answers from hours.  An hour the window holds whole, that one bucket holds whole, for
# every customer and event type, is answered from its events by customer; any other is answered
# from its events, picked in C by time, customer and type.  A bucket of several hours
# orders its customers by the position of their first event in it.


class _Asked(NamedTuple):
    """What a question asks of an index's tables: one customer's code or None (all), the event type codes or
    None (all); NOTHING when it asks for a customer or types the log has not."""

    customer: int | None
    types: frozenset[int] | None
    nothing: bool = False


def _customer_key(customer: str) -> bytes | None:
    """CUSTOMER as the bytes a row holds; None for a lone surrogate, which no row's bytes decode to."""
    try:
        return customer.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None


def _asked_of(window: Window, codes: _Codes | _SortedCodes, types: list[str]) -> _Asked:
    """WINDOW's customer and event types as codes of the index's tables CODES and TYPES."""
    key = None if window.customer is None else _customer_key(window.customer)
    customer = None if key is None else codes.get(key)
    type_codes = None
    if window.event_types is not None:
        type_codes = frozenset(code for code, name in enumerate(types) if name in window.event_types)
    nothing = (window.customer is not None and customer is None) or type_codes == frozenset()
    return _Asked(customer, type_codes if type_codes is None or len(type_codes) < len(types) else None, nothing)


def _picked(hour: _Hour, start: int, window: Window, asked: _Asked) -> tuple[Iterable[int], list[int], Iterable[int]]:
    """The microseconds into the hour, codes and positions of the events of HOUR (from START) that WINDOW counts,
    in file order."""
    low, high = max(window.start - start, 0), min(window.end - start, _HOUR)
    selectors = []
    if (low, high) != (0, _HOUR):
        selectors += [map(le, repeat(low), hour.in_hour), map(gt, repeat(high), hour.in_hour)]
    if asked.customer is not None:
        selectors.append(map(eq, hour.codes, repeat(asked.customer)))
    if asked.types is not None and (types := hour.type_column()) is not None:
        selectors.append(map(asked.types.__contains__, types))
    if window.unique and hour.repeated is not None:
        selectors.append(map(not_, hour.duplicates()))
    if not selectors:
        return hour.in_hour, hour.codes, hour.position_column()  # type: ignore[return-value]
    chosen = list(selectors[0]) if len(selectors) == 1 else list(map(all, zip(*selectors, strict=True)))
    return compress(hour.in_hour, chosen), list(compress(hour.codes, chosen)), compress(hour.position_column(), chosen)


def _hour_counts(hour: _Hour, start: int, window: Window, asked: _Asked) -> tuple[dict, dict | None]:
    """Counts of HOUR's events WINDOW counts, by (bucket, code) in order of first event; and, where a bucket may
    hold other hours (buckets not UTC hours), the position of each key's first event."""
    several = window.buckets != _UTC_HOURS
    bucket = _whole_units(window.buckets, _HOUR)[start] if several else start
    whole_hour = window.start <= start and start + _HOUR <= window.end
    every_event = asked.customer is None and asked.types is None and not (window.unique and hour.repeated)
    if whole_hour and bucket is not None and every_event:
        counted = hour.by_customer if hour.by_customer is not None else Counter(hour.codes)
        counts = dict(zip(zip(repeat(bucket), counted), counted.values(), strict=False))  # repeat() never ends
        if not several:
            return counts, None
        firsts = dict(zip(reversed(hour.codes), reversed(list(hour.position_column())), strict=True))
        return counts, {(bucket, code): firsts[code] for code in counted}
    in_hour, codes, positions = _picked(hour, start, window, asked)
    if bucket is not None:
        keys = list(zip(repeat(bucket), codes))
    else:
        instants = list(map(add, repeat(start), in_hour))
        keys = list(zip(_bucket_column([start] * len(instants), instants, window.buckets), codes, strict=True))
    return Counter(keys), dict(zip(reversed(keys), reversed(list(positions)), strict=True)) if several else None


def _count_hours(hours: Iterable[tuple[int, _Hour]], window: Window, asked: _Asked, names: list[str]) -> Counts:
    """The answer to WINDOW from HOURS, (start, _Hour) in time order: counts by (bucket, customer)."""
    if asked.nothing:
        return {}
    counts: dict[tuple[int, int], int] = {}
    firsts: dict[tuple[int, int], int] = {}
    for start, hour in hours:
        counted, first = _hour_counts(hour, start, window, asked)
        if first is None:  # an hour is its own bucket: no key of it is in an earlier hour
            counts.update(counted)
            continue
        for key, n in counted.items():
            counts[key] = counts.get(key, 0) + n
            firsts[key] = min(firsts.get(key, first[key]), first[key])
    keys = sorted(counts, key=lambda key: (key[0], firsts[key])) if firsts else counts
    return {(bucket, names[code]): counts[bucket, code] for bucket, code in keys}


# Big logs in time order: served first from a survey of the file, hours read again on demand.
# Reading every event into memory takes seconds where a survey of which hours lie in
# which segments of 256 KiB, and of its rows and customers, takes about what counting
# takes: when a log comes in time order (each hour in a few segments), the server answers
# from the survey at once, an hour a window reaches read from the open file (and kept)
# the first time, while the index holding every event in memory is built.

_SEGMENT_SIZE = 1 << 18  # the unit in which an hour's rows are found, and read again
_FILE_BACKED_MIN = 1 << 26  # smaller logs are indexed in memory: fast enough, and no answer waits for a read
_PROBE_HOURS = 16  # more hours than this in the first segment: not in time order, indexed in memory
_FILE_BACKED_SPAN = 16 << 20  # the most bytes an hour's rows may lie in (16 MiB: about 0.15 s to read again)
_CACHED_EVENTS = 1 << 21  # the events of hours read again that a server worker keeps (LRU)
_SEGMENTS_KEPT = 4  # the segments a server worker keeps as read, for the next hour asked (each ~2,500 events)
_FILE_HOURS = 26  # the most hours one window reads again from the file: a day cut at both ends (one: ~1 s)


class _Survey(_Part):
    """What a pass over a file (or byte range) found: (start, end, its UTC hours, its events) of each segment.  Its
    customers are not gathered: that cost a third again with 100,000 of them."""

    def __init__(self) -> None:
        super().__init__()
        self.segments: list[tuple[int, int, set[int], int]] = []
        self.hours: set[int] = set()  # of the segment being read

    def take(self, block: _Block) -> None:
        """Note BLOCK's hours: by the fast shapes' keys where every row has one (no tuple a row
        where rows come in runs), else from its columns."""
        lines = _block_lines(block)
        with suppress(_Unproved):
            if not block.too_long and (found := _surveyed(block.data, block.lo, block.hi, lines)) is not None:
                self.hours |= found
                self.lines += lines
                return
        columns, lines = _block_columns(block, self.lines + 1, self.skipped)
        self.hours.update(columns.hours)
        self.lines += lines

    def join(self, later: _Survey) -> None:  # type: ignore[override]
        """Append LATER's segments."""
        self.segments += later.segments


@lru_cache(maxsize=16)
def _hours_pattern(rows: int, zone: bytes | None, shape: _RowShape) -> re.Pattern[bytes]:
    """ROWS consecutive rows of SHAPE, capturing only the hour key (and zone, unless ZONE is given) of each: a
    quarter less work for the engine than with the customer too."""
    start, end = _row_frame(shape)
    start = start.replace(b"(", b"(?:", 1)  # the customer, matched but not captured
    timestamp = _MINUTES + (rb"(" + _ZONE + rb")" if zone is None else re.escape(zone))
    return re.compile((start + rb"(" + _DATE_HOUR + rb")" + timestamp + end) * rows + rb"(?=\n)")


def _surveyed(data: bytes, lo: int, hi: int, lines: int) -> set[int] | None:
    """The UTC hours of DATA[LO:HI], of LINES lines, by the fast shapes: by runs where rows come in them, else
    GROUP rows a match capturing only their keys; None unless every row has one."""
    shape, zone = _RowShape(quoted=data.startswith(b'\n"', lo)), _shared_zone(data, lo, hi)
    proved = _proved_runs(data, lo, hi, shape) if _read_by_runs(_mean_run(data, lo, hi, shape, _ZONE), zone) else None
    if proved is not None:
        return {hour for key in set(zip(proved[1], proved[2], strict=True)) for hour in _reach(*key)}
    if zone is not None and _zone_micros(zone) % _HOUR:
        zone = None  # each row's zone captured: an hour key in a zone with minutes reaches two UTC hours
    if not shape.quoted and _plain_bytes(data, lo, hi):  # as the count's fast path (100,000 customers: 0.30 -> 0.25
        shape = shape._replace(loose=True)  # us a row in findall, the most of a survey's time)
    split = lo
    for _ in range(lines % _GROUP):
        split = data.find(b"\n", split + 1)
    ones = _hours_pattern(1, zone, shape).findall(data, lo, split + 1)
    groups = _hours_pattern(_GROUP, zone, shape).findall(data, split, hi)
    if len(ones) + _GROUP * len(groups) != lines:
        return None
    if zone is not None:
        keys = {(key, zone) for key in set(ones).union(*map(set, zip(*groups, strict=True)))}
    else:  # each row's (key, zone) is two of a group's captures
        keys = set(ones).union(*(set(map(itemgetter(row, row + 1), groups)) for row in range(0, 2 * _GROUP, 2)))
    return {hour for key in keys for hour in _reach(*key)}


def _survey_segments(byte_range: _ByteRange[_Survey]) -> _Survey:
    """A byte range, read segment by segment, each one's hours noted."""
    path, lo, hi, new_part = byte_range
    whole = new_part()
    with open(path, "rb") as stream:
        bounds = [lo]
        while (at := _next_line(stream, bounds[-1] + _SEGMENT_SIZE)) < hi:
            bounds.append(at)
        for start, end in pairwise([*bounds, hi]):
            stream.seek(start)
            segment = _read_stream(stream, _Survey(), end - start, at_start=start == 0)
            segment.segments.append((start, end, segment.hours, segment.events))
            whole.add(segment)
    return whole


def _survey(path: str, jobs: int) -> _Survey | None:
    """PATH surveyed segment by segment; None unless it is a plain file in time order."""
    with _opened(path) as stream:
        if path == "-" or isinstance(stream, _COMPRESSED):
            return None
        size = os.fstat(stream.fileno()).st_size
        probe = _read_stream(stream, _Survey(), _SEGMENT_SIZE)  # its last line may be cut: no matter
    if len(probe.hours) > _PROBE_HOURS:
        return None
    if jobs > 1 and size >= _PARALLEL_MIN:
        found = _read_parallel(path, size, jobs, _Survey, reader=_survey_segments)
    else:
        found = _survey_segments((path, 0, size, _Survey))
    spans: dict[int, int] = {}
    for start, end, hours, _ in found.segments:
        for hour in hours:
            spans[hour] = spans.get(hour, 0) + end - start
    return found if max(spans.values(), default=0) <= _FILE_BACKED_SPAN else None


class _LogFiles:
    """The files a file-backed index was read from, kept open (a log rotated away is still the one indexed), as
    they were (size and modification time); where each segment lies and what events it held."""

    def __init__(self, paths: list[str]) -> None:
        self.files = [open(path, "rb", buffering=0) for path in paths]  # noqa: SIM115 - open while served
        self.paths = paths
        self.stamps = [_file_stamp(file.fileno()) for file in self.files]
        # (file number, start, end, its events, events before it in the log) of each segment
        self.segments: list[tuple[int, int, int, int, int]] = []

    def read(self, number: int, customers: _Codes, types: _Codes) -> dict[int, list[_Chunk]]:
        """Segment NUMBER read again: its chunks by hour, codes of CUSTOMERS and TYPES, positions in the log;
        InputError if the file is no longer as it was indexed."""
        file, start, end, events, before = self.segments[number]
        data = os.pread(self.files[file].fileno(), end - start, start)
        part = _read_stream(io.BytesIO(data), _IndexPart.again(customers, types, before), at_start=start == 0)
        if len(data) < end - start or part.events != events:
            raise self.changed(file)
        self.check(file)
        return part.hours

    def check(self, file: int) -> None:
        """Raise InputError if FILE (its number) is no longer as it was indexed."""
        if _file_stamp(self.files[file].fileno()) != self.stamps[file]:
            raise self.changed(file)

    def changed(self, file: int) -> InputError:
        """The error for a file no longer as it was indexed."""
        return InputError(f"{_display(self.paths[file])} changed since it was indexed; send SIGHUP to read it again")


_Stamp = tuple[int, int, int, int, bytes, bytes]
_STAMP_ENDS = 64  # bytes read at each end of a file for its stamp


def _file_stamp(descriptor: int) -> _Stamp:
    """What tells an open file changed: its device and inode (another file renamed over the path), size and
    modification time (changed in place), and its first and last bytes (rewritten within one tick of the clock)."""
    found = os.fstat(descriptor)
    tail = max(0, found.st_size - _STAMP_ENDS)
    first, last = os.pread(descriptor, _STAMP_ENDS, 0), os.pread(descriptor, _STAMP_ENDS, tail)
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, first, last


def _path_stamp(path: str) -> _Stamp:
    """_file_stamp of the file at PATH now."""
    with open(path, "rb") as file:
        return _file_stamp(file.fileno())


class _FileHours:
    """The hours of a file-backed index: each read again from its segments the first time it is asked for, and
    kept (least recently used dropped past _CACHED_EVENTS events); codes of its own tables."""

    def __init__(self, files: _LogFiles, segments: dict[int, array]) -> None:
        self.files, self.segments = files, segments  # hour -> the segments holding its rows
        self.customers, self.types = _Codes(), _Codes()
        self.kept: OrderedDict[int, _Hour] = OrderedDict()
        self.kept_events = 0
        self.last_read: OrderedDict[int, dict[int, list[_Chunk]]] = OrderedDict()  # segment -> its chunks by hour

    def __getitem__(self, hour: int) -> _Hour:
        if (made := self.kept.get(hour)) is not None:
            self.kept.move_to_end(hour)
            return made
        chunks = []
        for number in self.segments[hour]:
            chunks += self.segment(number).get(hour, [])
        chunk = _joined(chunks) if chunks else _EMPTY_CHUNK
        counted = Counter(chunk[0])
        made = _Hour(chunk, False, _kept_by_customer(counted, len(chunk[0])))
        self.kept[hour], self.kept_events = made, self.kept_events + len(made.codes)
        while self.kept_events > _CACHED_EVENTS and len(self.kept) > 1:
            self.kept_events -= len(self.kept.popitem(last=False)[1].codes)
        return made

    def segment(self, number: int) -> dict[int, list[_Chunk]]:
        """Segment NUMBER's chunks by hour, read again unless among the last _SEGMENTS_KEPT read: a segment holds
        parts of 2-3 hours, and a window asks for its hours in turn (100,000 customers, windows of 1-8 hours: 2.1
        segments read an hour, 1.1 so; median 64 -> 36 ms)."""
        if (chunks := self.last_read.get(number)) is None:
            chunks = self.last_read[number] = self.files.read(number, self.customers, self.types)
            if len(self.last_read) > _SEGMENTS_KEPT:
                self.last_read.popitem(last=False)
        else:  # a new hour from a segment kept: as from one read again, an error if the file changed since
            self.files.check(self.files.segments[number][0])
        return chunks


_EMPTY_CHUNK: _Chunk = (array("I"), array("I"), array("I"), array("I"))


class _CustomerTable(NamedTuple):
    """What /customers answers from, by customer code: events, the hours of the first and last events, and the
    codes in the orders a page may ask for (by events, most first; by id), with the ids in id order to bisect."""

    totals: array
    first_hours: array
    last_hours: array
    by_events: array
    by_id: array
    sorted_ids: list[str]


def _customer_table_of(whole: _IndexPart) -> _CustomerTable:
    """The _CustomerTable of an index in memory, from its parts' totals and hours: worked out once, in the master,
    so that no page costs a worker more than its own customers."""
    names, codes = whole.customers.names, range(len(whole.customers))
    totals = array("Q", map(whole.totals.__getitem__, codes))
    by_id = array("I", sorted(codes, key=names.__getitem__))
    return _CustomerTable(
        totals,
        array("q", map(whole.first_hours.__getitem__, codes)),
        array("q", map(whole.last_hours.__getitem__, codes)),
        array("I", sorted(codes, key=totals.__getitem__, reverse=True)),  # stable: ties in order of first event
        by_id,
        list(map(names.__getitem__, by_id)),
    )


class _SortedCodes:
    """The customer codes of an index in memory, looked up by bisecting its ids in id order (the customer
    list's): no dict of 100,000 ids beside them, 10 MB less in the master.  As _Codes: get() and names."""

    __slots__ = ("names", "table")

    def __init__(self, names: list[str], table: _CustomerTable) -> None:
        self.names, self.table = names, table

    def __len__(self) -> int:
        return len(self.names)

    def get(self, name: bytes) -> int | None:
        """NAME's code (the UTF-8 of an id), or None if no event has it."""
        text, ids = name.decode("utf-8", "surrogateescape"), self.table.sorted_ids
        at = bisect_left(ids, text)
        return self.table.by_id[at] if at < len(ids) and ids[at] == text else None


class Index(NamedTuple):
    """A whole log, by UTC hour: what the server answers from."""

    path: str
    hours: dict[int, _Hour] | _FileHours
    starts: list[int]  # the hours with events, sorted
    events: int
    customers: int | None  # None while file-backed: counted with the index in memory
    skipped: _Skipped
    seconds: float
    events_by_hour: dict[int, float]  # in a file-backed index, estimated from the segments
    longest_customer: int = 0  # a customer_id longer than this is in no bucket
    customer_codes: _SortedCodes | None = None  # the customers by code, in order of first event (in memory)
    types: list[str] = []  # noqa: RUF012 - the event types by code (in memory)
    files: _LogFiles | None = None  # where hours are read again from, if not kept in memory
    customer_table: _CustomerTable | None = None  # for /customers (in memory)
    duplicates: int | None = None  # rows whose transaction_id an earlier row carried (in memory)

    def starts_in(self, window: Window) -> list[int]:
        """The hours with events that WINDOW reaches."""
        return self.starts[bisect_left(self.starts, _hour_floor(window.start)) : bisect_left(self.starts, window.end)]

    def counts(self, window: Window) -> Counts:
        """The same counts _count_file gives for WINDOW, from the index."""
        if window.unique and self.files is not None:
            raise InputError("unique=true comes with the index in memory, being built; try again in a few seconds")
        starts = self.starts_in(window)
        if isinstance(self.hours, _FileHours) and sum(start not in self.hours.kept for start in starts) > _FILE_HOURS:
            raise InputError(f"a window that reads over {_FILE_HOURS} hours from the file comes with the index in "
                             "memory, being built; try again in a few seconds")  # fmt: skip
        chosen = [(start, self.hours[start]) for start in starts]  # read first, if from the file: they fill its tables
        hours = self.hours
        table, types = (
            (hours.customers, hours.types.names) if isinstance(hours, _FileHours) else (self.customer_codes, self.types)
        )
        return _count_hours(chosen, window, _asked_of(window, table, types), table.names)  # type: ignore[arg-type]


def _file_backed_index(name: str, paths: list[str], jobs: int) -> Index | None:
    """The index of PATHS with hours read again from the files; None unless they are big, plain and in time
    order."""
    started = time.monotonic()
    try:
        if sum(os.path.getsize(path) for path in paths if path != "-") < _FILE_BACKED_MIN:
            return None
    except OSError:
        return None  # the in-memory build says what is wrong with it
    surveys = []
    for path in paths:
        if (found := _survey(path, jobs)) is None:
            return None
        surveys.append(found)
    files, whole, segments = _LogFiles(paths), _Survey(), {}
    by_hour: dict[int, float] = {}  # a segment's events shared among its hours: enough to tell the busiest day
    before = 0  # events before the segment, in the log: its first event's position
    for number, (path, found) in enumerate(zip(paths, surveys, strict=True)):
        for start, end, hours, events in found.segments:
            for hour in hours:
                segments.setdefault(hour, array("I")).append(len(files.segments))
                by_hour[hour] = by_hour.get(hour, 0) + events / len(hours)
            files.segments.append((number, start, end, events, before))
            before += events
        whole.add(found, file=path if len(paths) > 1 else None)
    hours, seconds = _FileHours(files, segments), time.monotonic() - started
    # Customers not gathered yet: their number, and the longest id, come with the index in memory.
    return Index(
        name, hours, sorted(by_hour), whole.events, None, whole.skipped, seconds, by_hour, _MAX_LINE, files=files
    )


def _index_file(path: str, jobs: int, transactions: _Transactions) -> _IndexPart:
    """Read PATH for the index, a big plain file on JOBS workers; up to the size it had when the read began,
    so that a log growing meanwhile is not chased.  TRANSACTIONS: the ids of the files before it."""
    with _opened(path) as stream:
        plain = path != "-" and not isinstance(stream, _COMPRESSED)
        if size := _parallel_size(path, stream, jobs):
            # A byte range a job: the master joins each part in turn, and a join costs a pass over the
            # part's customers as well as its events (16 ranges of 1 GB: 2.4 s of joins, not 0.3).
            range_size, whole = max(_RANGE_SIZE, -(-size // jobs)), _IndexPart(transactions)
            return _read_parallel(path, size, jobs, _IndexPart, range_size=range_size, whole=whole)
        part = _read_stream(stream, _IndexPart(transactions), os.fstat(stream.fileno()).st_size if plain else -1)
    part.finish()
    return part


def build_index(name: str, jobs: int = 1, paths: list[str] | None = None, in_memory: bool = False) -> Index:
    """Read the files NAME stands for (PATHS, if already listed by _input_files) once into an Index, big plain
    files on JOBS workers (0: one per CPU), file-backed where it can be unless IN_MEMORY; InputError if one
    is unreadable."""
    started = time.monotonic()
    jobs = jobs or _default_jobs()
    paths = paths or _input_files(name)
    if not in_memory and (file_backed := _file_backed_index(name, paths, jobs)):
        return file_backed
    transactions = _Transactions()  # the ids of the files read so far: each transaction once, where asked
    whole = _index_file(paths[0], jobs, transactions) if len(paths) == 1 else _IndexPart(transactions)
    for path in paths if len(paths) > 1 else []:
        whole.add(_index_file(path, jobs, transactions), file=path)
    table, types = whole.customers, whole.types.names
    customer_table = _customer_table_of(whole)
    hours = _hours_of_part(whole)
    by_hour = {start: len(hour.codes) for start, hour in hours.items()}
    longest, seconds = max(map(len, table.names), default=0), time.monotonic() - started
    codes = _SortedCodes(table.names, customer_table)
    return Index(name, hours, list(hours), whole.indexed, len(table), whole.skipped, seconds, by_hour, longest,
                 codes, types, None, customer_table, whole.repeated.count(1))  # fmt: skip


# ---------------------------------------------------------------------------
# HTTP: a master process builds the index and opens the listening socket, then
# forks worker processes that share both (prefork, as nginx and gunicorn do).
# Each worker serves every connection from one asyncio event loop, so an idle or
# slow connection costs a few KiB and no thread; every request has a deadline and
# every reply a size limit.  SIGHUP builds a new index and forks new workers
# before the old ones finish their requests and exit: no connection is refused.


class _BadRequest(ValueError):
    """A request the server will not answer (HTTP 400); the message names the parameter."""


_QUERY_PARAMETERS = ("start", "end", "customer_id", "bucket", "tz", "event_type", "unique", "format")
# '09:30:00 05:30': the '+' of an offset, read as a space, after a time (not '9999-12-31 20:00', a date and a time)
_LOST_PLUS = re.compile(r"\d\d:\d\d(?::\d\d(?:\.\d+)?)? \d\d(?::?\d\d)?$")


def _asks_csv(accept: str) -> bool:
    """Whether an Accept header prefers CSV: text/csv with a q above 0 and above application/json's (RFC 9110
    12.5.1; equal, JSON, the default)."""
    weights = {"text/csv": 0.0, "application/json": 0.0}
    for media in accept.lower().split(","):
        kind, *parameters = (part.strip() for part in media.split(";"))
        if kind in weights:
            quality = next((value for name, _, value in (p.partition("=") for p in parameters) if name == "q"), "1")
            with suppress(ValueError):
                weights[kind] = max(weights[kind], float(quality))
    return weights["text/csv"] > max(0.0, weights["application/json"])


class _Query(NamedTuple):
    """A /counts request: its window, and the format of the answer (json or csv)."""

    window: Window
    format: str = "json"


def _parse_query(query: str, max_hours: int, accept: str = "") -> _Query:
    """The question a /counts query string asks, and the format (its format parameter, else CSV if the Accept
    header prefers it, else JSON); _BadRequest names what is wrong."""
    params = parse_qs(query, keep_blank_values=True)
    for name, values in params.items():
        if name not in _QUERY_PARAMETERS:
            raise _BadRequest(f"unknown parameter {name!r}; use {', '.join(_QUERY_PARAMETERS)}")
        if len(values) > 1 and name != "event_type":
            raise _BadRequest(f"{name} is given {len(values)} times")
    for name in ("start", "end"):
        if name not in params:
            raise _BadRequest(f"{name} is missing (e.g. /counts?start=2021-03-01T04:00:00Z&end=2021-03-01T06:30:00Z)")
    form = params.get("format", ["csv" if _asks_csv(accept) else "json"])[0]
    if form not in _RENDERINGS:
        raise _BadRequest(f"format {form!r} is not json or csv")
    unique = params.get("unique", ["false"])[0]
    if unique not in ("true", "false"):
        raise _BadRequest(f"unique {unique!r} is not true or false")
    buckets = _query_buckets(params.get("bucket", ["1h"])[0], params.get("tz", ["UTC"])[0])
    customer = params.get("customer_id", [None])[0]
    try:
        window = parse_window(params["start"][0], params["end"][0], customer, max_hours, _QUERY_PARAMETERS[:3],
                              buckets, params.get("event_type"))  # fmt: skip
    except UsageError as error:
        lost_plus = any(_LOST_PLUS.search(params[name][0]) for name in ("start", "end"))
        hint = " (a '+' in a URL must be written %2B)" if lost_plus else ""
        raise _BadRequest(f"{error}{hint}") from None
    return _Query(window._replace(unique=unique == "true"), form)


def _query_buckets(width: str, zone: str) -> Buckets:
    """The Buckets of a query's bucket and tz parameters; _BadRequest naming the one that is wrong."""
    try:
        size = parse_width(width)
    except ValueError as error:
        raise _BadRequest(f"bucket {error}") from None
    try:
        _zone_named(zone)
    except _BadZone as error:
        raise _BadRequest(f"tz {error}") from None
    return Buckets(size, zone)


class _Limits(NamedTuple):
    """What one client may cost; the defaults follow nginx's and gunicorn's."""

    header_seconds: float = 10.0  # the request line and headers must arrive within this
    idle_seconds: float = 30.0  # a keep-alive connection with no request is closed after this
    connections: int = 4096  # open per worker; more wait in the listen backlog
    line_bytes: int = 8192  # the request line, and each header line
    head_bytes: int = 32 << 10  # a whole request head; as much again is buffered before reading pauses
    header_fields: int = 100
    reply_bytes: int = 16 << 20  # a longer answer is refused (400), never built
    zone_buckets: int = 20_000  # buckets an answer may list in a zone that changes its offset (10-14 us each)
    cache_bytes: int = 32 << 20  # replies kept, in bytes; none bigger than a sixteenth of it
    stop_seconds: float = 0.8  # after SIGTERM, in-flight replies get this long to leave
    unsent_bytes: int = 32 << 20  # replies written and not yet read by their clients, all connections together


_JSON_TYPE = "application/json"
_TOO_MANY_UNREAD = "too many replies wait to be read; read yours, then ask"  # a 503
_STOPPING = "this worker is stopping (a reload or a stop) before this long request's turn; ask again"


class _Reply(NamedTuple):
    """What a GET is answered with: the payload, its type, and header lines of its own."""

    payload: bytes
    content_type: str = _JSON_TYPE
    headers: str = ""


class _ReplyCache:
    """Recent /counts replies by query, least recently used dropped first, bounded in bytes."""

    def __init__(self, budget: int) -> None:
        self.budget, self.used = budget, 0
        self.replies: OrderedDict[str, _Reply] = OrderedDict()

    def get(self, query: str) -> _Reply | None:
        """The reply kept for QUERY, if any."""
        reply = self.replies.get(query)
        if reply is not None:
            self.replies.move_to_end(query)
        return reply

    def put(self, query: str, reply: _Reply) -> None:
        """Keep REPLY unless it is too big to be worth its room."""
        size = _cached_size(query, reply)
        if size > self.budget // 16 or query in self.replies:
            return
        while self.used + size > self.budget:
            self.used -= _cached_size(*self.replies.popitem(last=False))
        self.replies[query] = reply
        self.used += size


_CACHE_ENTRY = 320  # bytes an entry costs besides its text: three objects, a tuple and the dict's node (traced: 295)


def _cached_size(query: str, reply: _Reply) -> int:
    """What the cache charges for REPLY to QUERY: what it really costs (charging the text alone, a budget of 64 MiB
    took 255 MiB a worker)."""
    return len(query) + len(reply.payload) + len(reply.headers) + _CACHE_ENTRY


def _bucket_count(window: Window, most: int | None = None) -> int:
    """At most how many buckets WINDOW's answer lists: its span from its first bucket's start over the width, and two
    more for each change of offset from there (one there began it) to its end (a change begins a bucket, and may
    leave the buckets either side of it short); exact where no change falls there.  Where the span alone passes
    MOST, the span: no change is looked for (100,000 hours: 2.3 ms)."""
    buckets = window.buckets
    first = buckets.floor(window.start)
    count = (window.end - 1 - first) // buckets.width + 1
    if _fixed_offset(buckets.zone) is not None or (most is not None and count > most):
        return count
    return count + 2 * _offset_changes(first - 1, window.end, buckets.zone)


@lru_cache(maxsize=64)
def _offset_changes(start: int, end: int, zone: str) -> int:
    """How many times ZONE's offset changes within [START, END): its offset every two days and at the end compared
    (the tz database never changes an offset twice within four days; 100,000 hours in New York: 2.3 ms)."""
    tz = _zone_named(zone)
    looks = [*range(start, end - 1, 2 * _DAY), end - 1]
    offsets = [_local_wall(instant, tz)[1] for instant in looks]
    return sum(map(ne, offsets, offsets[1:]))


def _empty_answer_size(window: Window) -> int:
    """An upper bound of the size of WINDOW's answer before its counts: a key per bucket, and the asked customer
    in every one (a 60 KB id over 1,000 hours would be 60 MB); known before it is built."""
    return _bucket_count(window) * (36 + (0 if window.customer is None else len(quote(window.customer)) + 16))


def _check_answer_size(size: int, window: Window, index: Index, limits: _Limits) -> None:
    """_BadRequest if an answer to WINDOW of SIZE bytes would pass the limit."""
    if size > limits.reply_bytes:
        raise _BadRequest(
            f"the answer could take {size:,} bytes, over the limit of {limits.reply_bytes:,}: ask a shorter window"
            + (" or a real customer_id" if window.customer and len(window.customer) > index.longest_customer else "")
        )


def _check_zone_buckets(window: Window, limits: _Limits) -> None:
    """_BadRequest if WINDOW's answer may list more buckets than LIMITS allow in a zone that changes its offset,
    where each is walked and labelled on its own (a small request of 466,000 minutes in Denver took a worker 4.5
    s); in a fixed zone an empty day is written at once, and the size of the answer bounds them."""
    most = limits.zone_buckets
    if _fixed_offset(window.buckets.zone) is None and (count := _bucket_count(window, most)) > most:
        raise _BadRequest(
            f"the answer could list {count:,} buckets, over the limit of {most:,} in a zone that"
            f" changes its offset ({window.buckets.zone}): ask a shorter window or wider buckets"
        )


def _counts_reply(
    index: Index,
    query: str,
    max_hours: int,
    limits: _Limits,
    accept: str = "",
    room: Callable[[], int] = lambda: 1 << 62,
) -> _Reply:
    """The /counts reply to QUERY: the JSON (or CSV) the command line prints, and the window it answers (the
    page draws the buckets the window cuts in proportion); _BadRequest if it would be too big; InputError (503)
    if it may be over _BIG_REPLY and over ROOM(), the bytes of unread replies its worker may still hold."""
    window, form = _parse_query(query, max_hours, accept)
    _check_zone_buckets(window, limits)
    empty = _empty_answer_size(window)
    _check_answer_size(empty, window, index, limits)  # before counting: counting may take seconds
    counts = index.counts(window)
    size = empty + sum(len(quote(customer)) + 28 for _, customer in counts)
    _check_answer_size(size, window, index, limits)
    if size > _BIG_REPLY and size > room():  # refused before it is built: building one took 4 times its size
        raise InputError(_TOO_MANY_UNREAD)
    headers = f"Totaler-Window: {_format_iso(window.start)}/{_format_iso(window.end)}\r\nVary: Accept\r\n"
    if window.unique:  # the rows not counted: what the answer to the same question without unique counts more
        everything = sum(index.counts(window._replace(unique=False)).values())
        headers += f"Totaler-Duplicates: {everything - sum(counts.values())}\r\n"
    if form == "csv":
        return _Reply(render_csv(window, counts).encode("utf-8"), "text/csv; charset=utf-8", headers)
    return _Reply(render_json(window, counts).encode("ascii"), headers=headers)


class _Reload(NamedTuple):
    """What the last SIGHUP did, for /healthz."""

    at: float  # time.time() when it began
    applied: bool
    reason: str = ""

    def document(self) -> dict:
        """As /healthz shows it."""
        when = datetime.fromtimestamp(self.at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return {"at": when, "applied": self.applied, **({"reason": self.reason} if self.reason else {})}


def _health(index: Index, reload: _Reload | None, workers: int) -> dict:
    """What /healthz says about the index being served."""
    return {
        "status": "ok",
        "file": index.path,
        "events": index.events,
        "customers": index.customers,
        "skipped": index.skipped.count,
        "indexed_in_seconds": round(index.seconds, 3),
        "cut_hours": "in memory" if index.files is None else "read from the file",
        "event_types": None if index.customer_codes is None else index.types,  # what event_type may ask for
        "duplicates": index.duplicates,  # rows whose transaction_id an earlier row carried (None: file-backed)
        "workers": workers,
        "last_reload": reload.document() if reload else None,
    }


class _HttpError(Exception):
    """A request that gets an error reply and then a closed connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Request(NamedTuple):
    """The parts of a request head this server reads."""

    method: str
    target: str
    version: str
    keep_alive: bool
    line: str
    accept: str = ""  # the Accept header's values, joined
    host: str = ""  # the Host header's name, lowercase, without its port ("" without a Host)


_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")  # visible ASCII: a space, NBSP or control byte is no part of it
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # control bytes but tab: never in a header value
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_BARE_CR = re.compile(rb"\r[^\n]")  # a CR that ends no line: no line end of RFC 9112's, and no part of a value
# RFC 3986's host (a name, an IPv4 address or a bracketed IP literal) and an optional port: Host, and absolute-form.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")
_ABSOLUTE = re.compile(rb"(?i:https?)://(" + _HOST.pattern + rb")(/[^#]*)?")
_ORIGIN_FORM = re.compile(rb"/[A-Za-z0-9\-._~%!$&'()*+,;=:@/]*(?:\?[^#]*)?")  # a path of RFC 3986's characters
_LONGEST_LENGTH = 18  # digits of a Content-Length: more is no length this server could be sent


def _check_sizes(head: bytes, limits: _Limits) -> None:
    """_HttpError if HEAD, or the part of one received so far, has a line or more fields than the limits allow."""
    lines = head.split(b"\n")
    if len(lines[0]) > limits.line_bytes:
        raise _HttpError(414, f"the request line is over {limits.line_bytes} bytes")
    if any(len(line) > limits.line_bytes for line in lines[1:]):
        raise _HttpError(431, f"a header line is over {limits.line_bytes} bytes")
    if len(head) > limits.head_bytes:
        raise _HttpError(431, f"the request head is over {limits.head_bytes} bytes")
    if len(lines) - 1 > limits.header_fields:  # every line, even one of spaces only (a 400 once whole)
        raise _HttpError(431, f"more than {limits.header_fields} header fields")


def _body_framing(headers: dict[bytes, list[bytes]]) -> bool:
    """Whether HEADERS say a body follows; _HttpError where its framing is not RFC 9112's: two lengths, a length
    and a coding, a length that is no number, codings that do not end in chunked (400), or any other than
    chunked (501: this server decodes none)."""
    lengths, codings = headers.get(b"content-length", []), headers.get(b"transfer-encoding", [])
    if len(lengths) > 1 or (lengths and codings):
        raise _HttpError(400, "Content-Length given twice, or with Transfer-Encoding")
    if lengths and not (lengths[0].isdigit() and len(lengths[0]) <= _LONGEST_LENGTH):
        raise _HttpError(400, "Content-Length is not a number, or too long a one")
    names = [name.strip().lower() for value in codings for name in value.split(b",")]
    if names and names[-1] != b"chunked":
        raise _HttpError(400, "Transfer-Encoding must end in chunked")
    if any(name != b"chunked" for name in names):
        raise _HttpError(501, "no transfer coding but chunked is implemented")
    return bool(codings) or (bool(lengths) and int(lengths[0]) > 0)


def _host_name(host: bytes) -> str:
    """A Host header's name, lowercase, without its port or a final dot: '[::1]:8000' -> '[::1]'."""
    name = host[: host.find(b"]") + 1] if host.startswith(b"[") else host.partition(b":")[0]
    return name.decode("ascii", "replace").lower().removesuffix(".")


def _request_target(method: bytes, target: bytes) -> tuple[str, bytes]:
    """TARGET as a path and query, and the host it names (b"" unless absolute-form): origin-form (a path from a
    slash: '//x/healthz' is that path, not host x), or absolute-form of http(s) with a host and no userinfo; the
    asterisk only for OPTIONS and authority-form only for CONNECT (both a 405).  _HttpError (400) for any other,
    and for a fragment."""
    if (target == b"*" and method == b"OPTIONS") or method == b"CONNECT":
        return target.decode(), b""  # no GET: a 405
    if _ORIGIN_FORM.fullmatch(target):
        return target.decode(), b""
    absolute = _ABSOLUTE.fullmatch(target)
    named = absolute and b"@" not in absolute.group(1) and _host_name(absolute.group(1))  # http:/// names none
    path = (absolute.group(2) or b"/") if named else b""
    if named and _ORIGIN_FORM.fullmatch(path):
        return path.decode(), absolute.group(1)  # type: ignore[union-attr]
    raise _HttpError(400, f"bad request target {target[:80].decode('latin-1')!r}: give a path from /")


def _parse_fields(lines: list[bytes]) -> dict[bytes, list[bytes]]:
    """Header field lines to {lowercase name: [values]}; _HttpError on a malformed line or a control byte."""
    headers: dict[bytes, list[bytes]] = {}
    for field_line in lines:
        name, colon, value = field_line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):  # also obs-fold: a line that starts with a space
            raise _HttpError(400, f"bad header line {field_line[:80].decode('latin-1')!r}")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise _HttpError(400, f"control character in header {name.decode()}")
        headers.setdefault(name.lower(), []).append(value)
    return headers


def _parse_head(head: bytes, limits: _Limits) -> _Request:
    """A request line and its header lines, checked as RFC 9112 says; _HttpError names what is wrong."""
    if _BARE_CR.search(head):
        raise _HttpError(400, "a bare CR in the request head")
    lines = [line.removesuffix(b"\r") for line in head.split(b"\n")]
    line = lines[0]
    words = line.split(b" ")
    if len(words) != 3 or not _TOKEN.fullmatch(words[0]) or not _TARGET.fullmatch(words[1]):
        raise _HttpError(400, f"bad request line {line[:80].decode('latin-1')!r}")
    version = _VERSION.fullmatch(words[2])
    if not version:
        raise _HttpError(400, f"bad request line {line[:80].decode('latin-1')!r}")
    if version.group(1, 2) not in ((b"1", b"1"), (b"1", b"0")):
        raise _HttpError(505, f"HTTP version {words[2].decode()} is not supported; use HTTP/1.1")
    headers = _parse_fields(lines[1:])
    hosts, http11 = headers.get(b"host", []), words[2] == b"HTTP/1.1"
    if len(hosts) > 1 or (http11 and not hosts):
        raise _HttpError(400, "a request needs one Host header (HTTP/1.1), never two")
    if hosts and not _HOST.fullmatch(hosts[0]):
        raise _HttpError(400, f"bad Host header {hosts[0][:80].decode('latin-1')!r}")
    has_body = _body_framing(headers)
    tokens = {t.strip().lower() for v in headers.get(b"connection", []) for t in v.split(b",")}
    keep_alive = b"close" not in tokens if http11 else b"keep-alive" in tokens
    # A body this server does not read would be taken for the next request: close after answering.
    method, (target, named) = words[0].decode(), _request_target(words[0], words[1])
    accept = b",".join(headers.get(b"accept", [])).decode("latin-1")
    # An absolute-form target's host, not Host's, names the server asked (RFC 9112, 3.2.2).
    host, version = _host_name(named or (hosts[0] if hosts else b"")), words[2].decode()
    return _Request(method, target, version, keep_alive and not has_body, line.decode("latin-1"), accept, host)


_IPV4 = re.compile(r"\d+(?:\.\d+){0,3}")  # the forms a browser reads as an IPv4 address
_LABEL = re.compile(r"[a-z0-9_-]+")  # a name of one label (no dot, nothing percent-encoded)
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal")  # names public DNS never answers (RFC 6761, RFC 6762, ICANN)


def _allowed_host(name: str, allowed: tuple[str, ...]) -> bool:
    """Whether a request naming host NAME (from _host_name) is answered: an IP address, a name of one label
    (localhost, a compose service), a name under .localhost, .local or .internal, or one of ALLOWED ('*': any).
    A DNS rebinding page makes a browser send its own name, which public DNS answers, to this address: refused."""
    if not name or name.startswith("[") or _IPV4.fullmatch(name) or _LABEL.fullmatch(name):
        return True
    return name.endswith(_LOCAL_SUFFIXES) or name in allowed or "*" in allowed


_REASONS = {_status.value: _status.phrase for _status in HTTPStatus}
_TURN_SECONDS = 0.001  # a connection's requests are answered this long (one at least) before the others' turn
_BIG_REPLY = 1 << 16  # a reply this long is written only within _Limits.unsent_bytes


# The page's own script and style only: no inline script, nothing from another origin.
_SECURITY_HEADERS = (
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Referrer-Policy: no-referrer\r\n"  # a window in the address never goes to another site
    "Cross-Origin-Opener-Policy: same-origin\r\n"
    "Cross-Origin-Resource-Policy: same-origin\r\n"
    "X-Frame-Options: DENY\r\n"  # frame-ancestors 'none', for browsers that predate it
    "Permissions-Policy: camera=(), microphone=(), geolocation=()\r\n"
    "Cache-Control: no-store\r\n"  # answers change with each reload of the log
)


def _reply_bytes(
    status: int, payload: bytes, body: bool, close: bool, extra: str = "", content_type: str = _JSON_TYPE
) -> bytes:
    """A whole reply: status line, headers and (unless BODY is False, for HEAD) the payload."""
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nServer: totaler/{__version__}\r\nDate: {_http_date()}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n{_SECURITY_HEADERS}{extra}"
        + ("Connection: close\r\n" if close else "")
        + "\r\n"
    )
    return head.encode("latin-1") + (payload if body else b"")


@lru_cache(maxsize=2)
def _date_at(second: int) -> str:
    """The Date header's value for SECOND since the epoch (RFC 9110's IMF-fixdate)."""
    # Not email.utils.formatdate: importing it cost every command line 5 ms.  Python leaves
    # LC_TIME as "C", so %a and %b are English, as the RFC requires.
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(second))


def _http_date() -> str:
    """The Date header's value now (one formatting per second)."""
    return _date_at(int(time.time()))


def _error_payload(message: str) -> bytes:
    """An error as the JSON body every error reply has."""
    return (json.dumps({"error": message}, indent=2) + "\n").encode("ascii")


class _Connection:
    """One client: requests read from a buffer, answered in order, each head under a deadline.

    An asyncio protocol by its methods, not by subclassing asyncio.Protocol: the module
    then imports asyncio only in a serving worker, not on every command-line run.
    """

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.paused = self.closing = False
        self.served = 0  # requests answered on this connection
        self.peer = "-"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count the connection and give its first request the header deadline."""
        self.transport = transport  # type: ignore[assignment]
        if self.closing:  # closed to make room before its transport was made
            transport.close()
            return
        self.worker.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms wait for a delayed ACK
        self.peer = str((transport.get_extra_info("peername") or ("-",))[0])
        self.arm(self.worker.limits.header_seconds)

    def connection_lost(self, error: Exception | None) -> None:
        """Forget the connection; let the worker accept again if it was at its cap."""
        if self.timer:
            self.timer.cancel()
        self.worker.connections.discard(self)
        self.worker.idle.pop(self, None)
        if self.worker.stopping and not self.worker.connections:
            self.worker.loop.stop()  # the last reply has left
        self.worker.resume_accepting()

    def arm(self, seconds: float) -> None:
        """(Re)start the one deadline this connection has."""
        if self.timer:
            self.timer.cancel()
        self.timer = self.worker.loop.call_later(seconds, self.deadline_passed)

    def deadline_passed(self) -> None:
        """Idle: close quietly.  Part of a request sent: 408, then close.  A reply still unread: cut off."""
        if self.transport is not None and self.transport.get_write_buffer_size():
            self.transport.abort()  # the client has not read for the whole deadline: its reply is dropped
            return
        if self.buffer.strip():
            self.send(408, _error_payload("the request did not arrive in time"), True, True)
        self.close()

    def data_received(self, data: bytes) -> None:
        """Buffer DATA and answer every whole request in it."""
        if not self.buffer.strip() and data.strip() and self.waiting_idle:
            self.arm(self.worker.limits.header_seconds)  # a new request begins: its head has a deadline
        self.buffer += data
        self.worker.idle.pop(self, None)
        self.answer_buffered()

    waiting_idle = False  # between requests of a keep-alive connection
    scanned = 0  # bytes of the buffer searched for a head's end, less three
    ended = False  # the client sent its last byte (a half-close): answer what came, then close

    def answer_buffered(self) -> None:
        """Answer the whole requests at the head of the buffer, while the client keeps reading replies: for a
        turn of _TURN_SECONDS at most, then the other connections' turn (a client pipelining hundreds of
        requests of 58 ms each kept another waiting 14 s; 16 a turn, 0.9 s)."""
        ends = time.monotonic() + _TURN_SECONDS
        while time.monotonic() < ends:
            if self.closing or self.paused or self.deferred is not None:
                break
            if (request := self.next_request()) is None:
                if self.ended and not self.closing:
                    self.close()  # its requests answered: the client will send no more
                break
            self.take_turn(request)
        else:
            self.worker.loop.call_soon(self.answer_buffered)
        self.flow()

    def next_request(self) -> _Request | None:
        """The request whose head the buffer starts with, taken out of it; None while it is still coming (or it
        cannot be read: then the connection is answered and closed)."""
        limits = self.worker.limits
        while self.buffer.startswith((b"\r\n", b"\n")):  # empty lines before a request (RFC 9112 2.2)
            del self.buffer[: 2 if self.buffer[:1] == b"\r" else 1]
        end = _HEAD_END.search(self.buffer, self.scanned)  # from where the last read's search ended
        try:
            if end is None:  # a head still coming may be wrong already: too long, or a CR that ends no line
                self.scanned = max(0, len(self.buffer) - 3)
                if _BARE_CR.search(self.buffer, max(0, self.scanned - 1)):
                    raise _HttpError(400, "a bare CR in the request head")
                if len(self.buffer) > limits.line_bytes:
                    _check_sizes(bytes(self.buffer[: limits.head_bytes + 1]), limits)
                return None
            head = bytes(self.buffer[: end.start()])
            del self.buffer[: end.end()]
            self.scanned = 0
            _check_sizes(head, limits)
            return _parse_head(head, limits)
        except _HttpError as error:
            self.fail(error)
            return None

    def flow(self) -> None:
        """Read from the client while its buffer holds less than a head and its replies are read: else its
        bytes wait in the kernel, not here (a request deferred, or a client that does not read)."""
        if self.transport is None or self.closing:
            return
        if self.paused or len(self.buffer) > self.worker.limits.head_bytes:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def take_turn(self, request: _Request, deferred_at: float | None = None) -> None:
        """Answer REQUEST (put off at DEFERRED_AT, if it was) now, or later if it is a long window and long windows
        have had their share."""
        asks = request.method in ("GET", "HEAD")
        wait = self.worker.wait_for_turn(request.target, request.accept, deferred_at) if asks else 0.0
        if wait > 0 and self.worker.stopping and self.worker.stop_half_gone():  # no time left to answer it
            self.send(503, _error_payload(_STOPPING), request.method != "HEAD", True, request, "Retry-After: 1\r\n")
            return
        if wait > 0 and not self.worker.stopping:  # stopping, no turn is left to wait for: answered now
            if self.timer:
                self.timer.cancel()
            self.deferred, self.deferred_at = request, time.monotonic()
            self.worker.loop.call_later(wait, self.resume_deferred)
            return
        self.respond(request)
        self.served += 1
        if not self.closing:
            self.waiting_idle = True
            limits = self.worker.limits
            self.arm(limits.idle_seconds if not self.buffer.strip() else limits.header_seconds)
            if not self.buffer.strip():
                self.worker.idle[self] = None  # last: the longest idle come first

    deferred: _Request | None = None  # a long window waiting for its turn
    deferred_at = 0.0  # since when (time.monotonic())

    def resume_deferred(self) -> None:
        """Try the deferred request again; then the requests that came after it."""
        request, self.deferred = self.deferred, None
        if request is None or self.closing:
            return
        self.take_turn(request, self.deferred_at)
        self.answer_buffered()

    def respond(self, request: _Request) -> None:
        """Route one request and send its reply."""
        self.worker.last_asked.mark()
        head_only = request.method == "HEAD"
        close = not request.keep_alive or self.worker.stopping
        if request.method not in ("GET", "HEAD"):
            message = _error_payload(f"method {request.method} is not allowed; use GET")
            self.send(405, message, True, True, request, "Allow: GET, HEAD\r\n")
            return
        if not _allowed_host(request.host, self.worker.settings.hosts):
            refused = f"host {request.host!r} is not allowed (DNS rebinding): start the server with --allow-host"
            message = _error_payload(f"{refused} {request.host}")
            self.send(403, message, not head_only, close, request)
            return
        path, _, query = request.target.partition("?")  # not urlsplit: '//x/healthz' is a path, not host x
        extra, content_type = "", _JSON_TYPE
        try:
            status, (payload, content_type, extra) = 200, self.worker.route(path, query, request.accept)
        except _BadRequest as error:
            status, payload = 400, _error_payload(str(error))
        except _NotFound as error:
            status, payload = 404, _error_payload(str(error))
        except _Redirect as moved:
            status, payload, extra = 302, b"", f"Location: {moved.location}\r\n"
        except InputError as error:  # a log changed under a file-backed index
            status, payload = 503, _error_payload(str(error))
        self.send(status, payload, not head_only, close, request, extra, content_type)

    def fail(self, error: _HttpError) -> None:
        """Answer a request that cannot be read, and close."""
        self.send(error.status, _error_payload(str(error)), True, True)
        self.close()

    def send(
        self,
        status: int,
        payload: bytes,
        body: bool,
        close: bool,
        request: _Request | None = None,
        extra: str = "",
        content_type: str = _JSON_TYPE,
    ) -> None:
        """Write one reply (one write), log it, and close after it if CLOSE."""
        if self.transport is None or self.transport.is_closing():
            return
        data = _reply_bytes(status, payload, body, close, extra, content_type)
        if len(data) > _BIG_REPLY and self.worker.unsent() + len(data) > self.worker.limits.unsent_bytes:
            status, payload, close = 503, _error_payload(_TOO_MANY_UNREAD), True
            data = _reply_bytes(status, payload, body, close)
        self.transport.write(data)
        self.worker.access(self.peer, request.line if request else "-", status, len(payload))
        if close:
            self.close()

    def close(self) -> None:
        """Close after what is written has left."""
        self.closing = True
        self.worker.idle.pop(self, None)
        if self.timer:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.close()

    def eof_received(self) -> bool:
        """The client sent its last byte (nc -N half-closes): answer the requests it sent, then close."""
        self.ended = True
        if self.deferred is None and not self.paused:
            self.answer_buffered()
        return True  # keep the transport open for the replies

    def pause_writing(self) -> None:
        """The client reads slower than it asks: stop reading its requests."""
        self.paused = True
        self.flow()

    def resume_writing(self) -> None:
        """The client caught up: read and answer again."""
        self.paused = False
        if self.transport is not None and not self.closing:
            self.flow()
            # Not from inside this callback: a close there makes asyncio tear the transport
            # down twice (CPython gh-156512), an AttributeError in the loop's log.
            self.worker.loop.call_soon(self.answer_buffered)


class _NotFound(LookupError):
    """A path this server does not serve (404)."""


class _Redirect(Exception):
    """A page asked without its window: 302 to the busiest day's."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


class _ListPage(NamedTuple):
    """A page of the customer list: ORDER ("events", most first, or "id"), at most LIMIT customers from CURSOR
    (where the last page ended), those whose id starts with PREFIX."""

    order: str = "events"
    limit: int = 100
    cursor: str = ""
    prefix: str = ""


_MAX_PAGE = 10_000


_PAGE_PARAMETERS = ("order", "limit", "cursor", "prefix")


def _parse_page(query: str) -> _ListPage:
    """The page of the customer list a /customers query string asks for; _BadRequest names what is wrong."""
    params = parse_qs(query, keep_blank_values=True)
    for name, values in params.items():
        if name not in _PAGE_PARAMETERS:
            raise _BadRequest(f"unknown parameter {name!r}; use order (events or id), limit, cursor and prefix")
        if len(values) > 1:
            raise _BadRequest(f"{name} is given {len(values)} times")
    order = params.get("order", ["events"])[0]
    if order not in ("events", "id"):
        raise _BadRequest(f"order {order!r} is not events or id")
    limit = params.get("limit", ["100"])[0]
    if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= _MAX_PAGE:
        raise _BadRequest(f"limit {limit[:20]!r} is not a whole number from 1 to {_MAX_PAGE:,}")
    cursor = params.get("cursor", [""])[0]
    if order == "events" and cursor and not (cursor.isascii() and cursor.isdigit() and len(cursor) < 12):
        raise _BadRequest(f"cursor {cursor[:20]!r} is not one this server gave (a page's 'next')")
    return _ListPage(order, int(limit), cursor, params.get("prefix", [""])[0])


def _customer_page(index: Index, page: _ListPage) -> dict:
    """One page of the customer list: each customer's id, events, first and last event time; the cursor to the
    next page (None after the last) and how many customers the prefix leaves.  InputError (a 503) while the
    index is file-backed."""
    table, customer_codes = index.customer_table, index.customer_codes
    if table is None or customer_codes is None:
        raise InputError("the customer list comes with the index in memory, being built; try again in a few seconds")
    low = bisect_left(table.sorted_ids, page.prefix)
    high = bisect_right(table.sorted_ids, page.prefix, low, key=lambda id_: id_[: len(page.prefix)])
    codes, more = _page_codes(table, page, low, high)
    cursor = None
    if more:
        cursor = customer_codes.names[codes[-1]] if page.order == "id" else str(int(page.cursor or 0) + len(codes))
    firsts = _edge_instants(index, codes, table.first_hours, min)
    lasts = _edge_instants(index, codes, table.last_hours, max)
    customers = [
        {
            "customer": customer_codes.names[c],
            "events": table.totals[c],
            "first": _format_utc(firsts[c]),
            "last": _format_utc(lasts[c]),
        }
        for c in codes
    ]
    return {"order": page.order, "prefix": page.prefix, "matching": high - low, "customers": customers, "next": cursor}


def _customers_reply(index: Index, query: str) -> _Reply:
    """The /customers reply to QUERY."""
    return _Reply((json.dumps(_customer_page(index, _parse_page(query)), indent=2) + "\n").encode("ascii"))


def _page_codes(table: _CustomerTable, page: _ListPage, low: int, high: int) -> tuple[list[int], bool]:
    """The codes of PAGE, whose prefix holds the ids from LOW to HIGH in id order; and whether more follow."""
    if page.order == "id":  # the cursor is the last id of the page before
        first = max(low, bisect_right(table.sorted_ids, page.cursor, low, high)) if page.cursor else low
        return list(table.by_id[first : min(first + page.limit, high)]), first + page.limit < high
    chosen = set(table.by_id[low:high]) if page.prefix else None  # the cursor: how many the pages before held
    ranked = table.by_events if chosen is None else [code for code in table.by_events if code in chosen]
    first = int(page.cursor or 0)
    return list(ranked[first : first + page.limit]), first + page.limit < high - low


def _edge_instants(index: Index, codes: list[int], hours: array, pick: Callable) -> dict[int, int]:
    """The earliest (PICK min) or latest (max) instant of each of CODES's events in the hour HOURS gives it: each
    hour needed gone through once, its codes in C."""
    wanted: dict[int, set[int]] = {}
    for code in codes:
        wanted.setdefault(hours[code], set()).add(code)
    found = {}
    for start, chosen in wanted.items():
        hour = index.hours[start]
        times: dict[int, list[int]] = {}
        for code, in_hour in compress(zip(hour.codes, hour.in_hour, strict=True), map(chosen.__contains__, hour.codes)):
            times.setdefault(code, []).append(in_hour)
        found.update((code, start + pick(in_hours)) for code, in_hours in times.items())
    return found


def _busiest_day(index: Index) -> tuple[int, int]:
    """The UTC day with the most events (the first such), as [start, end); today's if the log is empty."""
    days: dict[int, int] = {}
    for start, events in index.events_by_hour.items():
        day = start - start % _DAY
        days[day] = days.get(day, 0) + events
    day = max(days, key=days.__getitem__) if days else _to_micros(datetime.now(UTC)) // _DAY * _DAY
    return day, day + _DAY


_LONG_REPLY_SECONDS = 0.002  # a reply that took longer makes the next long window wait
_ONE_PASS = 1e-9  # a wait that is one pass of the event loop: the I/O it polls is handled before the timers due
_LONG_WINDOW_HOURS = 2000  # a window this long may take milliseconds to answer
_LONG_REPLY_BYTES = 1 << 20  # so may an answer that may be this long (1,999 hours of an 8,000-character id: 16 MB)
_LONG_BYTES_PER_SECOND = 16 << 20  # long replies a worker sends: four clients taking 16 MB answers left 46%
_LONG_ZONE_BUCKETS = 200  # or in a zone that changes its offset, this many buckets (an empty one: 12 µs)
_LONG_EVENTS = 5_000  # or one whose hours hold this many events: 0.3 to 2 µs each (84,498 in zones: 47 ms)


def _reply_key(path: str, query: str, accept: str = "") -> str:
    """What a reply is kept under: its path and query, and for /counts whether the Accept header asks for CSV."""
    return f"{path}?{query}" + ("\0csv" if path == "/counts" and _asks_csv(accept) else "")


class _LastAsked:
    """When a worker last began to answer a request or took a connection (time.monotonic(): one clock in every
    process), in memory the workers share: a long window waits its turn while any worker serves others, not
    while it is asked alone.  One worker's own answers were not enough: four clients' long windows, served by
    one worker, took all its CPU while the other answered a normal client; nor answers alone: a new
    connection's request is read passes of the loop after it is taken, and long windows went meanwhile (a
    newcomer's /healthz beside two of 0.2 s: 0.3-1.2 s, where it had been 1-8 ms)."""

    def __init__(self) -> None:
        import mmap

        self.shared = memoryview(mmap.mmap(-1, 8)).cast("d")  # anonymous, shared with the processes forked after

    def mark(self) -> None:
        """A request is being answered, or a connection was taken."""
        self.shared[0] = time.monotonic()

    def since(self, moment: float) -> bool:
        """Whether one was, after MOMENT."""
        return self.shared[0] > moment


class _Worker:
    """One worker process: an event loop accepting from the shared socket, at most _Limits.connections at once."""

    def __init__(
        self,
        index: Index,
        sock: socket.socket,
        settings: ServeSettings,
        reload: _Reload | None,
        last_asked: _LastAsked | None = None,
    ) -> None:
        self.index, self.sock, self.settings, self.reload = index, sock, settings, reload
        self.last_asked = last_asked or _LastAsked()
        self.limits = settings.limits
        import asyncio  # here, not at the top: 34 ms of every command-line run (python -X importtime)

        self.loop = asyncio.new_event_loop()
        self.connections: set[_Connection] = set()
        self.idle: dict[_Connection, None] = {}  # connections with no request under way, longest idle first
        self.cache = _ReplyCache(self.limits.cache_bytes)
        self.accepting = self.stopping = False
        self.long_after = 0.0  # a long window is not answered before this (time.monotonic()), unless asked alone
        self.long_ended = 0.0  # when the last long reply was made

    def route(self, path: str, query: str, accept: str = "") -> _Reply:
        """The reply to a GET of PATH?QUERY (ACCEPT: its Accept header)."""
        if path == "/counts":
            return self.reply_counts(query, accept)
        if path == "/healthz":
            document = _health(self.index, self.reload, self.settings.workers)
            return _Reply((json.dumps(document, indent=2) + "\n").encode("ascii"))
        if path == "/customers":  # a page of 100,000 customers' takes tens of ms: kept, and taking turns
            return self.cached(_reply_key(path, query), lambda: _customers_reply(self.index, query))
        if path == "/" and not query:
            start, end = _busiest_day(self.index)
            raise _Redirect("/?" + urlencode({"start": _format_iso(start), "end": _format_iso(end)}))
        if path in _PAGE_FILES:
            return _PAGE_FILES[path]
        raise _NotFound(f"no such path {path!r}; try /, /counts, /customers or /healthz")

    def reply_counts(self, query: str, accept: str = "") -> _Reply:
        """The /counts reply to QUERY (ACCEPT, the request's Accept header), from the cache when it was asked
        before."""
        room = lambda: self.limits.unsent_bytes - self.unsent()  # noqa: E731 - asked only of a big answer: it walks
        make = partial(_counts_reply, self.index, query, self.settings.max_hours, self.limits, accept, room)
        return self.cached(_reply_key("/counts", query, accept), make)

    def cached(self, key: str, make: Callable[[], _Reply]) -> _Reply:
        """The reply kept for KEY, else MAKE()'s, then kept; a slow one makes long requests wait their turn."""
        reply = self.cache.get(key)
        if reply is None:
            began = time.monotonic()
            try:
                reply = make()
            finally:  # a 400 or a 503 may have taken as long: it waits the same
                took = time.monotonic() - began
                if took > _LONG_REPLY_SECONDS:  # the next long request waits twice as long: a third of the CPU at most
                    self.long_waits(2 * took)
            self.cache.put(key, reply)
        if len(reply.payload) > _LONG_REPLY_BYTES:  # sending it costs more than building it (16 MB: 0.05 s to build)
            self.long_waits(len(reply.payload) / _LONG_BYTES_PER_SECOND)
        return reply

    def long_waits(self, seconds: float) -> None:
        """A long reply was just made: the next long request waits SECONDS, if others are asking meanwhile."""
        now = time.monotonic()
        self.long_after, self.long_ended = max(self.long_after, now + seconds), now

    def wait_for_turn(self, target: str, accept: str = "", deferred_at: float | None = None) -> float:
        """Seconds before a request for TARGET may be answered (DEFERRED_AT: when it was put off, if it was): long
        windows take a third of the time at most, while other requests are answered.

        A long window takes milliseconds of a loop that answers a short one in tens of
        microseconds; flat out, four clients asking long windows left a normal client
        5% of its requests per second.  Waiting, they leave it two thirds.
        """
        return self.alone_or(self.turn_of(target, accept), deferred_at)

    def alone_or(self, wait: float, deferred_at: float | None) -> float:
        """WAIT, unless no worker began to answer a request or took a connection since the last long reply: then
        one pass of the loop, for requests sent meanwhile to be read first, and none after it (a client asking
        alone, one window after another, was kept to a third of the CPU: windows of 1-8 hours on 100,000
        customers, bench/index.py, median read from the file 157 -> 48 ms, in memory 20 -> 3.3 ms)."""
        if wait <= 0 or self.last_asked.since(self.long_ended):
            return wait
        return 0.0 if deferred_at is not None and deferred_at > self.long_ended else _ONE_PASS

    def turn_of(self, target: str, accept: str = "") -> float:
        """Seconds before a request for TARGET may be answered, if others are asking."""
        now = time.monotonic()
        path, _, query = target.partition("?")
        key = _reply_key(path, query, accept)
        if now >= self.long_after or path not in ("/counts", "/customers"):
            return 0.0
        if path == "/customers" and self.index.customer_table is None:
            return 0.0  # file-backed: a 503 at once
        if (kept := self.cache.get(key)) is not None or path == "/customers":
            return 0.0 if kept and len(kept.payload) <= _LONG_REPLY_BYTES else self.long_after - now
        try:
            window = _parse_query(query, self.settings.max_hours).window
        except _BadRequest:
            return 0.0
        return self.long_after - now if _is_long(window, self.index) else 0.0

    def run(self) -> None:
        """Serve until SIGTERM, then let in-flight replies leave and exit."""
        self.loop.add_signal_handler(signal.SIGTERM, self.stop)
        self.resume_accepting()
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()  # else a loop collected unclosed may warn on stderr as the worker exits

    def resume_accepting(self) -> None:
        """Watch the listening socket again (below the cap, not stopping)."""
        if not self.accepting and not self.stopping and len(self.connections) < self.limits.connections:
            self.loop.add_reader(self.sock, self.accept)
            self.accepting = True

    def pause_accepting(self) -> None:
        """Leave new connections in the kernel's backlog."""
        if self.accepting:
            self.loop.remove_reader(self.sock)
            self.accepting = False

    def accept(self) -> None:
        """Take the connections waiting, up to the cap; at the descriptor limit, back off instead of spinning."""
        for _ in range(64):
            at_cap = len(self.connections) >= self.limits.connections
            if at_cap and not self.idle:
                self.pause_accepting()  # every connection is under way: the newcomers wait in the backlog
                return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # another worker took it, or the client left
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    _log(f"cannot accept ({error.strerror}); retrying in 0.5 s")
                    self.pause_accepting()
                    self.loop.call_later(0.5, self.resume_accepting)
                return
            self.adopt(conn)
            if at_cap:  # the longest idle connection makes room (silent since accepted, or kept alive), as
                next(iter(self.idle)).close()  # nginx reuses its idle keep-alive connections

    def adopt(self, conn: socket.socket) -> None:
        """Serve CONN, just accepted: counted at once, not when asyncio has made it a transport.  A SIGTERM
        in between (a reload swapping workers) saw no connection, ended the loop and reset the request."""
        conn.setblocking(False)
        self.last_asked.mark()  # a newcomer: its request comes passes later, and long windows wait for it
        connection = _Connection(self)
        self.connections.add(connection)
        self.idle[connection] = None  # silent until its first byte

        def made(task: asyncio.Task) -> None:
            if not task.cancelled() and task.exception() is not None:
                conn.close()
                connection.connection_lost(None)

        self.loop.create_task(self.loop.connect_accepted_socket(lambda: connection, conn)).add_done_callback(made)

    def stop(self) -> None:
        """Stop accepting, close idle connections, give the rest STOP_SECONDS, then end the loop."""
        self.stopping, self.stopped_at = True, time.monotonic()
        self.pause_accepting()
        for connection in list(self.connections):
            # Idle between requests: close, as nginx does.  Just accepted, its request may
            # still be on its way: leave it STOP_SECONDS to arrive and be answered.
            if connection.served and not connection.buffer.strip() and connection.deferred is None:
                connection.close()
            elif connection.deferred is not None:  # a long request waiting its turn: answered now
                connection.worker.loop.call_soon(connection.resume_deferred)
        if not self.connections:
            self.loop.stop()
        self.loop.call_later(self.limits.stop_seconds, self.loop.stop)

    stopped_at = 0.0

    def stop_half_gone(self) -> bool:
        """Whether half the time a stopping worker gives its requests has gone: long ones are told to ask again
        (back to back, thirty of half a second each were cut off unanswered)."""
        return time.monotonic() > self.stopped_at + self.limits.stop_seconds / 2

    def unsent(self) -> int:
        """Bytes of replies written and not yet read by their clients, on every connection."""
        return sum(c.transport.get_write_buffer_size() for c in self.connections if c.transport is not None)

    def access(self, peer: str, line: str, status: int, size: int) -> None:
        """One access-log line, unless --quiet."""
        if not self.settings.quiet:
            when = time.strftime("%d/%b/%Y %H:%M:%S", time.gmtime())
            _log(f'{peer} - - [{when}] "{line}" {status} {size}', prefix=False)


def _is_long(window: Window, index: Index) -> bool:
    """Whether answering WINDOW from INDEX may take milliseconds: by its hours, the size its answer may have, an
    hour to read from the file, or the events in the hours it reaches (known before it is answered, in µs)."""
    if (window.end - window.start) // _HOUR + 1 > _LONG_WINDOW_HOURS:
        return True
    if _empty_answer_size(window) > _LONG_REPLY_BYTES:
        return True
    if _bucket_count(window) > _LONG_ZONE_BUCKETS and _fixed_offset(window.buckets.zone) is None:
        return True  # each bucket labelled on its own where the offset changes: 10 to 13 µs a bucket
    reached = range(_hour_floor(window.start), window.end, _HOUR)
    if isinstance(kept := index.hours, _FileHours) and any(
        h in index.events_by_hour for h in reached if h not in kept.kept
    ):
        return True  # an hour read again from the file: ~0.9 MiB, 90 ms (four clients left a normal one 0.5%)
    return sum(map(index.events_by_hour.get, reached, repeat(0))) > _LONG_EVENTS


class ServeSettings(NamedTuple):
    """How the server was started."""

    path: str
    max_hours: int
    quiet: bool
    jobs: int
    workers: int
    limits: _Limits = _Limits()
    hosts: tuple[str, ...] = ()  # dotted names a request's Host may give (--allow-host; '*': any)


def _load_index(name: str, jobs: int, in_memory: bool = False, expected: list[_Stamp] | None = None) -> Index:
    """The index of the files NAME stands for, listed anew; each must be a regular file (SIGHUP reads them
    again; /dev/zero would never end), the same before and after it is read (a log rewritten meanwhile, as cp
    does, was served as a quarter of itself), and, if EXPECTED, the very files the index before read."""
    paths = _input_files(name)
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise InputError(f"{_display(path)}: no such file") from None
        except OSError as error:
            raise InputError(f"{_display(path)}: cannot read ({error.strerror})") from None
        if not stat.S_ISREG(mode):
            raise InputError(f"{_display(path)}: not a regular file; --serve reads it again on SIGHUP")
    before = _stamps_of(paths)
    if expected is not None and before != expected:
        raise InputError(f"{_display(name)} is no longer the log indexed; send SIGHUP to read it again")
    index = build_index(name, jobs, paths, in_memory)  # the files checked, not a second listing
    if _stamps_of(paths) != before:
        raise InputError(f"{_display(name)} changed while it was read; send SIGHUP again once it is written")
    return index


def _stamps_of(paths: list[str]) -> list[_Stamp]:
    """_path_stamp of each of PATHS; InputError if one cannot be read."""
    try:
        return [_path_stamp(path) for path in paths]
    except OSError as error:
        raise InputError(f"{_display(error.filename or paths[0])}: cannot read ({error.strerror})") from None


def _refusal(old: Index, new: Index) -> str:
    """Why NEW must not replace OLD ('' if it may): an empty or mostly malformed file is a rotation caught half-way."""
    if old.events and not new.events:
        return f"{new.path} now has no events (truncated?)"
    if new.skipped.count > new.events:
        return f"{new.path} now has {new.skipped.count:,} malformed rows against {new.events:,} good ones"
    return ""


class _Stopping(Exception):
    """SIGTERM or SIGINT arrived while the master was busy (building an index)."""


_BUILD_NICENESS = 10  # the nice value a background build's pool adds: at 10, a tenth of the CPU against answers


class _Master:
    """The parent process: holds the index and the socket, forks workers, reloads, stops."""

    def __init__(self, index: Index, sock: socket.socket, settings: ServeSettings) -> None:
        self.index, self.sock, self.settings = index, sock, settings
        self.reload: _Reload | None = None
        self.workers: set[int] = set()
        self.last_asked = _LastAsked()

    def run(self) -> int:
        """Fork the workers, then wait for signals: HUP reloads, TERM and INT stop, CHLD replaces a dead worker."""
        waited = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
        signal.pthread_sigmask(signal.SIG_BLOCK, waited)
        self.workers = self.fork_workers()
        stopped = not self.moved_into_memory()
        while not stopped:
            received = signal.sigwait(waited)
            if received in _STOP_SIGNALS:
                break
            if received == signal.SIGCHLD:
                self.replace_dead_workers()
            elif received == signal.SIGHUP:
                stopped = not self.reloaded() or not self.moved_into_memory()
        self.stop_workers(self.workers)
        _log("stopped")
        return 0

    def fork_workers(self) -> set[int]:
        """Start Settings.workers workers serving the current index."""
        import asyncio  # noqa: F401 - imported before the fork, its modules' pages are shared: 4.5 MB a worker

        gc.collect()
        _release_free_memory()
        gc.freeze()  # the index's objects stay out of the collector's walks: forked pages stay shared
        return {self.fork_worker() for _ in range(self.settings.workers)}

    def fork_worker(self) -> int:
        """One worker; its process serves until told to stop, then exits without unwinding the master's stack."""
        pid = os.fork()
        if pid:
            return pid
        status = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the master decides
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            # Not run()'s Python handler, which raises SystemExit wherever the worker is (once in
            # an unclosed loop's __del__, a traceback on stderr): until the loop's handler is
            # set, SIGTERM ends a worker that has accepted nothing yet.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            _Worker(self.index, self.sock, self.settings, self.reload, self.last_asked).run()
        except BaseException as error:  # a worker must never unwind into the master's code
            _log(f"worker {os.getpid()} failed: {error!r}")
            status = 1
        finally:
            os._exit(status)

    def reloaded(self) -> bool:
        """SIGHUP: build a new index; if it may replace the old, serve it.  False if stopped meanwhile."""
        return self.replaced(in_memory=False)

    def moved_into_memory(self) -> bool:
        """If hours are read from the file, build the index that keeps them in memory and serve it: the
        server answers from the file-backed one within seconds, and from memory (every answer in well under a
        millisecond) once this is done.  False if stopped meanwhile."""
        return self.index.files is None or self.replaced(in_memory=True)

    def replaced(self, in_memory: bool) -> bool:
        """Build a new index; if it may replace the old, fork new workers and retire the old.  False if stopped."""
        began = time.time()
        if (built := self.built(in_memory)) is None:
            return False
        index, why = built
        if not in_memory:
            self.reload = _Reload(began, not why, why)
        if not why:
            self.index = index
        old, self.workers = self.workers, self.fork_workers()  # new ones accept before the old ones stop
        self.stop_workers(old)
        if why:
            refused = "keeping every event in memory refused" if in_memory else "reload refused"
            _log(f"{refused}, still serving the old index: {why}")
        else:
            _log(f"{'kept in memory' if in_memory else 'reloaded'}: {_describe(index)}")
        return True

    def built(self, in_memory: bool) -> tuple[Index, str] | None:
        """A new index, and why it must not replace the old ('' if it may); None if stopped meanwhile."""
        signal.signal(signal.SIGTERM, _raise_stopping)  # a long build must not make SIGTERM wait
        signal.signal(signal.SIGINT, _raise_stopping)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        try:
            # Kept in memory: only the files the file-backed index holds open (one renamed over the path meanwhile
            # is not adopted without a SIGHUP).
            expected = self.index.files.stamps if in_memory and self.index.files else None
            with _niced_pools(_BUILD_NICENESS):
                index = _load_index(self.settings.path, self.settings.jobs, in_memory, expected)
            why = _refusal(self.index, index)
        except InputError as error:
            index, why = self.index, str(error)
        except _Stopping:
            return None
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        return index, why

    def replace_dead_workers(self) -> None:
        """Reap workers that exited; start others in their place."""
        for pid in list(self.workers):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.workers.discard(pid)
                _log(f"worker {pid} exited ({status}); starting another")
                time.sleep(0.2)  # a worker that dies at once must not make this a loop of forks
                self.workers.add(self.fork_worker())

    def stop_workers(self, pids: set[int]) -> None:
        """SIGTERM PIDS, wait a second for them, then SIGKILL what is left."""
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 1.0
        waiting = set(pids)
        while waiting and time.monotonic() < deadline:
            for pid in list(waiting):
                with suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == 0:
                        continue
                waiting.discard(pid)
            time.sleep(0.01)
        for pid in waiting:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _raise_stopping(signum: int, frame: object) -> None:
    """A signal handler: unwind the build in progress."""
    raise _Stopping


# The page at /: a form and a chart of /counts.  Kept as text here, so that the tool
# stays one file; each is small, and needs nothing from the internet.
_PAGE_HTML = r"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>totaler: events per bucket</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="stylesheet" href="/app.css"></head>
<body data-state="loading">
<h1 id="title">Events per hour (UTC)</h1>
<form id="question" action="/" method="get">
<label>Start <input id="start" name="start" size="24" required></label> <span class="error" id="start-error"></span>
<label>End <input id="end" name="end" size="24" required></label> <span class="error" id="end-error"></span>
<label>Customer <input id="customer" name="customer_id" list="customers" size="34" placeholder="all"></label>
<datalist id="customers"></datalist> <span class="error" id="customer-error"></span>
<label>Bucket <select id="bucket" name="bucket"><option>1m</option><option>5m</option><option>15m</option>
<option>30m</option><option selected>1h</option><option>2h</option><option>6h</option><option>12h</option>
<option>1d</option></select></label>
<label>Zone <input id="tz" name="tz" list="zones" size="18" value="UTC"></label>
<datalist id="zones"><option>UTC</option><option>America/New_York</option><option>America/Los_Angeles</option>
<option>Europe/London</option><option>Europe/Berlin</option><option>Asia/Kolkata</option><option>Asia/Tokyo</option>
<option>Australia/Sydney</option></datalist> <span class="error" id="tz-error"></span>
<label>Event types <input id="event-type" name="event_type" size="20" placeholder="all (a, b, ...)"></label>
<span class="error" id="event-type-error"></span> <button>Show</button>
</form>
<p class="error" id="error"></p>
<p id="summary"></p>
<svg id="chart" viewBox="0 0 960 320" role="img" aria-label="events per bucket, stacked by customer"></svg>
<ul id="legend"></ul>
<table><thead><tr><th>bucket</th><th>customer</th><th>events</th></tr></thead><tbody id="numbers"></tbody></table>
<p id="left-out"></p>
<script src="/app.js"></script>
</body>
</html>
"""
_PAGE_CSS = r"""body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
form { display: flex; flex-wrap: wrap; gap: 0.5em 1em; align-items: center; }
.error { color: #b00020; }
#summary { font-weight: bold; }
#chart { width: 100%; max-width: 960px; height: auto; }
#chart .axis { font-size: 10px; fill: #555; }
#chart .grid { stroke: #ddd; stroke-width: 1; }
#chart .total { font-size: 10px; fill: #555; text-anchor: middle; }
#chart .value { text-anchor: end; }
#legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 0.3em 1em; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.3em; }
table { border-collapse: collapse; margin-top: 1em; }
td, th { border-bottom: 1px solid #ddd; padding: 0.2em 0.8em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
"""
_PAGE_JS = r""""use strict";
// The chart reads /counts, the very JSON the command line prints, so the two never disagree.
// Every customer id and message reaches the page through textContent or setAttribute: never as HTML.
const $ = (id) => document.getElementById(id);
const MAX_BUCKETS = 2000;
const MAX_ELEMENTS = 2000; // SVG elements the chart may draw: with many customers, the top ones and "other"
const MOST_DRAWN = 10; // customers drawn apart at most; the rest share one "other customers" band
const TABLE_ENTRIES = 500; // entries of the table at most
const LISTED_DAYS = 3; // a longer window's table leaves out its empty buckets
const OTHER = ""; // the data-customer of the "other customers" band
const NUMBER = new Intl.NumberFormat("en-US");
const plural = (n, noun) => `${NUMBER.format(n)} ${noun}${n === 1 ? "" : "s"}`;

// JSON.parse would reorder customer ids that look like integers; this keeps the server's order.
function parseCounts(text) {
  const token = /\s*("(?:[^"\\]|\\.)*"|\d+|[{}:,])/y;
  const buckets = [];
  let depth = 0, name = null, found;
  while ((found = token.exec(text)) !== null) {
    const t = found[1];
    if (t === "{") depth++;
    else if (t === "}") depth--;
    else if (t[0] === '"') name = JSON.parse(t);
    else if (t === ":" && depth === 1) buckets.push([name, []]);
    else if (/^\d/.test(t)) buckets[buckets.length - 1][1].push([name, Number(t)]);
  }
  return buckets;
}

// A customer id as shown: its bidirectional controls and invisible marks written out ("\\u202e"), so that
// "\u202egnp.exe" cannot show as "exe.png"; the id itself (a data attribute, a query) is left as it is.
const HIDDEN = /[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/g;
function visible(id) {
  return id.replace(HIDDEN, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

// A customer's colour comes from its id (FNV-1a, its bits mixed as MurmurHash3 ends), so it is the same in
// every window: a hue of 360 and one of three lightnesses.
function colorOf(customer) {
  if (customer === OTHER) return "#bbb";
  let hash = 0x811c9dc5;
  for (const c of customer) hash = Math.imul(hash ^ c.codePointAt(0), 0x01000193);
  hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
  hash = (hash ^ (hash >>> 16)) >>> 0;
  return `hsl(${hash % 360}, 60%, ${[36, 48, 60][(hash >>> 9) % 3]}%)`;
}

// "2021-03-01 04:00:00 +0000", the label of a bucket, as milliseconds since the epoch.
function millis(label) {
  const [, date, time, hours, minutes] = /^(\S+) (\S+) ([+-]\d\d)(\d\d)\d*$/.exec(label);
  return Date.parse(`${date}T${time}${hours}:${minutes}`);
}

// Gridlines at 1, 2 or 5 times a power of ten, four or five of them.
function gridStep(most) {
  const power = 10 ** Math.floor(Math.log10(Math.max(1, most / 4)));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= most / 5);
}

function node(namespace, tag, attributes, text) {
  const made = document.createElementNS(namespace, tag);
  for (const [key, value] of Object.entries(attributes || {})) made.setAttribute(key, String(value));
  if (text !== undefined) made.textContent = text;
  return made;
}
const svg = (tag, attributes, text) => node("http://www.w3.org/2000/svg", tag, attributes, text);
const html = (tag, attributes, text) => node("http://www.w3.org/1999/xhtml", tag, attributes, text);

function showError(message) {
  const field = /^start\b/.test(message) ? "start"
    : /^(end|window)\b/.test(message) ? "end"
    : /^customer_id\b/.test(message) ? "customer"
    : /^(tz|bucket)\b/.test(message) ? "tz"
    : /^event_type\b/.test(message) ? "event-type" : null;
  $(field ? field + "-error" : "error").textContent = message;
  document.body.dataset.state = "error";
}

// Each bucket spans from its start (or the window's) to the next one's (or the window's end):
// a bucket the window cuts is drawn as wide as the part of it the window holds.
function spans(buckets, from, to) {
  const starts = buckets.map(([label]) => millis(label));
  return starts.map((start, i) => [Math.max(start, from), i + 1 < starts.length ? starts[i + 1] : to]);
}

// The customers drawn apart: the window's busiest, as many as fit MAX_ELEMENTS; the rest become "other".
function drawnApart(buckets) {
  const totals = new Map();
  for (const [, pairs] of buckets) {
    for (const [customer, n] of pairs) totals.set(customer, (totals.get(customer) || 0) + n);
  }
  const room = Math.floor(MAX_ELEMENTS / Math.max(1, buckets.length)) - 3; // a column, its title, labels
  const most = Math.max(0, Math.min(MOST_DRAWN, room - 1, totals.size));
  const busiest = [...totals].sort((a, b) => b[1] - a[1]);
  return [new Set(busiest.slice(0, totals.size <= most + 1 ? totals.size : most).map(([c]) => c)), totals.size];
}

// A bucket's pairs as drawn: the customers drawn apart, in the JSON's order, then one "other" band.
function drawnPairs(pairs, apart) {
  const drawn = pairs.filter(([customer]) => apart.has(customer));
  const other = pairs.reduce((sum, [customer, n]) => sum + (apart.has(customer) ? 0 : n), 0);
  return other ? [...drawn, [OTHER, other]] : drawn;
}

function drawAxis(chart, most, box) {
  const step = gridStep(most), ceiling = Math.ceil(most / step) * step;
  for (let value = 0; value <= ceiling; value += step) {
    const y = box.bottom - (value / ceiling) * (box.bottom - box.top);
    chart.append(svg("line", { x1: box.left, x2: box.right, y1: y, y2: y, class: "grid" }));
    chart.append(svg("text", { x: box.left - 4, y: y + 3, class: "axis value" }, NUMBER.format(value)));
  }
  return (box.bottom - box.top) / ceiling;
}

function drawBucket(chart, [hour, pairs], total, [x0, x1], scale, box) {
  const column = svg("g", { "data-hour": hour, "data-total": total });
  column.append(svg("title", {}, `${hour}: ${plural(total, "event")}`));
  let y = box.bottom;
  for (const [customer, n] of pairs) {
    const bar = svg("rect", {
      x: x0, y: y - n * scale, width: Math.max(x1 - x0, 0.5), height: n * scale,
      fill: colorOf(customer), "data-hour": hour, "data-customer": customer, "data-count": n,
    });
    const who = customer === OTHER ? "other customers" : visible(customer);
    bar.append(svg("title", {}, `${who}: ${plural(n, "event")} in ${hour}`));
    column.append(bar);
    y -= n * scale;
  }
  return [column, y];
}

function draw(buckets, from, to) {
  const chart = $("chart"), box = { left: 56, right: 952, top: 16, bottom: 292 };
  chart.replaceChildren();
  const totals = buckets.map(([, pairs]) => pairs.reduce((sum, [, n]) => sum + n, 0));
  const total = totals.reduce((sum, n) => sum + n, 0);
  const [apart, customers] = drawnApart(buckets);
  const others = customers - apart.size;
  $("summary").textContent = total
    ? `${plural(total, "event")} in this window (total), ${plural(customers, "customer")}`
      + (others ? `: the ${NUMBER.format(apart.size)} busiest drawn apart, ${plural(others, "other")} as one band` : "")
    : "no events in this window";
  const scale = drawAxis(chart, Math.max(1, ...totals), box);
  const x = (t) => box.left + ((t - from) / (to - from)) * (box.right - box.left);
  const every = Math.ceil(buckets.length / 12), gap = buckets.length <= 200 ? 1 : 0;
  spans(buckets, from, to).forEach(([start, end], i) => {
    const [x0, x1] = [x(start), x(end) - gap];
    const pairs = drawnPairs(buckets[i][1], apart);
    const [column, top] = drawBucket(chart, [buckets[i][0], pairs], totals[i], [x0, x1], scale, box);
    if (buckets.length <= 48 && totals[i]) {
      column.append(svg("text", { x: (x0 + x1) / 2, y: top - 3, class: "total" }, NUMBER.format(totals[i])));
    }
    if (i % every === 0) column.append(svg("text", { x: x0, y: 310, class: "axis" }, buckets[i][0].slice(5, 16)));
    chart.append(column);
  });
  drawLegend(apart, others);
  drawTable(buckets, to - from > LISTED_DAYS * 86400000);
  document.body.dataset.state = "drawn";
}

function drawLegend(apart, others) {
  const entries = [...apart, ...(others ? [OTHER] : [])];
  $("legend").replaceChildren(...entries.map((customer) => {
    const item = html("li", {}, customer === OTHER ? `${plural(others, "other customer")}` : visible(customer));
    const swatch = html("span", { class: "swatch" });
    swatch.style.background = colorOf(customer); // through the CSSOM: the policy forbids style attributes
    item.prepend(swatch);
    return item;
  }));
}

function drawTable(buckets, leaveOutEmpty) {
  const shown = leaveOutEmpty ? buckets.filter(([, pairs]) => pairs.some(([, n]) => n)) : buckets;
  const entries = shown.flatMap(([hour, pairs]) => (pairs.length ? pairs : [["", 0]]).map((pair) => [hour, ...pair]));
  $("numbers").replaceChildren(...entries.slice(0, TABLE_ENTRIES).map(([hour, customer, n]) => {
    const tr = html("tr");
    tr.append(html("td", {}, hour), html("td", {}, visible(customer)), html("td", { class: "n" }, NUMBER.format(n)));
    return tr;
  }));
  const notes = [];
  const left = buckets.length - shown.length;
  if (left) notes.push(`${plural(left, "empty bucket")} of this window not listed`);
  if (entries.length > TABLE_ENTRIES) {
    notes.push(`the first ${NUMBER.format(TABLE_ENTRIES)} of ${NUMBER.format(entries.length)} table entries shown`);
  }
  $("left-out").textContent = notes.join("; ");
}

// The customer picker: the busiest customers, then those whose id starts with what is typed.
async function offerCustomers(prefix) {
  const query = new URLSearchParams({ limit: "20", order: prefix ? "id" : "events", prefix });
  const reply = await fetch("/customers?" + query);
  if (!reply.ok) return; // the list comes with the index in memory
  const { customers } = await reply.json();
  $("customers").replaceChildren(...customers.map(({ customer: id, events }) => {
    return html("option", { value: id }, `${visible(id)} (${plural(events, "event")})`);
  }));
}

function fillForm(params) {
  for (const [id, name] of [["start", "start"], ["end", "end"], ["customer", "customer_id"], ["tz", "tz"]]) {
    if (params.get(name)) $(id).value = params.get(name);
  }
  if (params.get("bucket")) $("bucket").value = params.get("bucket");
  $("event-type").value = params.getAll("event_type").join(", ");
  const zone = params.get("tz") || "UTC", width = params.get("bucket") || "1h";
  $("title").textContent = `Events per ${width === "1h" ? "hour" : width} (${zone})`;
}

// The window lives in the URL: repeated event_type parameters from the comma-separated field.
function submitted(event) {
  event.preventDefault();
  const query = new URLSearchParams();
  for (const [id, name] of [["start", "start"], ["end", "end"], ["customer", "customer_id"], ["bucket", "bucket"],
    ["tz", "tz"]]) {
    if ($(id).value.trim()) query.set(name, $(id).value.trim());
  }
  const types = $("event-type").value.split(",").map((t) => t.trim()).filter(Boolean);
  for (const type of types) query.append("event_type", type);
  location.search = query.toString();
}

async function main() {
  const params = new URLSearchParams(location.search);
  fillForm(params);
  $("question").addEventListener("submit", submitted);
  $("customer").addEventListener("input", () => offerCustomers($("customer").value).catch(() => {}));
  offerCustomers("").catch(() => {});
  const query = new URLSearchParams();
  for (const name of ["start", "end", "customer_id", "bucket", "tz"]) {
    if (params.get(name)) query.set(name, params.get(name));
  }
  for (const type of params.getAll("event_type")) query.append("event_type", type);
  const reply = await fetch("/counts?" + query);
  const text = await reply.text();
  if (!reply.ok) return showError(JSON.parse(text).error);
  const buckets = parseCounts(text);
  if (buckets.length > MAX_BUCKETS) {
    return showError(`end: the chart shows ${MAX_BUCKETS} buckets at most; this window has ${buckets.length}`);
  }
  // The window as the server read it; Date.parse takes three digits of a fraction at most.
  const window = reply.headers.get("Totaler-Window").replace(/(\.\d{3})\d+/g, "$1");
  const [from, to] = window.split("/").map(Date.parse);
  draw(buckets, from, to);
}

main().catch((error) => showError(String(error)));
"""
_PAGE_FILES = {
    "/": _Reply(_PAGE_HTML.encode(), "text/html; charset=utf-8"),
    "/app.css": _Reply(_PAGE_CSS.encode(), "text/css; charset=utf-8"),
    "/app.js": _Reply(_PAGE_JS.encode(), "text/javascript; charset=utf-8"),
}


def _describe(index: Index) -> str:
    """One line about an index."""
    if index.files is not None:  # surveyed: its customers are counted with the index in memory
        return (
            f"surveyed {index.events:,} events in {index.path} in {index.seconds:.2f} s, {index.skipped.count} rows "
            "skipped; hours read from the file until every event is kept in memory"
        )
    return (
        f"indexed {index.events:,} events of {index.customers:,} customers from {index.path} "
        f"in {index.seconds:.2f} s, {index.skipped.count} rows skipped"
    )


def _log(message: str, prefix: bool = True) -> None:
    """A line on stderr, in one write: lines of several processes never interleave."""
    line = (f"totaler: {message}" if prefix else message) + "\n"
    with suppress(OSError):
        os.write(2, line.encode("utf-8", "backslashreplace"))


def _listening_socket(host: str, port: int) -> socket.socket:
    """A non-blocking socket listening on HOST:PORT with a deep backlog; InputError if it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)  # the default of 5 drops a burst of new connections: a 1 s SYN retry each
    except OSError as error:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port} ({error.strerror})") from None
    sock.setblocking(False)
    return sock


def _raise_descriptor_limit() -> None:
    """Let this process open as many descriptors as the hard limit allows (nginx's worker_rlimit_nofile)."""
    with suppress(ValueError, OSError, ImportError):
        import resource  # POSIX only, like the server

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(host: str, port: int, settings: ServeSettings) -> int:
    """Index the file, then answer HTTP on worker processes until SIGTERM or SIGINT; SIGHUP reloads it."""
    path = settings.path
    if path == "-":
        raise UsageError("--serve needs a file, not standard input: it is read again on SIGHUP")
    index = _load_index(path, settings.jobs)  # before any worker exists, the build may fork its own
    warnings = _read_warnings(path, index.events, index.skipped)
    sock = _listening_socket(host, port)
    _raise_descriptor_limit()
    for warning in warnings:
        _log(f"warning: {warning}")
    name = f"[{host}]" if ":" in host else host
    url = f"http://{name}:{sock.getsockname()[1]}/"
    start, end = _busiest_day(index)
    example = f"{url}counts?start={_format_iso(start)}&end={_format_iso(end)}"
    serving = _plural(settings.workers, "worker")
    _log(f"{_describe(index)}; {serving} serving {url} (the page), e.g. {example} (the busiest day)")
    master = _Master(index, sock, settings)
    del index  # else this frame kept the first index, and its open files, for the server's life, past every reload
    return master.run()


# ---------------------------------------------------------------------------
# The entry point: the command line's arguments, main() and the console script.

_EXAMPLES = """examples:
  totaler events.csv 2021-03-01T04:00:00Z 2021-03-01T06:30:00Z
  totaler events.csv 2021-03-01T04:00:00Z 2021-03-01T06:30:00Z 30330c9c4e7173ba9474c46ee5191570 --json
  gzip -c events.csv | totaler - '2021-03-01 04:00:00 UTC' 2021-03-01T12:00:00+05:30
  totaler events.csv --serve --port 8000

Buckets are UTC hours; an event counts when START <= time < END. Exit status:
0 answered, 1 the input could not be read (not one row of it, or --strict met a bad row),
2 bad arguments; 130 or 143 when stopped by Ctrl-C or SIGTERM while counting (--serve: 0)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but every error is one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Raise instead of printing usage."""
        raise UsageError(f"{message} (see --help)")


def _whole_number(least: int, most: int | None = None) -> Callable[[str], int]:
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


def _seconds(text: str) -> float:
    """An argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: give more than 0 and at most 86400")
    return value


def _build_parser() -> _Parser:
    """The command line's arguments."""
    parser = _Parser(
        prog="totaler",
        description="Count each customer's events per UTC hour (or buckets of any width in any zone) in\n"
        "[START, END) of a CSV log (customer_id,event_type,transaction_id,timestamp), or serve the\n"
        "same answers over HTTP.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    files = "the CSV log (plain, gzip, bzip2 or xz), a directory of them, a quoted glob, or '-' for standard input"
    parser.add_argument("file", metavar="FILE", help=files)
    start = "window start, ISO 8601 (no offset: UTC, or a wall time in --tz)"
    parser.add_argument("start", metavar="START", nargs="?", help=start)
    parser.add_argument("end", metavar="END", nargs="?", help="window end, exclusive")
    parser.add_argument("customer", metavar="CUSTOMER_ID", nargs="?", help="count only this customer")
    _add_question_arguments(parser)
    parser.add_argument("--strict", action="store_true", help="fail on the first malformed row")
    parser.add_argument(
        "--max-hours", type=_whole_number(1), default=100_000, metavar="N", help="longest window allowed (100000)"
    )
    jobs = "worker processes (default: CPUs)"
    parser.add_argument("--jobs", type=_whole_number(0), default=0, metavar="N", help=jobs)
    scheduler = os.environ.get("TOTALER_SCHEDULER") or None
    cluster = "count on this Dask scheduler's workers, which see the same paths (env TOTALER_SCHEDULER; needs "
    cluster += "pip install '.[dask]' in a clone of totaler)"
    parser.add_argument("--scheduler", default=scheduler, metavar="ADDRESS", help=cluster)
    parser.add_argument("--version", action="version", version=f"totaler {__version__}")
    _add_http_arguments(parser)
    return parser


_T = TypeVar("T")  # what an argparse type gives


def _argument_type(convert: Callable[[str], _T]) -> Callable[[str], _T]:
    """An argparse type: CONVERT, its ValueError the message argparse shows."""

    def checked(text: str) -> _T:
        try:
            return convert(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return checked


def _checked_zone(name: str) -> str:
    """A zone's name, if it is one (_BadZone, a ValueError, if not)."""
    _zone_named(name)
    return name


def _add_question_arguments(parser: _Parser) -> None:
    """How the answer is cut and written: --bucket, --tz, --event-type, --format (--json)."""
    parser.add_argument(
        "--bucket",
        type=_argument_type(parse_width),
        default=_HOUR,
        metavar="WIDTH",
        help=f"bucket width: {_WIDTH_HELP}",
    )
    zone = f"buckets' and bounds' time zone: {_ZONE_HELP} (default UTC)"
    parser.add_argument("--tz", type=_argument_type(_checked_zone), default="UTC", metavar="ZONE", help=zone)
    types = "count only rows of this event_type (repeat it for several)"
    parser.add_argument("--event-type", action="append", metavar="TYPE", dest="event_types", help=types)
    unique = "count each transaction_id once: its first row in the input; later rows with it are duplicates"
    parser.add_argument("--unique", action="store_true", help=unique)
    parser.add_argument("--format", choices=["text", "json", "csv"], help="how to print the answer (default text)")
    parser.add_argument("--json", action="store_true", help="print JSON: --format json")


def _answer_format(args: argparse.Namespace) -> str:
    """text, json or csv, as --format (or --json) asks; UsageError if they disagree."""
    if args.json and args.format not in (None, "json"):
        raise UsageError(f"--json and --format {args.format} ask for two formats: give one")
    return "json" if args.json else args.format or "text"


def _add_http_arguments(parser: _Parser) -> None:
    """The arguments of --serve."""
    http = parser.add_argument_group("HTTP service", "totaler FILE --serve: GET /counts?start=A&end=B[&customer_id=X]")
    http.add_argument("--serve", action="store_true", help="index FILE once, then answer over HTTP")
    host = os.environ.get("TOTALER_HOST", "127.0.0.1")  # the image sets 0.0.0.0: `docker run -p` just works
    http.add_argument("--host", default=host, help=f"address to listen on (default {host}; env TOTALER_HOST)")
    http.add_argument("--port", type=_whole_number(0, 65535), default=8000, help="port (default 8000; 0 picks one)")
    allowed = (
        "a name the Host header may give (again for more; '*': any), besides IP addresses, one-label names, names "
        "under .localhost, .local and .internal, and the --host name; added to env TOTALER_ALLOW_HOSTS=a.example,..."
    )
    http.add_argument("--allow-host", action="append", metavar="NAME", help=allowed)
    http.add_argument("--quiet", action="store_true", help="no access log")
    http.add_argument(
        "--workers", type=_whole_number(0, 256), default=0, metavar="N", help="serving processes (default: CPUs)"
    )
    waits = ("for a request line and headers to arrive, else 408", "an idle keep-alive connection stays open")
    limits = _Limits()
    for name, default, what in zip(
        ("header", "idle"), (limits.header_seconds, limits.idle_seconds), waits, strict=True
    ):
        text = f"seconds {what} (default {default:g})"
        http.add_argument(f"--{name}-timeout", type=_seconds, default=default, metavar="S", help=text)
    connections = f"open connections per worker; more wait in the backlog (default {limits.connections})"
    http.add_argument(
        "--max-connections", type=_whole_number(1), default=limits.connections, metavar="N", help=connections
    )


def _joined_offsets(argv: list[str]) -> list[str]:
    """ARGV with '--tz -03:30' as '--tz=-03:30': argparse takes a value that starts with '-' for an option."""
    joined: list[str] = []
    for argument in argv:
        if joined and joined[-1] == "--tz" and re.match(r"-\d", argument):
            joined[-1] = f"--tz={argument}"
        else:
            joined.append(argument)
    return joined


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = _build_parser()
    if not argv:
        parser.print_help()
        return 0
    try:
        _check_unquoted_glob(argv)
        args = parser.parse_intermixed_args(_joined_offsets(argv))
        if args.serve:
            return _serve_command(args)
        form, window = _answer_format(args), _question(args)
        tally = count_files(_input_files(args.file), window, args.strict, args.jobs, args.scheduler)
        for warning in _read_warnings(args.file, tally.events, tally.skipped):
            _log(f"warning: {warning}")
        if window.unique:
            _log(f"note: {_plural(tally.duplicates, 'duplicate row')} not counted (--unique)")
    except (UsageError, InputError) as error:
        _log(f"error: {error}")
        return 2 if isinstance(error, UsageError) else 1
    if form == "text":
        return _write_answer(render_text(args.file, window, tally.counts))
    return _write_answer(_RENDERINGS[form](window, tally.counts))


def _serve_command(args: argparse.Namespace) -> int:
    """totaler FILE --serve: the server's settings from ARGS, then serve."""
    if args.start is not None:
        raise UsageError("--serve takes only FILE: the window comes with each request")
    limits = _Limits(args.header_timeout, args.idle_timeout, args.max_connections)
    workers = args.workers or _default_jobs()
    names = [*(args.allow_host or []), *os.environ.get("TOTALER_ALLOW_HOSTS", "").split(","), args.host]
    hosts = tuple(
        _host_name(name.strip().encode()) for name in names if name.strip()
    )  # 'a.example:8000' -> 'a.example'
    settings = ServeSettings(args.file, args.max_hours, args.quiet, args.jobs, workers, limits, hosts)
    return serve(args.host, args.port, settings)


def _question(args: argparse.Namespace) -> Window:
    """The window, customer, event types and buckets the command line's ARGS ask about."""
    missing = [name for name, value in (("START", args.start), ("END", args.end)) if value is None]
    if missing:
        raise UsageError(f"the following arguments are required: {', '.join(missing)} (see --help)")
    buckets = Buckets(args.bucket, args.tz)
    window = parse_window(
        args.start, args.end, args.customer, args.max_hours, buckets=buckets, event_types=args.event_types
    )
    return window._replace(unique=args.unique)


def _check_unquoted_glob(argv: list[str]) -> None:
    """UsageError if a file stands where START belongs: the shell expanded an unquoted glob into file names."""
    if len(argv) > 1 and argv[1] != "-" and os.path.isfile(argv[0]) and os.path.isfile(argv[1]):
        example = os.path.join(os.path.dirname(argv[0]), "*.csv")
        raise UsageError(
            f"START {argv[1]!r} is a file, not a time: was FILE a glob the shell expanded? "
            f"Quote it ('{example}') and totaler reads every file it matches"
        )


def _write_answer(output: str) -> int:
    """Print OUTPUT on standard output; 1 with one line on stderr if it cannot be written (a full disk, say)."""
    try:
        # surrogateescape: an argument that was not UTF-8 (FILE, CUSTOMER_ID) is printed as the bytes it was.
        sys.stdout.buffer.write(output.encode("utf-8", "surrogateescape"))
        sys.stdout.flush()
    except BrokenPipeError:
        raise  # the reader went away: run() exits quietly
    except (OSError, AttributeError) as error:  # AttributeError: standard output was closed (>&-)
        _log(f"error: cannot write the answer ({getattr(error, 'strerror', None) or 'standard output is closed'})")
        _silence_stdout()
        return 1
    return 0


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that the exit's own flush of what is left fails no more."""
    if sys.stdout is not None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run() -> None:
    """The console script: main() with a quiet exit on a closed pipe, Ctrl-C or SIGTERM."""
    # As PID 1 in a container a process ignores SIGTERM unless it handles it, and
    # `docker stop` would wait ten seconds to kill it (--serve sets its own handler).
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        status = main()
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error worth a traceback.
        _silence_stdout()
        status = 1
    except KeyboardInterrupt:
        status = 130
    # The answer is out: spare the exit its walk of every object for cycles (15 ms after
    # the 62,000 pairs of the UUID shape, 9 after a tiny file; 7 and 4 frozen).
    gc.freeze()
    sys.exit(status)


def _exit_on_signal(signum: int, frame: object) -> None:
    """Unwind (closing files, stopping workers) and exit with 128 + the signal's number."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    run()
