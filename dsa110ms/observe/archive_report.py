"""What the archive driver (:mod:`dsa110ms.archive`) tells people: its progress while it runs
(:class:`ArchiveProgress`) and the archive's HTML summary (:func:`write_archive_summary`).

**Progress.** One line a minute on a log file or a pipe::

    1234/100000 groups published, 3 failed, 45.2 groups/h, ETA 3 d 04 h

and, on an interactive terminal, one bar redrawn in place (``\\r``) every 2 s, ended by a
newline when the driver ends::

    [#####.....] 52% 1234/2400 3 failed 45 groups/h ETA 2 h 10 min

Rates are **groups per hour** over the driver's run so far (groups published since it started,
divided by the hours since then); the ETA divides the groups left (neither published nor
failed) by the groups *finished* per hour (published or failed), so failures do not make it
look longer than it is. Durations read ``45 s``, ``12 min``, ``2 h 05 min``, ``3 d 04 h``. No
third-party progress bar (tqdm is not installed, and is not in ``requirements.lock``): the
driver's bar is one line of text, and a terminal's width is :func:`shutil.get_terminal_size`.

**Summary** (``<report_dir>/archive.html``, one standalone page: no script, no external file):
groups per UTC day (the day of the group's id, i.e. of its data) by status; failures (and
skips) by cause, the group-specific parts of their reasons (paths, file names, times, numbers)
replaced by placeholders (:func:`cause_of`) so that equal causes count together, each with its
count and one example; groups published per hour (an inline SVG bar chart, from the ledger's
``at``: the UTC time the ledger recorded the group, which is when its window's run ended, so a
window's groups land in one bar); each window's status with links to its run report
(``<window start>/groups.html``, beside the summary) and its log's path. Every
text from the ledger is escaped (file names may hold any character). It reads the ledger with
two queries and makes one pass over the groups: ~0.4 s for 100,000 groups (half of it the
ledger's query).

Times shown are UTC (``YYYY-MM-DD HH:MM``); the ledger's times are Unix seconds.
"""

from __future__ import annotations

import html
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import quote

from dsa110ms.files import write_text_atomically
from dsa110ms.groups import TIMESTAMP_PATTERN
from dsa110ms.ledger import DONE, EMPTY, Ledger
from dsa110ms.observe.report import GENERATOR

# --- progress ----------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """``seconds`` as people read it: ``45 s``, ``12 min``, ``2 h 05 min``, ``3 d 04 h``
    (rounded to the last unit shown); ``unknown`` if not finite."""
    if not math.isfinite(seconds):
        return "unknown"
    seconds = max(seconds, 0.0)
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 24 * 60:
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(round(seconds / 3600), 24)
    return f"{days} d {hours:02d} h"


def format_rate(groups_per_hour: float, short: bool = False) -> str:
    """A rate in groups/hour: one decimal (``short``: none from 10 groups/h up)."""
    if short and groups_per_hour >= 10:
        return f"{groups_per_hour:.0f} groups/h"
    return f"{groups_per_hour:.1f} groups/h"


def is_interactive(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal a bar can be redrawn on (not a dumb one)."""
    try:
        return stream.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


#: The most cells of the bar (fewer if the terminal is narrow): it keeps its length as the text
#: beside it grows.
BAR_CELLS = 30


@dataclass
class ArchiveProgress:
    """The driver's progress: ``total`` groups the archive has (those published when the driver
    started included), ``published_at_start`` of them published then, ``started`` (the
    ``clock``'s seconds; default: now) the time the rates count from.

    The numbers each method takes: ``published``, groups published now (those published at
    the start included, as the published stamps count them); ``failed``, groups that failed in
    this driver's run; ``now``, the ``clock``'s seconds (default: the clock's now).

    Printing: :meth:`due` says when to print (every ``interval_s`` on a non-interactive
    ``stream``, every ``redraw_s`` on a terminal; the first call is due), :meth:`update` prints
    (the line through ``say``, default a line on ``stream``; or the bar redrawn in place, and
    with ``final`` ended by a newline), :meth:`above` prints another line without breaking the
    bar. ``interactive``: None decides from ``stream`` (:func:`is_interactive`); ``columns``:
    the terminal's width (None: asked at each redraw, so a resized terminal is followed)."""

    total: int
    published_at_start: int = 0
    clock: Callable[[], float] = time.time
    started: float | None = None
    stream: TextIO | None = None
    interactive: bool | None = None
    interval_s: float = 60.0
    redraw_s: float = 2.0
    say: Callable[[str], None] | None = None
    columns: int | None = None
    _last: float | None = field(default=None, init=False, repr=False)
    _drawn: str = field(default="", init=False, repr=False)  # the bar on screen, if any

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = self.clock()
        if self.stream is None:
            self.stream = sys.stdout
        if self.interactive is None:
            self.interactive = is_interactive(self.stream)

    # --- the numbers ---

    def rates(self, published: int, failed: int, now: float | None = None) -> tuple[float, float]:
        """(groups published per hour, groups finished per hour) since :attr:`started`."""
        now = self.clock() if now is None else now
        hours = (now - self.started) / 3600
        if hours <= 0:
            return 0.0, 0.0
        new = max(published - self.published_at_start, 0)
        return new / hours, (new + max(failed, 0)) / hours

    def eta(self, published: int, failed: int, now: float | None = None) -> str:
        """The time left (:func:`format_duration`): ``done`` when no group is left, ``unknown``
        before any group finished."""
        left = max(self.total - published - failed, 0)
        if left == 0:
            return "done"
        finished_per_hour = self.rates(published, failed, now)[1]
        if finished_per_hour <= 0:
            return "unknown"
        return format_duration(left / finished_per_hour * 3600)

    def line(self, published: int, failed: int, now: float | None = None) -> str:
        """``1234/100000 groups published, 3 failed, 45.2 groups/h, ETA 3 d 04 h``."""
        rate = self.rates(published, failed, now)[0]
        return (
            f"{published}/{self.total} groups published, {failed} failed, {format_rate(rate)}, "
            f"ETA {self.eta(published, failed, now)}"
        )

    def bar(
        self, published: int, failed: int, now: float | None = None, width: int | None = None
    ) -> str:
        """``[#####.....] 52% 1234/2400 3 failed 45 groups/h ETA 2 h 10 min``, at most
        ``width`` characters (default: the terminal's width less one, so that it never wraps,
        which ``\\r`` could not redraw); the bar is left out below 10 cells, the text cut."""
        if width is None:
            width = shutil.get_terminal_size((80, 24)).columns - 1
        fraction = min(published / self.total, 1.0) if self.total > 0 else 1.0
        rate = self.rates(published, failed, now)[0]
        text = (
            f" {math.floor(fraction * 100):3d}% {published}/{self.total} {failed} failed "
            f"{format_rate(rate, short=True)} ETA {self.eta(published, failed, now)}"
        )
        cells = min(width - len(text) - 2, BAR_CELLS)
        if cells < 10:
            return text.strip()[: max(width, 0)]
        full = math.floor(fraction * cells)
        return f"[{'#' * full}{'.' * (cells - full)}]{text}"

    # --- printing ---

    def due(self, now: float | None = None) -> bool:
        """Whether :meth:`update` should print now (the driver reads the published stamps only
        then)."""
        now = self.clock() if now is None else now
        every = self.redraw_s if self.interactive else self.interval_s
        return self._last is None or now - self._last >= every

    def update(
        self, published: int, failed: int, now: float | None = None, final: bool = False
    ) -> None:
        """Print the progress: the line, or the bar redrawn (``final``: and ended)."""
        now = self.clock() if now is None else now
        self._last = now
        if not self.interactive:
            self._say(self.line(published, failed, now))
            return
        width = None if self.columns is None else self.columns - 1
        text = self.bar(published, failed, now, width)
        self._write(f"\r{text.ljust(len(self._drawn))}" + ("\n" if final else ""))
        self._drawn = "" if final else text

    def above(self, text: str) -> None:
        """Print ``text`` as a line of its own, the bar (if drawn) redrawn below it."""
        if not self._drawn:
            self._write(f"{text}\n")
            return
        self._write(f"\r{' ' * len(self._drawn)}\r{text}\n{self._drawn}")

    def end(self) -> None:
        """End the bar (if drawn) with a newline, so that what is printed next (an error) starts
        a line of its own; :meth:`update` draws it again."""
        if self._drawn:
            self._write("\n")
            self._drawn = ""

    def _say(self, text: str) -> None:
        if self.say is not None:
            self.say(text)
        else:
            self._write(f"{text}\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


# --- causes ------------------------------------------------------------------------------------

#: Longest cause shown (characters): longer reasons are cut (and count with those equal so far).
CAUSE_CHARS = 400
#: A path: from a ``/`` (not after a word character: ``groups/h`` is not one) to a space or a
#: quote; ``:;,)]`` end it when a space, a quote or the end follows; a space continues it when
#: the next word holds a ``/`` or is an input file's name (a directory or a file with spaces).
_PATH = re.compile(
    r"""(?<![\w<>])(?:~|\.{1,2})?/"""
    r"""(?:[^\s'"`:;,)\]]|[:;,)\]](?=[^\s'"`])| (?=[^\s'"`]*(?:/|_sb[0-9]{2}\.hdf5)))+"""
)
_FILE = re.compile(r"""[^\s'"`/]*_sb[0-9]{2}\.hdf5""")
_TIME = re.compile(rf"{TIMESTAMP_PATTERN}(?:\.[0-9]+)?")
_SUBBAND = re.compile(r"\bsb[0-9]{2}\b")
#: A number, kept after a word saying it is a kind of failure (``signal 9``, ``[Errno 28]``,
#: ``exit 1``), else ``<n>``.
_NUMBER = re.compile(
    r"(?P<kind>(?:\b(?:signal|errno|exit|code|status)\s*=?\s*)?)"
    r"(?<![A-Za-z_0-9.])(?P<n>0x[0-9a-fA-F]+|[-+]?[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?)",
    re.IGNORECASE,
)
#: ``<n>, <n>, <n>`` -> ``<n>, ...``: a list of group-specific items counts as one
_REPEATS = re.compile(r"(<\w+>)(?:, \1)+")
#: Lists of subbands or of files, of one item or more: ``missing sbNN[, ...]``
_LISTS = re.compile(r"(?<!\w)(sbNN|<file>)(?:, \1)*(?!\w)")
_LOGS = re.compile(r"(; logs in |^logs in |^see ).*$")


def cause_of(reason: str) -> str:
    """A reason without what is specific to its group: its log's path (``; logs in ...``,
    ``see ...``), paths, input file names, times, subband numbers and numbers become ``<path>``,
    ``<file>``, ``<time>``, ``sbNN`` and ``<n>``, a list of them ``<n>, ...`` (of subbands or
    files, of one or more: ``sbNN[, ...]``). Best effort: a name with any character cannot
    always be told from the text around it."""
    text = _LOGS.sub(r"\1<log>", reason.strip())
    text = _PATH.sub("<path>", text)
    text = _FILE.sub("<file>", text)
    text = _TIME.sub("<time>", text)
    text = _SUBBAND.sub("sbNN", text)
    text = _NUMBER.sub(lambda m: m[0] if m["kind"] else "<n>", text)
    text = _LISTS.sub(r"\1[, ...]", text)
    text = _REPEATS.sub(r"\1, ...", text)
    return text[:CAUSE_CHARS] or "(no reason recorded)"


@dataclass
class Cause:
    """Groups of one status with one cause: how many, and the first (by id) as the example."""

    count: int
    example_group: str
    example_reason: str


def causes(rows: Iterable[tuple[str, str]]) -> dict[str, Cause]:
    """(group id, reason) pairs -> cause (:func:`cause_of`) -> :class:`Cause`, most common
    first. Each distinct reason is reduced once."""
    seen: dict[str, str] = {}
    found: dict[str, Cause] = {}
    for gid, reason in rows:
        key = seen.get(reason)
        if key is None:
            key = seen[reason] = cause_of(reason)
        if key in found:
            found[key].count += 1
        else:
            found[key] = Cause(1, gid, reason)
    return dict(sorted(found.items(), key=lambda kv: (-kv[1].count, kv[0])))


# --- throughput --------------------------------------------------------------------------------

#: Bin widths of the throughput chart (hours): the first giving at most MAX_BINS bars.
BIN_HOURS = (1, 3, 6, 24, 24 * 7, 24 * 30)
MAX_BINS = 200


def throughput(ats: Iterable[float]) -> tuple[int, float, list[int]]:
    """Groups published per bin of time, from the times (Unix seconds) the ledger recorded them:
    (bin width in hours, the first bin's start in Unix seconds, UTC-aligned, the count in each
    bin, empty bins included); (1, 0.0, []) for no time."""
    hours = [int(at // 3600) for at in ats]
    if not hours:
        return 1, 0.0, []
    first, last = min(hours), max(hours)
    width = next((w for w in BIN_HOURS if (last - first) // w + 1 <= MAX_BINS), BIN_HOURS[-1])
    first -= first % width
    counts = [0] * ((last - first) // width + 1)
    for h in hours:
        counts[(h - first) // width] += 1
    return width, first * 3600.0, counts


def utc(seconds: float | None, with_seconds: bool = False) -> str:
    """Unix seconds -> ``YYYY-MM-DD HH:MM`` UTC (``-`` for None)."""
    if seconds is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M" + (":%S" if with_seconds else ""), time.gmtime(seconds))


def throughput_svg(width_h: int, first_s: float, counts: list[int]) -> str:
    """An inline SVG bar chart of ``counts`` (:func:`throughput`), bars in groups/hour, each
    with its bin's time and numbers as a tooltip (an SVG ``<title>``)."""
    if not counts:
        return "<p>No group published yet.</p>"
    chart_w, chart_h, left, bottom, top = 800, 160, 50, 20, 10
    rates = [c / width_h for c in counts]
    peak = max(rates) or 1.0
    step = (chart_w - left) / len(counts)
    bars = []
    for i, (count, rate) in enumerate(zip(counts, rates, strict=True)):
        if not count:
            continue
        h = rate / peak * (chart_h - bottom - top)
        tip = html.escape(
            f"{utc(first_s + i * width_h * 3600)} UTC, {width_h} h: {count} groups "
            f"({format_rate(rate)})"
        )
        bars.append(
            f'<rect x="{left + i * step:.1f}" y="{chart_h - bottom - h:.1f}" '
            f'width="{max(step - 1, 0.5):.1f}" height="{h:.1f}"><title>{tip}</title></rect>'
        )
    end = first_s + len(counts) * width_h * 3600
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{chart_w}" height="{chart_h}" '
        f'role="img" aria-label="groups published per hour">'
        f'<g fill="#4a7ab5">{"".join(bars)}</g>'
        f'<g font-size="11" fill="#333">'
        f'<text x="{left - 4}" y="{top + 9}" text-anchor="end">{peak:.3g}</text>'
        f'<text x="{left - 4}" y="{chart_h - bottom}" text-anchor="end">0</text>'
        f'<text x="{left}" y="{chart_h - 4}">{utc(first_s)}</text>'
        f'<text x="{chart_w}" y="{chart_h - 4}" text-anchor="end">{utc(end)} UTC</text></g>'
        f'<line x1="{left}" y1="{chart_h - bottom}" x2="{chart_w}" y2="{chart_h - bottom}" '
        f'stroke="#999"/></svg>'
    )


# --- the summary -------------------------------------------------------------------------------

STATUSES = ("published", "skipped", "failed", "not run")
_GROUP_ID = re.compile(TIMESTAMP_PATTERN)


def window_report_href(start: str) -> str:
    """The link from the summary (``<report_dir>/archive/index.html``) to a window's run report
    (``<report_dir>/archive/<window start>/groups.html``); ``./`` first, else the colons of the
    window's time would make its date a URL scheme."""
    return quote(f"./{start}/groups.html", safe="/:")


def _table(head: Iterable[str], rows: Iterable[Iterable[str]], id_: str) -> str:
    """A table; cells are HTML already (the caller escapes)."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{id_}"><thead><tr>{th}</tr></thead><tbody>\n{body}\n</tbody></table>'


def _causes_html(found: dict[str, Cause], what: str, id_: str) -> str:
    if not found:
        return f"<p>No group {what}.</p>"
    rows = (
        (
            str(c.count),
            f"<code>{html.escape(cause)}</code>",
            f"{html.escape(c.example_group)}: {html.escape(c.example_reason)}",
        )
        for cause, c in found.items()
    )
    return _table(("groups", "cause", "example"), rows, id_)


def archive_summary_html(ledger: Ledger, summary_path: Path, now: float | None = None) -> str:
    """The summary page (module docstring) of ``ledger``, to be written at ``summary_path``
    (the windows' run reports are looked for beside it). ``now``: the time it says it was
    written (Unix seconds)."""
    summary_path = Path(summary_path)
    ledger_path = ledger.path.absolute()  # shown: the page may be read from elsewhere
    windows = ledger.windows()
    by_day: dict[str, dict[str, int]] = {}
    by_window: dict[str, dict[str, int]] = {}
    totals = dict.fromkeys(STATUSES, 0)
    failed: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    published_at: list[float] = []
    for gid, window, status, reason, at in ledger.groups():  # one pass
        day = gid[:10] if _GROUP_ID.match(gid) else window[:10]
        counts = by_day.get(day)
        if counts is None:
            counts = by_day[day] = dict.fromkeys(STATUSES, 0)
        counts[status] = counts.get(status, 0) + 1
        w_counts = by_window.get(window)
        if w_counts is None:
            w_counts = by_window[window] = {}
        w_counts[status] = w_counts.get(status, 0) + 1
        totals[status] = totals.get(status, 0) + 1
        if status == "published":
            published_at.append(at)
        elif status == "failed":
            failed.append((gid, reason))
        elif status == "skipped":
            skipped.append((gid, reason))
    extra = [s for s in totals if s not in STATUSES]  # a status this module does not know
    columns = (*STATUSES, *extra)

    n_groups = sum(totals.values())
    title = f"DSA-110 archive: {totals['published']} of {n_groups} groups published"
    w_status: dict[str, int] = {}
    for w in windows:
        w_status[w[3]] = w_status.get(w[3], 0) + 1
    overview = (
        (", ".join(f"{n} {html.escape(s)}" for s, n in totals.items() if n) or "no groups")
        + "; windows: "
        + (", ".join(f"{n} {html.escape(s)}" for s, n in sorted(w_status.items())) or "none")
    )

    day_rows = [
        (html.escape(day), *(str(c.get(s, 0)) for s in columns), str(sum(c.values())))
        for day, c in sorted(by_day.items())
    ]
    day_rows.append(("<b>all</b>", *(f"<b>{totals[s]}</b>" for s in columns), f"<b>{n_groups}</b>"))
    days = _table(("UTC day", *columns, "groups"), day_rows, "days")

    width_h, first_s, counts = throughput(published_at)
    rate_note = ""
    if counts:
        span_h = len(counts) * width_h
        rate_note = (
            f"<p>Bars of {width_h} h; peak {format_rate(max(counts) / width_h)}, "
            f"{format_rate(sum(counts) / span_h)} over the {span_h} h shown. A group counts "
            "when the ledger recorded it: when its window's run ended.</p>"
        )

    window_rows = []
    for start, end, names, status, started_at, finished_at, detail in windows:
        report = summary_path.parent / start / "groups.html"
        link = (
            f'<a href="{html.escape(window_report_href(start))}">run report</a>'
            if report.is_file()
            else "-"
        )
        took = (
            format_duration(finished_at - started_at)
            if started_at is not None and finished_at is not None and status != EMPTY
            else "-"
        )
        log = ledger_path.with_name(f"{start}.log")  # the driver's <log_dir>/archive/<start>.log
        w_counts = by_window.get(start, {})
        groups_text = ", ".join(f"{n} {s}" for s, n in w_counts.items() if n) or "-"
        cls = "" if status in (DONE, EMPTY) else ' class="attention"'
        window_rows.append(
            (
                html.escape(start),
                html.escape(end),
                f"<span{cls}>{html.escape(status)}</span>",
                html.escape(groups_text),
                str(names),
                utc(started_at),
                took,
                html.escape(detail or ""),
                link,
                "-" if status == EMPTY else f"<code>{html.escape(str(log))}</code>",
            )
        )
    window_table = _table(
        (
            "window start (UTC)",
            "end",
            "status",
            "groups now",
            "input files",
            "started (UTC)",
            "took",
            "its last run",
            "report",
            "log",
        ),
        window_rows,
        "windows",
    )
    written = utc(time.time() if now is None else now, with_seconds=True)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8">{GENERATOR}<title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; font-size: 13px; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ border: 1px solid #bbb; padding: 3px 8px; text-align: right; white-space: nowrap; }}
th {{ background: #eee; }} td:first-child {{ text-align: left; }}
#failures td, #skips td, #windows td {{ text-align: left; white-space: normal; }}
#failures td:first-child, #skips td:first-child {{ text-align: right; }}
code {{ word-break: break-all; }} .attention {{ color: #b00; font-weight: bold; }}
</style></head><body>
<h2>{html.escape(title)}</h2>
<p>{overview}. Written {written} UTC from the ledger
<code>{html.escape(str(ledger_path))}</code>.</p>
<h3>Groups per UTC day (of the data)</h3>
{days}
<h3>Failures by cause</h3>
<p>Paths, file names, times and numbers of each reason are replaced by placeholders, so that
equal causes count together; <code>--retry-failed</code> runs the failed groups again.</p>
{_causes_html(causes(failed), "failed", "failures")}
<h3>Skipped by cause</h3>
{_causes_html(causes(skipped), "skipped", "skips")}
<h3>Groups published per hour</h3>
{throughput_svg(width_h, first_s, counts)}
{rate_note}
<h3>Windows</h3>
{window_table}
</body></html>
"""


def write_archive_summary(ledger: Ledger, path: Path) -> Path:
    """Write the archive's summary page (module docstring) of ``ledger`` to ``path`` (the
    driver's ``<report_dir>/archive.html``), atomically (a reader sees the old page or the new);
    ``path``."""
    path = Path(path)
    write_text_atomically(path, archive_summary_html(ledger, path))
    return path
