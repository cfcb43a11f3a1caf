"""The fast path counts exactly what the reference path counts, on generated messy files."""

import io
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

import totaler

BASE = datetime(2021, 2, 28, 22, tzinfo=UTC)
# Whole seconds often, so that events fall exactly on window bounds; microseconds otherwise.
moments = st.one_of(
    st.integers(min_value=0, max_value=5 * 3600).map(lambda s: BASE + timedelta(seconds=s)),
    st.integers(min_value=0, max_value=5 * 3600 * 10**6).map(lambda us: BASE + timedelta(microseconds=us)),
)
customers = st.sampled_from(["a", "b", "c9", "30330c9c4e7173ba9474c46ee5191570", "é", "x y"])


def canonical_stamp(moment: datetime, digits: int, suffix: str, sep: str) -> str:
    """A UTC timestamp the fast path reads: 0-6 fraction digits, a UTC suffix or none."""
    text = moment.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if digits:
        text += "." + f"{moment.microsecond:06d}"[:digits]
    return text + suffix


@st.composite
def rows(draw) -> bytes:
    """One line of a messy log: mostly canonical, sometimes any shape the world sends."""
    who = draw(customers)
    when = draw(moments)
    stamp = canonical_stamp(
        when,
        draw(st.integers(0, 6)),
        draw(st.sampled_from(["+00", "Z", "", "+0000", "+00:00"])),
        draw(st.sampled_from([" ", "T"])),
    )
    kind = draw(
        st.sampled_from(["canonical"] * 8 + ["offset", "quoted", "spaces", "crlf", "blank", "bad", "header", "nul"])
    )
    event, txid = draw(st.sampled_from(["INGEST", "API CALL", ""])), draw(st.sampled_from(["t1", "2021-03-01 04:00"]))
    if kind == "offset":
        hours = draw(st.sampled_from([5.5, -8, 1]))
        zone = totaler.timezone(timedelta(hours=hours))
        stamp = when.astimezone(zone).isoformat(sep=draw(st.sampled_from([" ", "T"])))
    line = f"{who},{event},{txid},{stamp}"
    if kind == "quoted":
        line = f'"{who}","{event}, quoted",{txid},"{stamp}"'
    elif kind == "spaces":
        line = f" {who} ,{event}, {txid} , {stamp} "
    elif kind == "crlf":
        line += "\r"
    elif kind == "blank":
        line = draw(st.sampled_from(["", "  ", "\r"]))
    elif kind == "bad":
        line = draw(
            st.sampled_from(
                [
                    f"{who},{event},{stamp}",
                    f",{event},{txid},{stamp}",
                    f"{who},{event},{txid},{stamp[:10]}",
                    f"{who},{event},{txid},2021-02-30 04:00:00+00",
                    f"{who},{event},{txid},0000-01-01 04:00:00+00",
                    f'{who},"{event},{txid},{stamp}',
                    f"{who},{event},{txid},{stamp},x",
                ]
            )
        )
    elif kind == "header":
        line = "customer_id,event_type,transaction_id,timestamp"
    elif kind == "nul":
        line = f"{who},{event}\0,{txid},{stamp}"
    return line.encode("utf-8")


windows = st.tuples(moments, moments, st.none() | customers).filter(lambda w: w[0] < w[1])


@contextmanager
def small_blocks(block: int, segment: int):
    """Shrink the block and segment sizes so that small files exercise every split."""
    saved = totaler.BLOCK_SIZE, totaler.SMALL_SEGMENT
    totaler.BLOCK_SIZE, totaler.SMALL_SEGMENT = block, segment
    try:
        yield
    finally:
        totaler.BLOCK_SIZE, totaler.SMALL_SEGMENT = saved


def answer(data: bytes, window: totaler.Window, fast: bool) -> tuple[list, int, list]:
    """Every bucket, customer and count in order, and what was skipped."""
    counts, skipped = totaler.count_stream(io.BytesIO(data), window, fast=fast)
    return totaler.by_bucket(counts, window), skipped.count, skipped.first


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(rows(), max_size=80),
    window=windows,
    bom=st.booleans(),
    final_newline=st.booleans(),
    block=st.sampled_from([1 << 22, 256, 97]),
    segment=st.sampled_from([1 << 16, 64, 1]),
)
def test_fast_path_equals_reference(lines, window, bom, final_newline, block, segment) -> None:
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    start, end, customer = window
    w = totaler.Window(totaler.to_micros(start), totaler.to_micros(end), customer)
    with small_blocks(block, segment):
        fast = answer(data, w, fast=True)
    reference = answer(data, w, fast=False)
    assert fast == reference


def test_generated_files_do_reach_the_fast_path() -> None:
    """Guard the property above: canonical rows really are counted by the regular expression."""
    data = b"a,INGEST,t1,2021-03-01 04:00:00.5+00\nb,INGEST,t2,2021-03-01T05:59:59Z\n"
    assert len(totaler.CANONICAL_ROW.findall(b"\n" + data)) == 2
