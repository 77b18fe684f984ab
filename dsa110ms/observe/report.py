"""The run report: a per-group table (HTML) and one quick-look figure per group (PNG), made by
rule ``run_report`` from the groups' records and the run's metrics, and shown by
``snakemake --report``.

A group's record (``<metrics_dir>/groups/<group>.json``) is written by its concat job when the
MS is published (:func:`write_group_record`), with its job facts from this run's events
(conversion time, concat attempts, cleanup), so the report never reads the event history.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from dsa110ms.errors import OutputError
from dsa110ms.files import write_text_atomically
from dsa110ms.groups import FILE_PATTERN, N_SUBBANDS, TIMESTAMP_PATTERN
from dsa110ms.ms.part import open_part
from dsa110ms.ms.publish import OutputArea, is_published
from dsa110ms.ms.validate import MsSummary
from dsa110ms.observe import metrics
from dsa110ms.observe.quicklook import group_quicklook
from dsa110ms.owned import make_owned_dir, owned_kind, remove_owned

#: MJD seconds of the Unix epoch (the MS TIME column counts from MJD 0).
UNIX_EPOCH_MJD_S = 40587 * 86400.0


def records_dir(metrics_dir: str | os.PathLike) -> Path:
    return Path(metrics_dir) / "groups"


def write_group_record(metrics_dir: str | os.PathLike, group: str, record: Mapping) -> Path:
    """Write ``record`` as the group's record, atomically (rename)."""
    path = records_dir(metrics_dir) / f"{group}.json"
    write_text_atomically(path, json.dumps(record))
    return path


def figure_record(
    group: str, summary: MsSummary, parts: Sequence[str], sources: Mapping[str, str]
) -> dict:
    """What a group's figure shows (:func:`plot_group`): its subbands and the quick-look
    statistics its parts computed; ``summary``: of the joined MS, or of the group's template,
    which has the same integrations (so the figure can be drawn while the MS is written)."""
    looks, freqs = {}, {}
    for part_path in parts:
        part = open_part(part_path)
        subband = int(FILE_PATTERN.match(os.path.basename(sources[part_path]))["subband"])
        looks[subband] = part.manifest["quicklook"]
        freqs[subband] = part.array("CHAN_FREQ").tolist()
    n_times = summary.n_times
    step = (summary.time_max - summary.time_min) / max(n_times - 1, 1)
    times = [summary.time_min + i * step for i in range(n_times)]
    return {
        "group": group,
        "subbands": sorted(looks),
        "quicklook": group_quicklook(looks, freqs, times),
    }


def group_record(
    group: str,
    summary: MsSummary,
    parts: Sequence[str],
    sources: Mapping[str, str],
    ms_path: str | os.PathLike,
) -> dict:
    """What the report shows of a published group: its files and subbands, the MS's shape
    (``summary``, from validation) and the quick-look statistics its parts computed."""
    figure = figure_record(group, summary, parts, sources)
    all_freqs = [f for spw in summary.spw_freqs for f in spw]
    return {
        **figure,
        "files": sorted(os.path.basename(f) for f in sources.values()),
        "missing_subbands": sorted(set(range(N_SUBBANDS)) - set(figure["subbands"])),
        "rows": summary.nrows,
        "spws": summary.n_spws,
        "fields": len(summary.field_names),
        "time_start_mjd_s": summary.time_min,
        "time_end_mjd_s": summary.time_max,
        "freq_min_hz": float(min(all_freqs)),
        "freq_max_hz": float(max(all_freqs)),
        "bytes": metrics.du_bytes(ms_path),
    }


def figure_path(metrics_dir: str | os.PathLike, group: str) -> Path:
    """A group's figure, drawn once, beside its record."""
    return records_dir(metrics_dir) / f"{group}.png"


def read_group_record(metrics_dir: str | os.PathLike, group: str) -> dict | None:
    path = records_dir(metrics_dir) / f"{group}.json"
    return json.loads(path.read_text()) if path.exists() else None


def utc(mjd_s: float) -> str:
    """MJD seconds -> ``YYYY-MM-DD HH:MM:SS`` UTC."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(mjd_s - UNIX_EPOCH_MJD_S))


COLUMNS = (
    ("group", "group"),
    ("files", "files"),
    ("subbands", "subbands"),
    ("rows", "rows"),
    ("spws", "SPWs"),
    ("fields", "fields"),
    ("time_range", "time range (UTC)"),
    ("freq_range", "frequency (MHz)"),
    ("size_mb", "MS size (MB)"),
    ("conversion_s", "conversion (s)"),
    ("concat_attempts", "concat attempts"),
    ("cleanup", "scratch"),
    ("status", "status"),
)


def table_row(record: Mapping, facts: Mapping) -> dict:
    """One row of the per-group table."""
    missing = record["missing_subbands"]
    return {
        "group": record["group"],
        "files": len(record["files"]),
        "subbands": f"{len(record['subbands'])}/{N_SUBBANDS}"
        + (f" (missing {', '.join(f'sb{s:02d}' for s in missing)})" if missing else ""),
        "rows": record["rows"],
        "spws": record["spws"],
        "fields": record["fields"],
        "time_range": f"{utc(record['time_start_mjd_s'])} - {utc(record['time_end_mjd_s'])[11:]}",
        "freq_range": f"{record['freq_min_hz'] / 1e6:.3f} - {record['freq_max_hz'] / 1e6:.3f}",
        "size_mb": round(record["bytes"] / 1e6, 1),
        **facts,
    }


TIMESTAMP_RE = re.compile(TIMESTAMP_PATTERN)
#: In every table this workflow writes: a groups.html without it is not ours to replace.
GENERATOR = '<meta name="generator" content="dsa110ms">'
TITLE_PREFIX = "DSA-110 conversion: "  # what tables written before GENERATOR existed start with


def check_report_dir(report_dir: str | os.PathLike) -> None:
    """Snakemake replaces ``groups.html`` and empties ``plots/`` of ``report_dir`` before every
    report job (they are the rule's declared outputs): refuse a report_dir holding anything
    this workflow did not write there, rather than let Snakemake remove it."""
    d = Path(report_dir)
    if not os.path.lexists(d):
        return
    strangers = [] if d.is_dir() and not d.is_symlink() else [d]
    for entry in d.iterdir() if not strangers else ():
        if entry.name == "groups.html":
            head = entry.read_bytes()[:2000].decode(errors="replace") if entry.is_file() else ""
            if GENERATOR not in head and f"<title>{TITLE_PREFIX}" not in head:
                strangers.append(entry)
        elif entry.name == REPORT_STAGING and owned_kind(entry) == REPORT_STAGING_KIND:
            continue
        elif entry.name == "archive" and entry.is_dir() and not entry.is_symlink():
            continue  # the archive driver's reports (dsa110ms.archive): not touched by this run
        elif entry.name == "plots" and entry.is_dir() and not entry.is_symlink():
            strangers += [
                p
                for p in entry.iterdir()
                if p.name != ".snakemake_timestamp"
                and not (p.suffix == ".png" and TIMESTAMP_RE.fullmatch(p.stem))
            ]
        else:
            strangers.append(entry)
    if strangers:
        raise OutputError(
            f"report_dir {d}: holds {strangers[0]}, which this workflow did not write; the "
            "report replaces groups.html and empties plots/ there: choose a new or empty "
            "report_dir"
        )


def table_html(rows: list[dict], title: str) -> str:
    """The per-group table as a standalone HTML page."""
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in COLUMNS)
    body = "\n".join(
        "<tr>"
        + "".join(f"<td>{html.escape(str(r.get(key, '')))}</td>" for key, _ in COLUMNS)
        + "</tr>"
        for r in rows
    )
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8">{GENERATOR}<title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; font-size: 13px; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #bbb; padding: 3px 8px; text-align: right; white-space: nowrap; }}
th {{ background: #eee; }} td:first-child, td:last-child {{ text-align: left; }}
</style></head><body>
<h2>{html.escape(title)}</h2>
<table id="groups"><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table></body></html>
"""


def plot_group(record: Mapping, path: str | os.PathLike) -> None:
    """The group's quick-look figure (:func:`group_figure`) as a PNG at ``path``."""
    fig = group_figure(record)
    fig.savefig(path, dpi=90, bbox_inches="tight")  # long tick labels (large |V|) kept whole


def group_figure(record: Mapping):
    """The group's quick-look figure: mean amplitude vs frequency (a missing or bad subband
    shows as a gap or step), mean amplitude vs time, flagged fraction per subband."""
    # No pyplot (its import and figure manager, ~0.1 s of each group's join) and margins fixed
    # in inches for this one layout, not tight_layout's measuring of every label (~0.1 s).
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    look = record["quicklook"]
    fig = Figure(figsize=(15, 3.6))
    FigureCanvasAgg(fig)
    ax_f, ax_t, ax_flag = fig.subplots(1, 3, gridspec_kw={"width_ratios": [3, 1.4, 1.4]})
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.15, top=0.8, wspace=0.3)
    freq = np.array(look["chan_freq_hz"]) / 1e6
    amp = np.array([np.nan if a is None else a for a in look["amp_per_channel"]])
    if len(freq) > 1:  # break the line where channels are missing (a missing subband)
        step = np.median(np.diff(freq))
        gaps = np.flatnonzero(np.diff(freq) > 1.5 * step)
        freq = np.insert(freq, gaps + 1, np.nan)
        amp = np.insert(amp, gaps + 1, np.nan)
    ax_f.plot(freq, amp, lw=0.8)
    ax_f.set(xlabel="frequency (MHz)", ylabel="mean |V| (cross-corr.)", title="amplitude")
    t0 = look["time_mjd_s"][0] if look["time_mjd_s"] else 0.0
    minutes = (np.array(look["time_mjd_s"]) - t0) / 60
    amp_t = np.array([np.nan if a is None else a for a in look["amp_per_time"]])
    ax_t.plot(minutes, amp_t, "o-", ms=3)
    ax_t.set(xlabel=f"minutes after {utc(t0)[11:]} UTC", title="amplitude vs time")
    if len(minutes) == 1:  # one integration: no ticks before it
        ax_t.set_xticks([0.0])
    for ax, values in ((ax_f, amp), (ax_t, amp_t)):
        if np.isnan(values).all():
            ax.text(0.5, 0.5, "everything flagged", ha="center", transform=ax.transAxes)
    labels = list(look["flagged_fraction"])
    ax_flag.bar(range(len(labels)), list(look["flagged_fraction"].values()))
    ax_flag.set_xticks(range(len(labels)), [s[2:] for s in labels], fontsize=7)
    ax_flag.set(xlabel="subband", ylim=(0, 1), title="fraction flagged")
    if not any(look["flagged_fraction"].values()):
        ax_flag.text(0.5, 0.5, "nothing flagged", ha="center", transform=ax_flag.transAxes)
    for ax in (ax_f, ax_t):
        ax.ticklabel_format(axis="y", useOffset=False)
    n_subbands = len(record["subbands"])
    fig.suptitle(f"{record['group']}  ({n_subbands} subband{'' if n_subbands == 1 else 's'})")
    return fig


#: The marked directory (:func:`dsa110ms.owned.make_owned_dir`) in ``report_dir`` where the
#: report stages a figure before renaming it into ``plots/``: every temporary name the report
#: writes is in it, so each can be removed through :func:`dsa110ms.owned.remove_owned`.
REPORT_STAGING = ".dsa110ms-report-staging"
REPORT_STAGING_KIND = "staging of the run report"


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` becomes ``source``'s content, replaced in one rename (nothing removed).

    Nothing is done when ``target`` already is ``source`` (a hard link to the same file, made by
    an earlier report): renaming a link onto another link of the same inode does nothing in
    POSIX and would leave the staging name behind. The staging name lies in the report's marked
    staging directory and is removed on every path (a failed copy, a rename that did nothing)."""
    if os.path.lexists(target) and os.path.samefile(source, target):
        return
    staging_dir = make_owned_dir(target.parent.parent / REPORT_STAGING, REPORT_STAGING_KIND)
    staging = staging_dir / f"{target.name}.{os.getpid()}"
    try:
        remove_owned(staging, staging_dir.parent)  # left by a report killed mid-way
        try:
            os.link(source, staging)
        except OSError:  # another file system: copy
            shutil.copyfile(source, staging)
        os.replace(staging, target)
    finally:
        remove_owned(staging, staging_dir.parent)


def make_report(
    groups: Iterable[str],
    *,
    metrics_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    events: Sequence[Mapping],
    scratch_instance: str,
    table_path: str | os.PathLike,
    plots_dir: str | os.PathLike,
) -> list[dict]:
    """Write the per-group table and each group's figure; the table's rows. A group's job facts
    come from its record (written when it was published), or else from ``events`` (the run's:
    why a group failed)."""
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    area = OutputArea.of(output_dir)
    published_ms = functools.cache(area.published_ms_by_time)
    for group in groups:
        record = read_group_record(metrics_dir, group)
        facts = (record or {}).get("facts") or metrics.group_facts(events, group, scratch_instance)
        if record is None:
            if is_published(area.final_ms(group)):  # before records existed
                rows.append({"group": group, **facts, "status": "published"})
            elif legacy := area.legacy_ms(group, published_ms):  # an earlier version's name
                rows.append({"group": group, **facts, "status": f"published as {legacy.name}"})
            else:
                reason = facts["error"] or "not converted (see the run's log)"
                rows.append({"group": group, **facts, "status": f"FAILED: {reason}"})
            continue
        rows.append({**table_row(record, facts), "status": "published"})
        # Snakemake empties plots_dir before every report job: figures are drawn once per
        # group, beside its record, by its concat job while it writes the MS, and linked in
        figure = figure_path(metrics_dir, group)
        if not figure.exists():  # the concat job's drawing failed, or a record before them
            plot_group(record, figure)
        link_or_copy(figure, plots_dir / f"{group}.png")
    published = sum(r["status"].startswith("published") for r in rows)
    title = f"{TITLE_PREFIX}{published} of {len(rows)} groups published"
    Path(table_path).write_text(table_html(rows, title))
    return rows
