"""The archive driver's progress line and bar, and the archive's HTML summary, on a temporary
ledger filled through the ledger's own methods (no Snakemake run)."""

from __future__ import annotations

import datetime as dt
import io
import re
import time
import xml.etree.ElementTree as ET

import pytest

from dsa110ms.batch import Outcome
from dsa110ms.ledger import DONE, UNFINISHED, Ledger, Window
from dsa110ms.observe.archive_report import (
    ArchiveProgress,
    cause_of,
    causes,
    format_duration,
    throughput,
    write_archive_summary,
)

T0 = 1_700_000_000.0  # the driver's start, Unix seconds
HOUR = 3600.0


def progress(total=100_000, at_start=1000, **kw) -> ArchiveProgress:
    return ArchiveProgress(total, at_start, clock=lambda: T0, **kw)


# --- progress ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (45.2, "45 s"),
        (59.6, "1 min"),
        (12 * 60 + 10, "12 min"),
        (3599.7, "1 h 00 min"),
        (2 * HOUR + 10 * 60, "2 h 10 min"),
        (2 * HOUR + 5 * 60, "2 h 05 min"),
        (86399, "1 d 00 h"),
        (3 * 86400 + 4 * HOUR, "3 d 04 h"),
        (float("inf"), "unknown"),
    ],
)
def test_durations_read_as_people_say_them(seconds, text):
    assert format_duration(seconds) == text


def test_the_line_gives_rate_over_the_run_and_eta():
    p = progress(total=100_000, at_start=1000)
    # 2 hours in: 90.4 groups published, 4 failed -> 45.2 groups/h published, 47.2 finished
    line = p.line(1000 + 90, 4, now=T0 + 2 * HOUR)
    assert line.startswith("1090/100000 groups published, 4 failed, 45.0 groups/h, ETA ")
    left = 100_000 - 1090 - 4
    hours = left / (94 / 2)  # groups finished (published or failed) per hour
    assert line.endswith(f"ETA {format_duration(hours * HOUR)}")
    assert re.fullmatch(r".*ETA \d+ d \d\d h", line)


def test_the_line_with_nothing_published_yet_has_no_eta():
    p = progress(total=500, at_start=0)
    assert p.line(0, 0, now=T0) == "0/500 groups published, 0 failed, 0.0 groups/h, ETA unknown"
    assert p.line(0, 0, now=T0 + 600).endswith("0.0 groups/h, ETA unknown")
    # groups published before the driver started do not count in its rate
    q = progress(total=500, at_start=300)
    assert q.line(300, 0, now=T0 + HOUR).endswith("0.0 groups/h, ETA unknown")
    # nothing left to do
    assert q.line(480, 20, now=T0 + HOUR).endswith("180.0 groups/h, ETA done")


def test_the_eta_counts_failures_as_finished():
    p = progress(total=400, at_start=0)
    # 1 hour: 100 published, 100 failed: 200 finished/h; 200 left -> 1 h, not 2
    assert p.eta(100, 100, now=T0 + HOUR) == "1 h 00 min"


def test_the_bar_fits_its_width_and_reads_right():
    p = progress(total=2400, at_start=0)
    bar = p.bar(1248, 3, now=T0 + 24 * HOUR + 40 * 60, width=80)  # 1248 in 24.67 h: 50.6/h
    assert len(bar) <= 80
    m = re.fullmatch(r"\[(#*)(\.*)\]  52% 1248/2400 3 failed 51 groups/h ETA (.*)", bar)
    assert m, bar
    cells = len(m[1]) + len(m[2])
    assert len(m[1]) == int(0.52 * cells)
    assert m[3] == format_duration((2400 - 1251) / (1251 / (24 + 40 / 60)) * HOUR)
    # a narrow terminal: the bar goes, the text is cut, never wrapped
    assert len(p.bar(1248, 3, now=T0 + HOUR, width=30)) <= 30
    assert not p.bar(1248, 3, now=T0 + HOUR, width=30).startswith("[")
    # slow: one decimal; none published: ETA unknown; the start: an empty bar
    assert "2.5 groups/h" in p.bar(5, 0, now=T0 + 2 * HOUR, width=100)
    start = p.bar(0, 0, now=T0, width=60)
    assert start.startswith("[....") and "  0% 0/2400 0 failed 0.0 groups/h ETA unknown" in start
    assert p.bar(2400, 0, now=T0 + HOUR, width=60).startswith("[" + "#" * 10)


def test_a_log_gets_a_line_a_minute():
    out = io.StringIO()
    p = progress(total=10, at_start=0, stream=out, interactive=False, interval_s=60)
    assert p.due(T0)  # the first is due at once
    p.update(0, 0, now=T0)
    assert not p.due(T0 + 59) and p.due(T0 + 60)
    p.update(5, 1, now=T0 + 60)
    p.above("window 2026-01-01T00:00:00: 5 published")
    lines = out.getvalue().splitlines()
    assert lines[0] == "0/10 groups published, 0 failed, 0.0 groups/h, ETA unknown"
    assert lines[1].startswith("5/10 groups published, 1 failed, 300.0 groups/h, ETA 40 s")
    assert lines[2] == "window 2026-01-01T00:00:00: 5 published"
    assert "\r" not in out.getvalue()
    said = []
    q = progress(total=10, at_start=0, stream=out, interactive=False, say=said.append)
    q.update(1, 0, now=T0 + 60)
    assert said == ["1/10 groups published, 0 failed, 60.0 groups/h, ETA 9 min"]


def test_a_terminal_gets_a_bar_redrawn_in_place():
    out = io.StringIO()
    p = progress(total=10, at_start=0, stream=out, interactive=True, redraw_s=2, columns=60)
    p.update(0, 0, now=T0)
    assert not p.due(T0 + 1) and p.due(T0 + 2)
    p.update(5, 0, now=T0 + 60)
    p.above("a line")
    p.update(10, 0, now=T0 + 120, final=True)
    text = out.getvalue()
    assert text.startswith("\r[") and text.endswith("\n") and text.count("\n") == 2
    frames = text.split("\r")
    assert all(len(line) <= 59 for f in frames for line in f.split("\n"))  # never wraps
    assert frames[3] == " " * len(frames[2])  # the bar cleared,
    assert frames[4].startswith("a line\n[#")  # the line printed, the bar redrawn below it
    assert frames[4].split("\n")[1] == frames[2]
    assert "100% 10/10" in frames[-1]
    p.above("after the end")  # the bar is ended: a plain line
    assert out.getvalue().endswith("\nafter the end\n")
    p.end()  # nothing drawn: nothing to end
    assert out.getvalue().endswith("\nafter the end\n")
    p.update(10, 0, now=T0 + 130)
    p.end()  # an error is coming: the bar is left on a line of its own
    assert out.getvalue().endswith("ETA done\n")


def test_a_stringio_is_not_a_terminal():
    assert not ArchiveProgress(5, stream=io.StringIO()).interactive


# --- causes ------------------------------------------------------------------------------------


def test_equal_causes_count_together():
    reasons = [
        (
            "2026-01-01T00:00:00",
            "part of /data/2026-01-01T00:00:00_sb03.hdf5: OSError: Unable to open file "
            "(truncated file: eof = 123, stored_eof = 456); logs in /logs/2026-01-01T00:00:00",
        ),
        (
            "2026-01-02T00:05:00",
            "part of /data/in put/2026-01-02T00:05:00_sb11.hdf5: OSError: Unable to open file "
            "(truncated file: eof = 9, stored_eof = 45600); logs in /logs/2026-01-02T00:05:00",
        ),
        (
            "2026-01-03T00:00:00",
            "join: [Errno 28] No space left on device: '/scratch/a/2026-01-03T00:00:00.ms'; "
            "logs in /logs/2026-01-03T00:00:00",
        ),
        (
            "2026-01-04T00:00:00",
            "join: [Errno 28] No space left on device: '/scratch/b/2026-01-04T00:00:00.ms'; "
            "logs in /logs/2026-01-04T00:00:00",
        ),
        ("2026-01-05T00:00:00", "template: killed by signal 9 after 12.5 s; logs in /l"),
        ("2026-01-06T00:00:00", "template: killed by signal 11 after 3 s; logs in /l"),
    ]
    found = causes(reasons)
    assert [c.count for c in found.values()] == [2, 2, 1, 1]
    truncated = next(k for k in found if "truncated" in k)
    assert truncated == (
        "part of <path>: OSError: Unable to open file (truncated file: eof = <n>, "
        "stored_eof = <n>); logs in <log>"
    )
    assert found[truncated].example_group == "2026-01-01T00:00:00"  # the first, as the example
    assert found[truncated].example_reason == reasons[0][1]
    # the kind of failure is kept: another signal, another cause
    assert "template: killed by signal 9 after <n> s; logs in <log>" in found
    assert "template: killed by signal 11 after <n> s; logs in <log>" in found


def test_lists_of_subbands_and_files_count_as_one():
    a = cause_of("group 2026-01-01T00:00:00: skipped, incomplete (missing sb03, sb07); policy x")
    b = cause_of("group 2026-01-02T00:00:00: skipped, incomplete (missing sb12); policy x")
    assert a == b == "group <time>: skipped, incomplete (missing sbNN[, ...]); policy x"
    c = cause_of("part: bad; also failed: 2026-01-01T00:00:00_sb01.hdf5 (see their logs)")
    d = cause_of(
        "part: bad; also failed: 2026-01-01T00:00:00_sb01.hdf5, 2026-01-01T00:00:00_sb02.hdf5 "
        "(see their logs)"
    )
    assert c == d == "part: bad; also failed: <file>[, ...] (see their logs)"
    assert cause_of("see /logs/archive/2026-01-01T00:00:00.log") == "see <log>"
    assert cause_of("logs in /logs/2026-01-01T00:00:00") == "logs in <log>"
    assert cause_of("") == "(no reason recorded)"


# --- the summary -------------------------------------------------------------------------------


def window(day: str) -> Window:
    return Window(f"{day}T00:00:00", f"{day}T23:59:59")


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / "logs" / "archive" / "ledger.sqlite")
    yield led
    led.close()


HOSTILE = "/data/<script>alert(1)</script>&_sb03.hdf5"
#: Quotes end a path in a reason (they quote it): such a name counts as a cause of its own.
QUOTED = "/data/<script>alert('x')</script>&\"_sb04.hdf5"


def fill(led: Ledger) -> None:
    """Two days with groups, one empty day, one window stopped before the end."""
    w1, w2, w3, w4 = (window(d) for d in ("2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"))
    led.window_started(w1, (64, ""))
    led.record_groups(
        w1,
        {
            "2026-01-01T00:00:00": Outcome("published"),
            "2026-01-01T00:05:00": Outcome("published"),
            "2026-01-01T00:10:00": Outcome(
                "failed", f"part of {HOSTILE}: OSError: bad; logs in /l"
            ),
            "2026-01-01T00:15:00": Outcome(
                "skipped", "group 2026-01-01T00:15:00: skipped, incomplete (missing sb03)"
            ),
        },
    )
    led.window_finished(w1, DONE, "2 published, 1 failed, 1 skipped")
    led.window_started(w2, (32, ""))
    led.record_groups(
        w2,
        {
            "2026-01-02T00:00:00": Outcome("published"),
            "2026-01-02T00:05:00": Outcome(
                "failed", "part of /data/2026-01-02T00:05:00_sb00.hdf5: OSError: bad; logs in /l"
            ),
            "2026-01-02T00:10:00": Outcome("not run", "see /logs/archive/2026-01-02T00:00:00.log"),
        },
    )
    led.window_finished(w2, UNFINISHED, "1 published, 1 failed, 1 not run")
    led.record_empty(w3)
    led.window_started(w4, (16, ""))  # running, or the driver was killed


def test_the_summary_counts_days_causes_and_windows(tmp_path, ledger):
    fill(ledger)
    summary = tmp_path / "report" / "archive" / "index.html"
    (summary.parent / "2026-01-01T00:00:00").mkdir(parents=True)
    (summary.parent / "2026-01-01T00:00:00" / "groups.html").write_text("x")
    assert write_archive_summary(ledger, summary) == summary
    page = summary.read_text()
    assert not list(summary.parent.glob(".*")), "the staging file is left"
    assert "<title>DSA-110 archive: 3 of 7 groups published</title>" in page

    days = re.search(r'<table id="days">(.*?)</table>', page, re.S)[1]
    rows = re.findall(r"<tr><td>(.*?)</td></tr>", days)
    cells = [r.split("</td><td>") for r in rows]
    assert "<th>UTC day</th><th>published</th><th>skipped</th><th>failed</th><th>not run" in days
    assert ["2026-01-01", "2", "1", "1", "0", "4"] in cells
    assert ["2026-01-02", "1", "0", "1", "1", "3"] in cells
    assert cells[-1] == ["<b>all</b>", "<b>3</b>", "<b>1</b>", "<b>2</b>", "<b>1</b>", "<b>7</b>"]

    failures = re.search(r'<table id="failures">(.*?)</table>', page, re.S)[1]
    assert failures.count("<tr><td>") == 1  # both failures: one cause
    assert "<tr><td>2</td><td><code>part of &lt;path&gt;: OSError: bad; logs in" in failures

    windows = re.search(r'<table id="windows">(.*?)</table>', page, re.S)[1]
    assert windows.count("<tr><td>") == 4
    assert '<a href="./2026-01-01T00:00:00/groups.html">run report</a>' in windows
    assert windows.count("run report</a>") == 1  # the others have none (yet)
    log = ledger.path.parent / "2026-01-02T00:00:00.log"
    assert f"<code>{log}</code>" in windows
    for status in ("done", "empty", "unfinished"):
        assert f">{status}</span>" in windows
    assert "no input files" in windows and "1 published, 1 failed, 1 not run" in windows
    ET.fromstring(re.search(r"<svg.*?</svg>", page, re.S)[0])  # well formed
    assert "<svg" in page and "<script" not in page.lower().replace("&lt;script", "")


def test_a_hostile_file_name_is_escaped(tmp_path, ledger):
    fill(ledger)
    w = window("2026-01-05")
    ledger.window_started(w, (16, ""))
    ledger.record_groups(w, {"2026-01-05T00:00:00": Outcome("failed", f"part of {QUOTED}: x")})
    ledger.window_finished(w, DONE, f"<b>{QUOTED}</b>")
    page = write_archive_summary(ledger, tmp_path / "archive.html").read_text()
    assert "<script" not in page.lower()
    assert "/data/&lt;script&gt;alert(1)&lt;/script&gt;&amp;_sb03.hdf5" in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;_sb04.hdf5" in page
    assert "&lt;b&gt;/data/&lt;script&gt;" in page  # the window's detail
    # what remains of tags is only ours
    tags = set(re.findall(r"</?([a-zA-Z][a-zA-Z0-9]*)", page))
    ours = "html head meta title style body h2 h3 p code table thead tbody tr th td b span a"
    assert tags <= {*ours.split(" "), "svg", "g", "rect", "text", "line"}, tags


def test_throughput_bins():
    assert throughput([]) == (1, 0.0, [])
    t = 1_767_225_600.0  # 2026-01-01T00:00:00 UTC
    width, first, counts = throughput([t + 10, t + 20, t + 2 * HOUR + 5, t + 2 * HOUR + 7])
    assert (width, first, counts) == (1, t, [2, 0, 2])
    # a year of runs: wider bins, never more than 200 of them
    width, first, counts = throughput([t, t + 365 * 86400])
    assert width == 24 * 7 and len(counts) <= 200 and sum(counts) == 2
    assert first <= t and first % (width * HOUR) == 0


def test_an_empty_ledger_has_a_summary(tmp_path, ledger):
    page = write_archive_summary(ledger, tmp_path / "archive.html").read_text()
    assert "0 of 0 groups published" in page and "No group published yet" in page
    assert "No group failed" in page


def test_a_summary_of_100k_groups_is_fast(tmp_path, ledger):
    """100,000 groups of 5 min (347 daily windows), 1 % failed with one of 3 causes and
    file names in them, 0.5 % skipped: the time is printed, not asserted."""
    t = dt.datetime(2025, 1, 1)
    by_window: dict[str, dict] = {}
    for i in range(100_000):
        gid = (t + dt.timedelta(minutes=5 * i)).isoformat(timespec="seconds")
        day = gid[:10]
        if i % 100 == 7:
            kind = ("OSError: truncated file: eof = {}", "killed by signal 9", "bad uvw {}")[i % 3]
            o = Outcome(
                "failed",
                f"part of /data/{gid}_sb{i % 16:02d}.hdf5: {kind.format(i)}; logs in /l/{gid}",
            )
        elif i % 200 == 3:
            o = Outcome("skipped", f"group {gid}: skipped, incomplete (missing sb{i % 16:02d})")
        else:
            o = Outcome("published")
        by_window.setdefault(day, {})[gid] = o
    ledger.db.execute("PRAGMA synchronous = OFF")  # only to fill it faster
    started = time.perf_counter()
    for day, outcomes in by_window.items():
        ledger.window_started(window(day), (16 * len(outcomes), ""))
        ledger.record_groups(window(day), outcomes)
        ledger.window_finished(window(day), DONE, f"{len(outcomes)} groups")
    filled = time.perf_counter() - started

    started = time.perf_counter()
    page = write_archive_summary(ledger, tmp_path / "archive.html").read_text()
    took = time.perf_counter() - started
    print(
        f"\nsummary of 100,000 groups in {len(by_window)} windows: {took:.2f} s, "
        f"{len(page) / 1e3:.0f} kB (ledger filled in {filled:.1f} s)"
    )
    failures = re.search(r'<table id="failures">(.*?)</table>', page, re.S)[1]
    assert failures.count("<tr><td>") == 3
    assert "<title>DSA-110 archive: 98500 of 100000 groups published</title>" in page
