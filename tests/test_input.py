"""The input the real world sends: every shape is counted the same by the fast path and the plain path.

Reaches inside through conftest's `count_stream` and for `_MAX_LINE`: a stream's skipped rows, and the longest line.
"""

import io

import pytest
from conftest import count_stream

import totaler
from totaler import Window, parse_instant

W = Window(parse_instant("2021-03-01T00:00:00Z"), parse_instant("2021-03-02T00:00:00Z"))
H04 = "2021-03-01 04:00:00 +0000"


def count(data: bytes, window: Window = W, fast: bool = True) -> tuple[dict, totaler._Skipped]:
    """Count DATA as a file; return the JSON document and what was skipped."""
    tally = count_stream(io.BytesIO(data), window, fast=fast)
    counts, skipped = tally.counts, tally.skipped
    return totaler.json.loads(totaler.render_json(window, counts)), skipped


def both(data: bytes, window: Window = W) -> tuple[dict, totaler._Skipped]:
    """Count DATA by both paths, insist they agree exactly, and return the answer."""
    fast, fast_skipped = count(data, window, fast=True)
    slow, slow_skipped = count(data, window, fast=False)
    assert list(fast.items()) == list(slow.items())
    assert [list(v) for v in fast.values()] == [list(v) for v in slow.values()]
    assert (fast_skipped.count, fast_skipped.first) == (slow_skipped.count, slow_skipped.first)
    return fast, fast_skipped


GOOD = b"a,INGEST,t1,2021-03-01 04:05:06.789+00\n"


def test_plain_row() -> None:
    doc, skipped = both(GOOD)
    assert doc[H04] == {"a": 1} and skipped.count == 0


@pytest.mark.parametrize(
    "data",
    [
        b"\xef\xbb\xbf" + GOOD,  # byte-order mark
        GOOD.replace(b"\n", b"\r\n"),  # CRLF
        b"\n\n" + GOOD + b"\n   \n",  # blank lines
        b"customer_id,event_type,transaction_id,timestamp\n" + GOOD,  # header
        b"\xef\xbb\xbfCustomer_ID, event_type ,transaction_id,timestamp\r\n" + GOOD,  # BOM + header + CRLF
        b'"a","INGEST, with a comma","t1","2021-03-01 04:05:06.789+00"\n',  # quoted fields
        b"  a  , INGEST , t1 ,  2021-03-01 04:05:06.789+00  \n",  # surrounding spaces
        GOOD.rstrip(b"\n"),  # no final newline
    ],
    ids=["bom", "crlf", "blank-lines", "header", "bom-header-crlf", "quoted", "spaces", "no-final-newline"],
)
def test_real_world_shapes_count_like_a_plain_row(data: bytes) -> None:
    doc, skipped = both(data)
    assert doc[H04] == {"a": 1}
    assert skipped.count == 0


@pytest.mark.parametrize(
    "stamp",
    [
        "2021-03-01 04:05:06+00",
        "2021-03-01 04:05:06.7+00",
        "2021-03-01 04:05:06.78+00",
        "2021-03-01 04:05:06.789+00",
        "2021-03-01 04:05:06.7891+00",
        "2021-03-01 04:05:06.78912+00",
        "2021-03-01 04:05:06.789123+00",
        "2021-03-01 04:05:06+0000",
        "2021-03-01 04:05:06+00:00",
        "2021-03-01 09:35:06+05:30",
        "2021-02-28 20:05:06-08:00",
        "2021-03-01T04:05:06Z",
        "2021-03-01T04:05:06",
        "2021-03-01 04:05:06",
    ],
)
def test_every_timestamp_shape_lands_in_its_utc_hour(stamp: str) -> None:
    doc, skipped = both(f"a,INGEST,t1,{stamp}\n".encode())
    assert doc[H04] == {"a": 1} and skipped.count == 0


MALFORMED = [
    (b"a,INGEST,2021-03-01 04:05:06+00\n", "3 fields, expected 4"),
    (b"a,INGEST,t1,2021-03-01 04:05:06+00,extra\n", "5 fields, expected 4"),
    (b",INGEST,t1,2021-03-01 04:05:06+00\n", "empty customer_id"),
    (b"   ,INGEST,t1,2021-03-01 04:05:06+00\n", "empty customer_id"),
    (b"a,INGEST,t1,yesterday\n", "timestamp 'yesterday' is not ISO 8601"),
    (b"a,INGEST,t1,2021-02-30 04:05:06+00\n", "is not ISO 8601"),
    (b"a,INGEST,t1,2021-03-01\n", "has no time of day"),
    (b"a,INGEST," + b"x" * 200_000 + b",2021-03-01 04:05:06+00\n", "field larger than field limit"),
    (b"a,INGEST,t\x001,2021-03-01 04:05:06+00\n", "NUL byte"),
    (b"a,INGEST,t\xff1,2021-03-01 04:05:06+00\n", "not UTF-8"),
    (b'a,"INGEST,t1,2021-03-01 04:05:06+00\n', "bad CSV"),
    (b"a,INGEST,t1\r,2021-03-01 04:05:06+00\n", "bad CSV"),
    (b"customer_id,event_type,transaction_id,timestamp\n", "is not ISO 8601"),  # a header after line 1
]


@pytest.mark.parametrize("bad, reason", MALFORMED, ids=[r for _, r in MALFORMED])
def test_malformed_rows_are_skipped_counted_and_named(bad: bytes, reason: str) -> None:
    data = GOOD + bad + GOOD
    doc, skipped = both(data)
    assert doc[H04] == {"a": 2}  # the good rows around it still count
    assert skipped.count == 1
    line, why = skipped.first[0]
    assert line == 2 and reason in why


def test_over_long_line_is_skipped_without_holding_it() -> None:
    data = GOOD + b"a,INGEST," + b"y" * (3 * totaler._MAX_LINE) + b",2021-03-01 04:05:06+00\n" + GOOD
    doc, skipped = both(data)
    assert doc[H04] == {"a": 2}
    assert skipped.count == 1 and skipped.first[0][0] == 2


def test_many_malformed_rows_report_count_and_first_three() -> None:
    data = b"".join(GOOD if i % 3 else b"bad row\n" for i in range(30))
    doc, skipped = both(data)
    assert doc[H04] == {"a": 20}
    assert skipped.count == 10
    assert [line for line, _ in skipped.first] == [1, 4, 7]
    assert skipped.summary().startswith("skipped 10 malformed rows (line 1: 1 field, expected 4; line 4:")


def test_line_numbers_hold_across_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(totaler, "_BLOCK_SIZE", 64)
    monkeypatch.setattr(totaler, "_SMALL_BLOCK", 64)
    rows = [GOOD] * 50
    rows[37] = b"a,b\n"
    doc, skipped = both(b"".join(rows))
    assert doc[H04] == {"a": 49}
    assert skipped.first == [(38, "2 fields, expected 4")]


def test_a_read_that_ends_with_the_header_does_not_end_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    header = b"customer_id,event_type,transaction_id,timestamp\n"
    monkeypatch.setattr(totaler, "_BLOCK_SIZE", len(header))
    doc, skipped = both(header + GOOD + GOOD)
    assert doc[H04] == {"a": 2} and skipped.count == 0
