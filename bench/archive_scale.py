"""Issue 21's archive-scale figures, for archives of placeholder files of each size, in one
invocation:

    .venv/bin/python -m bench.archive_scale                     # 2,000, 20,000, 100,000 groups
    .venv/bin/python -m bench.archive_scale --groups 2000 20000 --year-windows 10

For each archive (``bench.planning``: 16 empty files a group, one group every 309 s from
2026-01-01; made once in ``bench/cache/placeholders-<N>``; 100,000 groups are 1.6 M files over
358 days):

1. **driver**: ``python -m dsa110ms.archive`` of the 1-day window (``-- -n``) with a new
   inventory: its peak RSS (the driver process alone, and its whole tree) while it lists the
   archive into the inventory for the first time, and the time of that listing (as it prints it).
2. **refresh**: the inventory's listing brought up to date again (``Inventory.refresh_listing``,
   as the driver calls it): the directory unchanged, then with one more day of files (280
   groups after the archive's last), then with that day removed again (the files this benchmark
   added, by name).
3. **dry run**: ``snakemake -n -q`` of the 1-day window (280 groups, 5,042 jobs), discovery
   listing input_dir (``input_listing=directory``) and from the inventory's listing
   (``--config inventory=<abs path> input_listing=inventory``), ``--repeat`` times each: the
   median wall time, its CPU time (user + system, the whole tree), the peak RSS of the whole
   process tree, and the growth from the smallest archive.
4. **done-check**: ``ledger.published_ids`` + ``Ledger.done_windows`` over an output directory
   of N published stamps (``<out>/.dsa110ms-output/published/<group>.json``) and N ``<group>.ms``
   directories (empty placeholders, made once in ``bench/cache/done-<N>``) and a ledger of the
   365 windows of 2026 and N group rows (every window done, so every window's count is asked),
   against the archive's inventory; and the driver's own count of sb00 names (its total).
5. **year**: ``python -m dsa110ms.archive -- -n`` over every window of the archive (8, 72, 358
   windows), stopped after ``--year-windows`` windows or past ``--year-budget-min`` (30):
   what it did not plan is extrapolated from the windows it planned (and said so); also to a
   365-day year.

Wall times on a shared machine vary with what else runs: each dry run's CPU time and the load
average are printed with them. Results go to ``bench/cache/archive_scale.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.planning import (
    ARCHIVE_START,
    GROUP_SPACING_S,
    WINDOW,
    make_empty_files,
    placeholder_archive,
    placeholder_names,
)
from bench.run import CACHE, PYTHON, SHM, RssSampler, fresh, snakemake_command
from dsa110ms.owned import remove_owned

#: Issue 21's goals.
PLAN_GROWTH = 0.25
DONE_CHECK_S = 1.0
YEAR_DAYS = 365
TOLERANCE_S = 60.0  # config/config.yaml's


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(cmd: list[str], cwd: Path) -> dict:
    """Run ``cmd``: its wall and CPU time (s), the peak RSS of its first process and of its
    whole tree (MB), and its output."""
    cpu = children_cpu_s()
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    with RssSampler(proc.pid, interval=0.05) as sampler:
        output, _ = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{output[-3000:]}")
    root = sampler.peaks.get(proc.pid, (0, ""))[0]
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(children_cpu_s() - cpu, 2),
        "root_rss_mb": round(root / 1e6, 1),
        "tree_rss_mb": sampler.max_rss_mb(),
        "output": output,
    }


def archive_command(*extra: str, **config) -> list[str]:
    """``python -m dsa110ms.archive --config k=v ... -- extra``."""
    items = [f"{k}={v}" for k, v in config.items()]
    return [PYTHON, "-m", "dsa110ms.archive", "--config", *items, "--", *extra]


# --- 1-2. the driver's listing of the archive, and its refreshes ---------------------------------


def extra_day(n_groups: int) -> list[str]:
    """The names of one more day of groups after the archive's last (280 groups)."""
    first = ARCHIVE_START + dt.timedelta(seconds=GROUP_SPACING_S * n_groups)
    return placeholder_names(first, 86400 // GROUP_SPACING_S + 1)


def remove_extra_day(archive: Path, names: list[str]) -> int:
    """Remove the files of :func:`extra_day` (made by this benchmark in its marked archive
    directory) that are there, through the workflow's one remover."""
    return sum(remove_owned(archive / name, CACHE) for name in names)


def driver_and_refresh(n_groups: int, archive: Path) -> tuple[dict, Path]:
    """Steps 1 and 2; the inventory listed (for the dry runs and the done-check)."""
    from dsa110ms.inventory import Inventory

    work = fresh(CACHE / f"scale-{n_groups}")
    inventory = work / "inventory.sqlite"
    cmd = archive_command(
        "-n",
        input_dir=archive,
        output_dir=work / "out",
        scratch_root=SHM,
        inventory=inventory,
        start_time=WINDOW[0],
        end_time=WINDOW[1],
    )
    run = run_measured(cmd, work)
    listed = re.search(
        r"inventory .*: (\d+) input files \(\+(\d+) -(\d+)\) in ([\d.]+) s", run["output"]
    )
    planned = re.search(r"planned (\d+) groups in ([\d.]+) s \(exit (\d+)\)", run["output"])
    if not (listed and planned and planned[3] == "0"):
        raise RuntimeError(f"archive driver output not understood:\n{run['output'][-3000:]}")
    out = {
        "driver_wall_s": run["wall_s"],
        "driver_rss_mb": run["root_rss_mb"],
        "driver_tree_rss_mb": run["tree_rss_mb"],
        "files": int(listed[1]),
        "refresh_first_s": float(listed[4]),
        "driver_window_groups": int(planned[1]),
    }
    day = extra_day(n_groups)
    out["day_files"] = len(day)

    def refresh() -> tuple[float, object]:
        start = time.perf_counter()
        inv = Inventory(inventory)
        listing = inv.refresh_listing(archive)
        seconds = time.perf_counter() - start
        inv.close()
        return round(seconds, 3), listing

    out["refresh_unchanged_s"], listing = refresh()
    assert listing.added == listing.removed == 0, listing
    make_empty_files(archive, day)
    try:
        out["refresh_plus_day_s"], listing = refresh()
        assert listing.added == len(day) and listing.removed == 0, listing
    finally:
        remove_extra_day(archive, day)
    out["refresh_minus_day_s"], listing = refresh()
    assert listing.removed == len(day) and listing.total == 16 * n_groups, listing
    return out, inventory


# --- 3. the 1-day window's dry run, both ways ----------------------------------------------------


def dry_runs(n_groups: int, archive: Path, inventory: Path, repeat: int) -> dict:
    out = {}
    for mode, config in (
        ("directory", {}),
        ("inventory", {"inventory": inventory, "input_listing": "inventory"}),
    ):
        runs = []
        for _ in range(repeat):
            work = fresh(CACHE / f"work-planning-{n_groups}")
            cmd = snakemake_command(
                work, archive, "-n", "-q", start_time=WINDOW[0], end_time=WINDOW[1], **config
            )
            runs.append(run_measured(cmd, work))
        fresh(work)
        out[mode] = {
            "wall_s": round(statistics.median(r["wall_s"] for r in runs), 2),
            "cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 2),
            "rss_mb": max(r["tree_rss_mb"] for r in runs),
            "walls": [r["wall_s"] for r in runs],
        }
    return out


# --- 4. the done-check ----------------------------------------------------------------------------


def group_ids(n_groups: int) -> list[str]:
    """The placeholder archive's group ids (their sb00 names: placeholders have no header)."""
    from dsa110ms.groups import format_timestamp

    step = dt.timedelta(seconds=GROUP_SPACING_S)
    return [format_timestamp(ARCHIVE_START + step * g) for g in range(n_groups)]


def published_output(n_groups: int) -> Path:
    """An output directory of ``n_groups`` published stamps and MS directories, all empty
    (made once)."""
    from dsa110ms.ms.publish import OutputArea

    root = CACHE / f"done-{n_groups}"
    out = root / "out"
    published = OutputArea.of(out).stamp("x").parent  # where the workflow writes its stamps
    if (
        published.is_dir()
        and sum(1 for _ in os.scandir(published)) == n_groups
        and sum(1 for e in os.scandir(out) if e.name.endswith(".ms")) == n_groups
    ):
        return out
    fresh(root)
    published.mkdir(parents=True)
    make_empty_files(published, [f"{g}.json" for g in group_ids(n_groups)])
    dir_fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for g in group_ids(n_groups):
            os.mkdir(f"{g}.ms", dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    return out


def done_check(n_groups: int, archive: Path, inventory: Path, repeat: int) -> dict:
    """Step 4, on a ledger made anew (the year's 365 windows, every group published)."""
    from dsa110ms.batch import Outcome
    from dsa110ms.inventory import Inventory
    from dsa110ms.ledger import DONE, Ledger, published_ids, windows_between

    out_dir = published_output(n_groups)
    ledger_path = out_dir.parent / "ledger.sqlite"
    remove_owned(ledger_path, CACHE)  # the benchmark's own, made below
    windows = windows_between("2026-01-01T00:00:00", "2026-12-31T23:59:59", 24)
    by_window: dict[str, list[str]] = {}
    for gid in group_ids(n_groups):
        by_window.setdefault(gid[:10] + "T00:00:00", []).append(gid)
    inv = Inventory(inventory)
    ledger = Ledger(ledger_path)
    made = time.perf_counter()
    for w in windows:
        names = inv.fingerprint(archive, *w.names_between(TOLERANCE_S))
        if not names[0]:
            ledger.record_empty(w)
            continue
        ledger.window_started(w, names)
        ledger.record_groups(w, {g: Outcome("published") for g in by_window.get(w.start, [])})
        ledger.window_finished(w, DONE, "synthetic")
    made = time.perf_counter() - made
    ledger.close()
    inv.close()
    times, sb00_times = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        ledger, inv = Ledger(ledger_path), Inventory(inventory)
        published = published_ids(out_dir)
        done = ledger.done_windows(windows, inv, archive, TOLERANCE_S, published)
        times.append(time.perf_counter() - start)
        assert len(published) == n_groups and len(done) == len(windows), (len(published), len(done))
        start = time.perf_counter()  # the driver's total: its one count of every sb00 name
        sb00 = inv.count(archive, windows[0].start, windows[-1].end, subband=0)
        sb00_times.append(time.perf_counter() - start)
        assert sb00 == n_groups, sb00
        ledger.close()
        inv.close()
    return {
        "done_check_s": round(statistics.median(times), 3),
        "done_check_times": [round(t, 3) for t in times],
        "sb00_count_s": round(statistics.median(sb00_times), 3),
        "ledger_windows": len(windows),
        "ledger_made_s": round(made, 2),
    }


# --- 5. the year's dry run ------------------------------------------------------------------------


PLANNED = re.compile(r"window (\S+): planned (\d+) groups in ([\d.]+) s \(exit (-?\d+)\)")


def year_dry_run(
    n_groups: int, archive: Path, inventory: Path, sample: int | None, budget_s: float
) -> dict:
    """Step 5: the driver's dry run of every window of the archive, stopped (SIGINT, as
    Ctrl-C) once ``sample`` windows are planned or ``budget_s`` has passed; the time of each
    window's line as it is printed."""
    from dsa110ms.ledger import windows_between

    last = ARCHIVE_START + dt.timedelta(seconds=GROUP_SPACING_S * (n_groups - 1) + 2)
    windows = windows_between(ARCHIVE_START.isoformat(), last.isoformat(), 24)
    work = fresh(CACHE / f"scale-{n_groups}-year")
    cmd = archive_command(
        "-n",
        input_dir=archive,
        output_dir=work / "out",
        scratch_root=SHM,
        inventory=inventory,
        # the archive's span: without it the driver widens it by tolerance_s, and the sliver
        # of a window before the first file holds no group (said and recorded empty)
        start_time=windows[0].start,
        end_time=windows[-1].end,
    )
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    planned_at, groups, output, stopped = [], 0, [], False
    with RssSampler(proc.pid, interval=0.5) as sampler:
        for line in proc.stdout:
            output.append(line)
            m = PLANNED.search(line)
            if not m or stopped:
                continue
            if m[4] != "0":
                proc.send_signal(signal.SIGINT)
                proc.wait()
                raise RuntimeError(f"archive dry run failed:\n{''.join(output)[-3000:]}")
            planned_at.append(time.perf_counter() - start)
            groups += int(m[2])
            enough = sample is not None and len(planned_at) >= sample
            if len(planned_at) < len(windows) and (enough or planned_at[-1] > budget_s):
                proc.send_signal(signal.SIGINT)  # the driver stops its running window and exits
                stopped = True
        code = proc.wait()
    if code != (130 if stopped else 0) or not planned_at:
        raise RuntimeError(f"archive dry run failed (exit {code}):\n{''.join(output)[-3000:]}")
    fresh(work)
    ran = len(planned_at)
    per_window = planned_at[-1] / ran  # the driver's start, refresh and plan included
    return {
        "year_windows_run": ran,
        "year_windows_all": len(windows),
        "year_groups_planned": groups,
        "year_wall_s": round(planned_at[-1], 1),
        "year_measured_all": ran == len(windows),
        "year_all_windows_s": round(per_window * len(windows), 1),
        "year_365_s": round(per_window * YEAR_DAYS, 1),
        "year_window_mean_s": round(per_window, 2),
        "year_driver_rss_mb": round(sampler.peaks.get(proc.pid, (0, ""))[0] / 1e6, 1),
    }


# --- the table ------------------------------------------------------------------------------------


def table(results: list[dict]) -> str:
    """Every figure of every archive, each beside its goal (if it has one) and whether it
    meets it."""
    base = results[0]
    lines = []

    def row(figure: str, value: str, goal: str = "", ok: bool | None = None) -> None:
        mark = "" if ok is None else ("ok" if ok else "MISSED")
        lines.append(f"  {figure:56} {value:>22}  {goal:>9} {mark}")

    for r in results:
        n = r["groups"]
        lines.append(f"{n:,} groups ({r['files']:,} files), load average {r['load']}")
        for mode in ("directory", "inventory"):
            d, b = r["dry_run"][mode], base["dry_run"][mode]
            wall, rss = d["wall_s"], d["rss_mb"]
            row(f"1-day dry run, {mode}: wall (median)", f"{wall:.2f} s", "<= 5 s", wall <= 5)
            row("  its CPU time (user+sys, median); each run's wall", f"{d['cpu_s']:.2f} s")
            row("", " ".join(f"{w:.2f}" for w in d["walls"]))
            row(f"1-day dry run, {mode}: peak RSS (tree)", f"{rss:.0f} MB", "<= 300 MB", rss <= 300)
            if r is not base:
                grew = (wall / b["wall_s"] - 1, rss / b["rss_mb"] - 1)
                ok = max(grew) <= PLAN_GROWTH
                row(f"  growth from {base['groups']:,} groups: wall, RSS",
                    f"{grew[0]:+.0%}, {grew[1]:+.0%}", "<= +25 %", ok)  # fmt: skip
        row("driver, 1-day window, new inventory: its peak RSS", f"{r['driver_rss_mb']:.0f} MB")
        row("  its whole tree (with the window's snakemake)", f"{r['driver_tree_rss_mb']:.0f} MB")
        row("inventory refresh: first listing (the driver's line)", f"{r['refresh_first_s']:.1f} s")
        row("inventory refresh: unchanged directory", f"{r['refresh_unchanged_s']:.3f} s")
        row(
            f"inventory refresh: +1 day ({r['day_files']:,} files)",
            f"{r['refresh_plus_day_s']:.2f} s",
        )
        row("inventory refresh: that day removed again", f"{r['refresh_minus_day_s']:.2f} s")
        dc = r["done"]
        seconds = dc["done_check_s"]
        what = f"done-check: {n:,} stamps + MSs, {dc['ledger_windows']} windows"
        row(what, f"{seconds:.3f} s", "<= 1 s", seconds <= DONE_CHECK_S)
        row("  each time", " ".join(f"{t:.3f}" for t in dc["done_check_times"]))
        row("  the driver's count of sb00 names (its total)", f"{dc['sb00_count_s']:.3f} s")
        y = r["year"]
        how = f"extrapolated from {y['year_windows_run']}"
        how = "measured" if y["year_measured_all"] else how
        whole = f"{y['year_all_windows_s'] / 60:.1f} min"
        row(f"archive's dry run, all {y['year_windows_all']} windows ({how})", whole)
        ran = f"  {y['year_groups_planned']:,} groups planned in {y['year_windows_run']} windows"
        row(ran, f"{y['year_wall_s']:.0f} s, {y['year_window_mean_s']:.2f} s/window")
        row("  a 365-day year at that rate", f"{y['year_365_s'] / 60:.1f} min")
        row("  the driver's peak RSS meanwhile", f"{y['year_driver_rss_mb']:.0f} MB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", type=int, nargs="+", default=[2000, 20000, 100000])
    p.add_argument("--repeat", type=int, default=3, help="dry runs and done-checks of each")
    p.add_argument(
        "--year-windows",
        type=int,
        default=None,
        help="stop the archive's dry run after its first N windows and extrapolate "
        "(default: every window, within --year-budget-min)",
    )
    p.add_argument(
        "--year-budget-min",
        type=float,
        default=30.0,
        help="stop the archive's dry run after the first window that ends past this many "
        "minutes and extrapolate (default 30)",
    )
    p.add_argument("--table", action="store_true", help="print the last results' table only")
    a = p.parse_args(argv)
    if a.table:
        print(table(json.loads((CACHE / "archive_scale.json").read_text())))
        return 0
    results = []
    for n in sorted(a.groups):
        archive = placeholder_archive(n)
        remove_extra_day(archive, extra_day(n))  # left by an interrupted run
        r = {"groups": n, "load": " ".join(f"{x:.1f}" for x in os.getloadavg())}
        driver, inventory = driver_and_refresh(n, archive)
        r.update(driver)
        print(json.dumps(r), flush=True)
        r["dry_run"] = dry_runs(n, archive, inventory, a.repeat)
        print(json.dumps(r["dry_run"]), flush=True)
        r["done"] = done_check(n, archive, inventory, a.repeat)
        print(json.dumps(r["done"]), flush=True)
        r["year"] = year_dry_run(n, archive, inventory, a.year_windows, 60 * a.year_budget_min)
        print(json.dumps(r["year"]), flush=True)
        results.append(r)
    (CACHE / "archive_scale.json").write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
