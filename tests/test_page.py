"""The page at /: a real headless Chromium draws /counts, and every bar says what it counts.

Chromium comes from Debian's package (`apt-get install chromium`); .ci/run installs it, and in
CI (CI=true) a missing browser fails the test instead of skipping it.
"""

import html
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import EVENTS, SEED, SEED_CUSTOMER
from test_http import Server, counts_url

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="no chromium here (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    path = tmp_path_factory.mktemp("page") / "events.csv"
    shutil.copy(EVENTS, path)
    running = Server(path, "--quiet", "--workers", "1")
    yield running
    running.stop()


def dump_dom(url: str, profile: Path) -> str:
    """The DOM after the page has drawn, as headless Chromium sees it."""
    assert CHROMIUM is not None, "chromium is needed in CI: apt-get install chromium"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # root in CI
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",  # the machine reaches no outside host
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",  # let the page's fetches finish before the DOM is dumped
        "--enable-logging=stderr",  # the console too: every page these tests load runs its script without error
        "--v=0",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    assert console_messages(done.stderr) == [], url
    return done.stdout


def console_messages(log: str) -> list[str]:
    """What a page wrote to its console, uncaught errors and refused scripts included, in Chromium's log."""
    return [line for line in log.splitlines() if ":CONSOLE" in line]


def test_a_script_error_on_a_page_fails_these_tests(tmp_path: Path) -> None:
    with pytest.raises(AssertionError):
        dump_dom("data:text/html,<script>draw(;</script>", tmp_path / "profile")


BAR = re.compile(r'<rect [^>]*data-hour="([^"]*)" data-customer="([^"]*)" data-count="(\d+)"')


def bars(dom: str) -> list[tuple[str, str, int]]:
    """Every bar of the chart: (hour, customer, count), in drawing order."""
    return [(hour, html.unescape(customer), int(n)) for hour, customer, n in BAR.findall(dom)]


def page_url(server: Server, start: str, end: str, customer: str | None = None) -> str:
    params = {"start": start, "end": end} | ({"customer_id": customer} if customer else {})
    return f"http://127.0.0.1:{server.port}/?" + urlencode(params)


@needs_browser
@pytest.mark.parametrize("customer", [None, SEED_CUSTOMER], ids=["all", "one-customer"])
def test_the_bars_are_the_counts_json_hour_by_hour_and_customer_by_customer(server, tmp_path, customer) -> None:
    dom = dump_dom(page_url(server, *SEED, customer), tmp_path / "profile")
    assert 'data-state="drawn"' in dom
    counts = json.loads(server.get(counts_url(*SEED, customer))[1])
    expected = [(hour, name, n) for hour, row in counts.items() for name, n in row.items()]
    assert bars(dom) == expected  # every count, in the JSON's order
    if customer is None:
        totals = {}
        for hour, _, n in bars(dom):
            totals[hour] = totals.get(hour, 0) + n
        assert list(totals.values()) == [454, 1150, 786]  # the seed's hourly totals


@needs_browser
def test_a_bad_bound_is_shown_in_words_next_to_its_field(server, tmp_path) -> None:
    dom = dump_dom(page_url(server, "yesterday", SEED[1]), tmp_path / "profile")
    assert 'data-state="error"' in dom
    shown = re.search(r'id="start-error">([^<]*)<', dom).group(1)
    assert html.unescape(shown).startswith("start 'yesterday' is not an ISO 8601 timestamp")
    assert not bars(dom)


HOSTILE = "<script>alert('x')</script>\"&'<b>"


@needs_browser
def test_a_customer_id_holding_markup_is_shown_as_text(tmp_path) -> None:
    log = tmp_path / "hostile.csv"
    log.write_text(f'"{HOSTILE.replace(chr(34), chr(34) * 2)}",INGEST,t1,2021-03-01 04:05:00+00\n')
    running = Server(log, "--quiet", "--workers", "1")
    try:
        dom = dump_dom(page_url(running, *SEED), tmp_path / "profile")
        assert 'data-state="drawn"' in dom
        assert bars(dom) == [("2021-03-01 04:00:00 +0000", HOSTILE, 1)]
        assert "<script>alert" not in dom and "<b>" not in dom  # the id never became markup
        assert "&lt;script&gt;alert('x')&lt;/script&gt;" in dom  # but it is there, as text
    finally:
        running.stop()


@needs_browser
def test_a_customer_id_with_bidirectional_controls_shows_them_written_out(tmp_path) -> None:
    """'\u202egnp.exe' would show as 'exe.png': the page writes the override out, and keeps the id itself."""
    spoof = "\u202egnp.exe"
    log = tmp_path / "bidi.csv"
    log.write_text(f"{spoof},INGEST,t1,2021-03-01 04:05:00+00\n", encoding="utf-8")
    running = Server(log, "--quiet", "--workers", "1")
    try:
        dom = dump_dom(page_url(running, *SEED), tmp_path / "profile")
        assert bars(dom) == [("2021-03-01 04:00:00 +0000", spoof, 1)]  # the data is the id as it is
        assert "<td>\\u202egnp.exe</td>" in dom and f"<td>{spoof}</td>" not in dom  # what is read is not
    finally:
        running.stop()


def test_the_page_its_policy_and_the_customers_list(server) -> None:
    status, headers, body = server.request("GET", "/?" + urlencode({"start": SEED[0], "end": SEED[1]}))
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert (headers["Referrer-Policy"], headers["Cross-Origin-Opener-Policy"], headers["Cache-Control"]) == (
        "no-referrer",
        "same-origin",
        "no-store",
    )
    assert (headers["X-Frame-Options"], headers["Cross-Origin-Resource-Policy"]) == ("DENY", "same-origin")
    assert "camera=()" in headers["Permissions-Policy"]
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe-inline" not in policy
    assert b"<script>" not in body and b'<script src="/app.js">' in body  # no inline script at all
    for asset, kind in (("/app.js", "text/javascript"), ("/app.css", "text/css")):
        status, headers, _ = server.request("GET", asset)
        assert status == 200 and headers["Content-Type"].startswith(kind)
    page = json.loads(server.get("/customers")[1])
    customers = page["customers"]
    events: dict[str, int] = {}
    for line in EVENTS.read_bytes().splitlines():
        events[line.split(b",")[0].decode()] = events.get(line.split(b",")[0].decode(), 0) + 1
    assert [(c["customer"], c["events"]) for c in customers] == sorted(events.items(), key=lambda item: -item[1])
    assert (page["order"], page["matching"], page["next"]) == ("events", 7, None)
    assert customers[0]["first"] <= customers[0]["last"]


def test_the_page_without_a_window_opens_on_the_busiest_day(server) -> None:
    status, headers, _ = server.request("GET", "/")
    assert status == 302
    assert headers["Location"] == "/?" + urlencode({"start": "2021-03-01T00:00:00Z", "end": "2021-03-02T00:00:00Z"})
    days = {}
    for line in EVENTS.read_bytes().splitlines():
        moment = line.rsplit(b",", 1)[1][:10].decode()
        days[moment] = days.get(moment, 0) + 1
    assert max(days, key=days.__getitem__) == "2021-03-01"


RECT = re.compile(r"<rect ([^>]*)>")


def rects(dom: str) -> list[dict[str, str]]:
    """Every bar's attributes, in drawing order."""
    return [{k: html.unescape(v) for k, v in re.findall(r'([\w-]+)="([^"]*)"', found)} for found in RECT.findall(dom)]


def text_of(dom: str, element_id: str) -> str:
    return html.unescape(re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom).group(1))


@needs_browser
def test_a_cut_bucket_is_drawn_as_wide_as_the_part_of_it_the_window_holds(server, tmp_path) -> None:
    dom = dump_dom(page_url(server, "2021-03-01T04:20:00Z", "2021-03-01T06:30:00Z"), tmp_path / "profile")
    widths = {}
    for bar in rects(dom):
        widths.setdefault(bar["data-hour"], float(bar["width"]) + 1)  # 1: the gap between columns
    first, whole, last = widths.values()
    assert first / whole == pytest.approx(40 / 60, rel=0.01) and last / whole == pytest.approx(30 / 60, rel=0.01)


@needs_browser
def test_the_window_total_the_axis_and_the_numbers_are_written_with_separators(server, tmp_path) -> None:
    dom = dump_dom(page_url(server, *SEED), tmp_path / "profile")
    assert text_of(dom, "summary") == "2,390 events in this window (total), 4 customers"
    labels = [html.unescape(t) for t in re.findall(r'class="axis value"[^>]*>([^<]*)<', dom)]
    assert labels[0] == "0" and "1,000" in labels and len(labels) >= 3  # gridlines, not a lone maximum
    assert '<td class="n">1,133</td>' in dom


@needs_browser
def test_an_empty_window_says_no_events(server, tmp_path) -> None:
    dom = dump_dom(page_url(server, "2020-01-01T00:00:00Z", "2020-01-01T05:00:00Z"), tmp_path / "profile")
    assert 'data-state="drawn"' in dom and text_of(dom, "summary") == "no events in this window"
    assert not rects(dom)


@needs_browser
def test_a_customer_keeps_its_colour_from_window_to_window(server, tmp_path) -> None:
    """In the seed window b4f9... is drawn after 3033...; from 05:00 it is drawn first: the same colour."""
    colours = {}
    for start, end in [SEED, ("2021-03-01T05:00:00Z", "2021-03-01T06:00:00Z"), ("2021-03-02", "2021-03-03")]:
        for bar in rects(dump_dom(page_url(server, start, end), tmp_path / "profile")):
            colours.setdefault(bar["data-customer"], set()).add(bar["fill"])
    assert len(colours) >= 3 and all(len(fills) == 1 for fills in colours.values())
    assert len({fill for fills in colours.values() for fill in fills}) == len(colours)  # no two alike here


@needs_browser
def test_a_window_of_days_lists_only_buckets_with_events_and_says_how_many_it_left_out(server, tmp_path) -> None:
    dom = dump_dom(page_url(server, "2021-02-27T00:00:00Z", "2021-03-05T00:00:00Z"), tmp_path / "profile")
    listed = set(re.findall(r"<tr><td>([^<]+)</td>", dom))
    assert len(listed) == 72  # events.csv's three days, every hour of them busy
    assert text_of(dom, "left-out") == "72 empty buckets of this window not listed"


@needs_browser
def test_many_customers_draw_the_busiest_apart_and_the_rest_as_one_band(tmp_path) -> None:
    """300 customers over 48 hours: at most 2,000 SVG elements, the busiest drawn, the others as one band whose
    bars add up with them to every hour's total; the table capped."""
    rows = []
    for hour in range(48):
        for who in range(300):
            for _ in range(1 + (who < 5) * 20):  # five busy customers
                rows.append(f"c{who:03d},INGEST,t,2021-03-01T00:00:00Z")
                rows[-1] = rows[-1].replace(
                    "2021-03-01T00:00:00Z", f"2021-03-{1 + hour // 24:02d}T{hour % 24:02d}:30:00Z"
                )
    log = tmp_path / "many.csv"
    log.write_text("\n".join(rows) + "\n")
    running = Server(log, "--quiet", "--workers", "1")
    try:
        dom = dump_dom(page_url(running, "2021-03-01T00:00:00Z", "2021-03-03T00:00:00Z"), tmp_path / "profile")
    finally:
        running.stop()
    assert 'data-state="drawn"' in dom
    assert (
        dom.count("<rect") + dom.count("<text") + dom.count("<line") + dom.count("<g ") + dom.count("<title") <= 2_000
    )
    drawn = rects(dom)
    apart = {bar["data-customer"] for bar in drawn} - {""}
    assert {"c000", "c001", "c002", "c003", "c004"} <= apart and len(apart) <= 10
    totals: dict[str, int] = {}
    for bar in drawn:
        totals[bar["data-hour"]] = totals.get(bar["data-hour"], 0) + int(bar["data-count"])
    assert set(totals.values()) == {5 * 21 + 295}  # every hour whole, "other" included
    assert text_of(dom, "summary").startswith("19,200 events in this window (total), 300 customers: the ")
    assert "of 14,400 table entries shown" in text_of(dom, "left-out")
