"""Archive mode: convert an archive window by window, resumably.

    python -m dsa110ms.archive --cores 2 --config input_dir=/data/archive output_dir=/data/ms
    python -m dsa110ms.archive --window 24 --config start_time=2026-01-01T00:00:00 \\
        end_time=2026-12-31T23:59:59 -- --profile profiles/slurm

1. The inventory's listing of ``input_dir`` (:mod:`dsa110ms.inventory`, config ``inventory``)
   is brought up to date: only a directory that changed is listed again, only new or removed
   names are written.
2. The archive (``start_time``..``end_time``, else everything the listing holds) is cut into
   windows of ``--window`` hours (default 24, UTC days). A window is *done* (:mod:`dsa110ms.ledger`)
   if it ran to the end, its range holds the same input names as then, and its published MSs are
   still there; done windows are not run again.
3. Every other window is one ordinary Snakemake run of this workflow (:mod:`dsa110ms.batch`, as
   the streaming mode's batches are), in its own working directory
   ``.dsa110ms/archive/<window start>/`` (its manifest, its scratch instance, its locks), with
   ``start_time``/``end_time`` of the window and ``input_listing=inventory``: discovery is an
   indexed query of the window. Windows run in time order, up to ``--at-once`` at a time (default
   2): the next one starts when the running one has at most ``--lookahead`` groups (default 2)
   left, so the cores (or a cluster's queue) never drain between windows. Snakemake arguments go
   after ``--`` (e.g. ``-- --profile profiles/slurm``); ``-n`` plans every window and records
   nothing.
4. What became of each group is recorded in the ledger, ``<log_dir>/archive/ledger.sqlite``;
   ``--retry-failed`` runs only the groups that failed. Each window's Snakemake output is in
   ``<log_dir>/archive/<window start>.log``, its run report in
   ``<report_dir>/archive/<window start>/``.

Progress: a line a minute (``--progress-s``) with groups done of the total, failed, groups per
hour and the ETA. Stopping: SIGINT/SIGTERM stop the running windows (Snakemake's Ctrl-C: each
cleans up) and exit; SIGKILL leaves each window's Snakemake to stop itself (it gets SIGINT when
the driver dies); the same command then redoes only the windows not done.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import fcntl
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dsa110ms.batch import WorkflowRun, absolute_paths, command_line, load_settings
from dsa110ms.errors import Dsa110msError
from dsa110ms.groups import format_timestamp, parse_timestamp
from dsa110ms.inventory import Inventory, InventoryError
from dsa110ms.ledger import (
    DONE,
    UNFINISHED,
    Ledger,
    LedgerError,
    Window,
    published_ids,
    windows_between,
)
from dsa110ms.ms.publish import is_published
from dsa110ms.observe.archive_report import ArchiveProgress, write_archive_summary
from dsa110ms.settings import Settings

PREFIX = "[dsa110ms archive]"
#: The driver's own directory in its working directory: its lock and the windows' directories.
ARCHIVE_DIR = Path(".dsa110ms") / "archive"
#: Snakemake's dry-run options, alone or among short ones (``-np``).
DRY_RUN = re.compile(r"--dry-?run|-[A-Za-z]*n[A-Za-z]*")
#: How long a driver waits for the window runs of a killed driver to stop (s).
STOPPING_WAIT_S = 600.0
#: File-level notes (names left out) said per window; the rest are counted.
MAX_NOTES = 10
#: Seconds between looks at the running windows.
POLL_S = 1.0
#: ... in a dry run (-n), whose windows end every few seconds: a window's end is not waited for.
DRY_RUN_POLL_S = 0.1


#: The progress bar drawn on the terminal, if any: lines are printed above it.
BAR: ArchiveProgress | None = None


def say(line: str) -> None:
    text = f"{PREFIX} {time.strftime('%H:%M:%S')} {line}"
    if BAR is not None:
        BAR.above(text)
    else:
        print(text, flush=True)


class ArchiveError(Dsa110msError):
    """The archive cannot be run (one line: what, and what to do)."""


@dataclass
class RunningWindow:
    window: Window
    run: WorkflowRun
    groups: list[str] | None  # --retry-failed: these only
    published: set[str] = field(default_factory=set)

    def remaining(self) -> int | None:
        """Groups of the window not yet published (None before its discovery)."""
        manifest = self.run.manifest()
        if manifest is None:
            return None
        for gid in manifest.groups:
            if gid not in self.published and is_published(self.run.final_ms(gid)):
                self.published.add(gid)
        return len(set(manifest.groups) - self.published)


class Archive:
    def __init__(self, args: argparse.Namespace, settings: Settings, lock_fd: int):
        self.args = args
        self.settings = settings
        self.dry_run = any(DRY_RUN.fullmatch(a) for a in args.snakemake_args)
        self.ledger = Ledger(Path(settings.log_dir) / "archive" / "ledger.sqlite")
        self.inventory = Inventory(settings.inventory)
        self.running: list[RunningWindow] = []
        self.stopping = False
        self.total = 0  # groups to publish, as the listing's sb00 files count them
        self.published_at_start = 0
        self.failed = 0
        self.unfinished = 0  # windows that did not run to the end (run again next time)
        self.lock_fd = lock_fd
        self.view: ArchiveProgress | None = None  # once the total is known (plan)

    # --- what to run ---------------------------------------------------------------------------

    def refresh_inventory(self) -> None:
        started = time.time()
        try:
            listing = self.inventory.refresh_listing(self.settings.input_dir)
        except FileNotFoundError:
            raise ArchiveError(
                f"{self.settings.input_dir}: input directory does not exist; check input_dir"
            ) from None
        except OSError as exc:
            raise ArchiveError(
                f"{self.settings.input_dir}: input directory cannot be listed "
                f"({exc.strerror or exc}); check input_dir and its permissions"
            ) from None
        except InventoryError as exc:
            raise ArchiveError(
                f"{self.settings.inventory}: the inventory cannot serve as the listing of "
                f"input_dir: {exc}; move it aside or set inventory to a writable path"
            ) from None
        say(
            f"inventory {self.settings.inventory}: {listing.total} input files "
            f"(+{listing.added} -{listing.removed}) in {time.time() - started:.1f} s"
        )

    def windows(self) -> list[Window]:
        """The windows of the archive: cut at start_time and end_time if configured, else whole
        windows over the data's span (the same windows as files are added)."""
        first, last = self.settings.start_time, self.settings.end_time
        span = self.inventory.first_and_last(self.settings.input_dir)
        if span is None:
            raise ArchiveError(
                f"{self.settings.input_dir}: no subband files (YYYY-MM-DDTHH:MM:SS_sbNN.hdf5) "
                "in it; check input_dir"
            )
        # a group's id (when its data start) is within tolerance_s of its files' names
        slack = dt.timedelta(seconds=self.settings.tolerance_s)
        windows = windows_between(
            first or format_timestamp(parse_timestamp(span[0][:19]) - slack),
            last or format_timestamp(parse_timestamp(span[1][:19]) + slack),
            self.args.window,
            cut=False,
        )
        return [
            Window(max(w.start, first or w.start), min(w.end, last or w.end))
            for w in windows
            if (not first or w.end >= first) and (not last or w.start <= last)
        ]

    def plan(self) -> list[tuple[Window, list[str] | None]]:
        """The windows to run, each with the groups to run (None: all), in time order."""
        windows = self.windows()
        started = time.time()
        if self.args.retry_failed:
            return self.plan_retry(windows)
        published = published_ids(self.settings.output_dir)
        done = self.ledger.done_windows(
            windows,
            self.inventory,
            self.settings.input_dir,
            self.settings.tolerance_s,
            published,
        )
        todo = [(w, None) for w in windows if w.start not in done]
        first, last = windows[0], windows[-1]
        sb00 = self.inventory.count(self.settings.input_dir, first.start, last.end, subband=0)
        self.total = max(sb00, len(published))
        self.published_at_start = len(published)
        failed, skipped = (len(self.ledger.groups(s)) for s in ("failed", "skipped"))
        say(
            f"{len(windows)} windows of {self.args.window:g} h from {first.start} to {last.end}: "
            f"{len(done)} done, {len(todo)} to run; {len(published)} groups published, "
            f"{failed} failed, {skipped} skipped (--retry-failed retries them), ~{sb00} groups "
            f"in all (done-check {time.time() - started:.2f} s)"
        )
        return todo

    def plan_retry(self, windows: list[Window]) -> list[tuple[Window, list[str] | None]]:
        """The groups that failed or were skipped, each in the window of this run that holds
        it (whatever the windows were when it failed)."""
        retry = [row[0] for status in ("failed", "skipped") for row in self.ledger.groups(status)]
        by_window: dict[Window, list[str]] = {}
        outside = []
        for gid in sorted(retry):
            w = next((w for w in windows if w.start <= gid <= w.end), None)
            if w is None:
                outside.append(gid)
            else:
                by_window.setdefault(w, []).append(gid)
        todo = sorted(by_window.items(), key=lambda item: item[0].start)
        say(
            f"retrying {len(retry) - len(outside)} failed or skipped groups in {len(todo)} "
            "windows" + (f"; {len(outside)} outside start_time..end_time left" if outside else "")
        )
        self.published_at_start = len(published_ids(self.settings.output_dir))
        self.total = self.published_at_start + len(retry) - len(outside)
        return todo

    # --- running windows -----------------------------------------------------------------------

    def start(self, window: Window, groups: list[str] | None) -> None:
        names, digest = self.inventory.fingerprint(
            self.settings.input_dir, *window.names_between(self.settings.tolerance_s)
        )
        # a group's id is the time of its first file: a window none of whose files' times lie
        # within it holds none (only the files, within tolerance_s, of its neighbours' groups)
        inside = names and self.inventory.count(self.settings.input_dir, window.start, window.end)
        if not inside and groups is None:
            say(
                f"window {window.start}: no input files in it"
                if names == 0
                else f"window {window.start}: no group in it (its {names} files, at its edge, "
                "are of a neighbouring window's group)"
            )
            if not self.dry_run:
                self.ledger.record_empty(window)
            return
        # its own run report, run records and events: windows that run at once count only
        # their own (Prometheus' textfile: the window's metrics_dir)
        settings = dataclasses.replace(
            self.settings,
            report_dir=str(self.window_dir(self.settings.report_dir, window)),
            metrics_dir=str(self.window_dir(self.settings.metrics_dir, window)),
        )
        # every setting as this driver has it (paths absolute: the run is in another working
        # directory), in a file: values pass to Snakemake unparsed
        values = dataclasses.asdict(settings)
        values.update(absolute_paths(settings))
        values.update(
            start_time=window.start, end_time=window.end, input_listing="inventory", groups=groups
        )
        run = WorkflowRun(
            workdir=ARCHIVE_DIR / window.start,
            settings=settings,
            cores=self.args.cores,
            settings_file=values,
            snakemake_args=self.args.snakemake_args,
            log_path=Path(self.settings.log_dir) / "archive" / f"{window.start}.log",
            pass_fds=(self.lock_fd,),  # the driver's lock lives until its windows' runs end
        )
        if not self.dry_run and groups is None:  # a retry leaves the window's record alone
            self.ledger.window_started(window, (names, digest))
        run.start()
        say(f"window {window.start}: started ({names} input files; log {run.log_path})")
        self.running.append(RunningWindow(window, run, groups))

    def summary_path(self) -> Path:
        """The archive summary, beside the windows' run reports (a plain run's report_dir may
        be the same: it leaves ``archive/`` alone)."""
        return Path(self.settings.report_dir) / "archive" / "index.html"

    @staticmethod
    def window_dir(directory: str, window: Window) -> Path:
        """A window's own directory under one of the configured ones (report_dir,
        metrics_dir)."""
        return Path(directory) / "archive" / window.start

    def finish(self, rw: RunningWindow) -> None:
        code = rw.run.poll()
        self.running.remove(rw)
        manifest = rw.run.manifest()
        elapsed = time.time() - rw.run.started
        if self.dry_run:
            n = len(manifest.groups) if manifest else 0
            say(f"window {rw.window.start}: planned {n} groups in {elapsed:.1f} s (exit {code})")
            return
        if manifest is None:
            detail = f"snakemake exit {code} before discovery; see {rw.run.log_path}"
            self.unfinished += 1
            if rw.groups is None:
                self.ledger.window_finished(rw.window, UNFINISHED, detail)
            say(f"window {rw.window.start}: {detail}")
            return
        outcomes = rw.run.outcomes(rw.groups)
        self.ledger.record_groups(rw.window, outcomes)
        by_status: dict[str, int] = {}
        for gid, o in outcomes.items():
            by_status[o.status] = by_status.get(o.status, 0) + 1
            if o.reason and o.status != "not run":
                say(f"{gid} {o.status}: {o.reason}")
        notes = [r for r in manifest.skipped if not r.group]  # files, not groups
        for note in notes[:MAX_NOTES]:
            say(f"window {rw.window.start}: {note}")
        if len(notes) > MAX_NOTES:
            say(f"window {rw.window.start}: and {len(notes) - MAX_NOTES} more files left out")
        self.failed += by_status.get("failed", 0)
        # done: every group accounted for (not one left "not run"); else run again next time
        finished = not by_status.get("not run") and not self.stopping
        self.unfinished += not finished
        summary = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) or "no groups"
        if notes:
            summary += f"; {len(notes)} files left out"
        if rw.groups is None:
            self.ledger.window_finished(rw.window, DONE if finished else UNFINISHED, summary)
        say(f"window {rw.window.start}: {summary} in {elapsed:.0f} s (snakemake exit {code})")
        if code and not finished:
            say(f"window {rw.window.start}: not finished; see {rw.run.log_path}")
        self.write_summary()

    def may_start_next(self) -> bool:
        if len(self.running) >= self.args.at_once:
            return False
        if not self.running or self.dry_run:  # a plan publishes nothing: plans run side by side
            return True
        remaining = self.running[-1].remaining()
        return remaining is not None and remaining <= self.args.lookahead

    def run(self) -> int:
        self.refresh_inventory()
        todo = self.plan()
        self.write_summary()
        self.view = ArchiveProgress(
            self.total, self.published_at_start, interval_s=self.args.progress_s, say=say
        )
        show_bar(self.view if self.view.interactive else None)
        while (todo or self.running) and not self.stopping:
            while todo and not self.stopping and self.may_start_next():
                self.start(*todo.pop(0))
            for rw in list(self.running):
                if rw.run.poll() is not None:
                    self.finish(rw)
            self.progress()
            time.sleep((DRY_RUN_POLL_S if self.dry_run else POLL_S) if self.running else 0)
        for rw in list(self.running):  # stopping: each cleans up after itself
            rw.run.wait()
            self.finish(rw)
        self.progress(force=True)
        self.write_summary()
        if not self.dry_run:
            say(f"summary: {self.summary_path()}")
        return 130 if self.stopping else (1 if self.failed or self.unfinished else 0)

    def progress(self, force: bool = False) -> None:
        """The progress line (a minute apart), or the bar on a terminal."""
        if self.view is None or not (force or self.view.due()):
            return
        done = len(published_ids(self.settings.output_dir))  # the stamps: the truth
        self.view.update(done, self.failed, final=force)
        if force:
            show_bar(None)

    def write_summary(self) -> None:
        """The archive summary (:meth:`summary_path`) from the ledger; not written: said, not
        fatal."""
        if self.dry_run:
            return
        path = self.summary_path()
        try:
            write_archive_summary(self.ledger, path)
        except OSError as exc:
            say(f"{path}: the archive summary cannot be written ({exc.strerror or exc})")

    def stop(self, signum, _frame) -> None:
        say(f"signal {signum}: stopping the running windows (each cleans up)")
        self.stopping = True
        for rw in self.running:
            rw.run.interrupt()


def show_bar(view: ArchiveProgress | None) -> None:
    """Lines said from now on are printed above ``view``'s bar (None: plainly)."""
    global BAR
    BAR = view


def hold_driver_lock(path: Path, wait_s: float = STOPPING_WAIT_S) -> object:
    """One driver per working directory: an exclusive lock on ``path``, held by the driver and
    inherited by its windows' Snakemake runs (so it lives until the last of them ends). A
    driver that is alive: refused. One killed whose window runs are still stopping (cleaning
    up): waited for, at most ``wait_s`` seconds, saying so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 (held open for the process's lifetime)
    deadline = time.monotonic() + wait_s
    said = False
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip()
            pid = int(holder.split()[-1]) if holder.startswith("pid ") else None
            if pid is None or _alive(pid) or time.monotonic() > deadline:
                raise ArchiveError(
                    f"another archive driver runs in this working directory "
                    f"({holder or 'another process'}"
                    + ("" if pid is None or _alive(pid) else ", or its windows' runs")
                    + "); wait for it or stop it"
                ) from None
            if not said:
                say(
                    f"the driver before (pid {pid}) was killed; waiting for its windows' runs "
                    f"to stop and clean up (at most {wait_s:g} s)"
                )
                said = True
            time.sleep(0.5)
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    return f


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    p, ours, extra = command_line(
        "python -m dsa110ms.archive", __doc__.splitlines()[0], argv, runs="window's run"
    )
    p.add_argument("--window", type=float, default=24.0, help="window length, hours (default 24)")
    p.add_argument("--at-once", type=int, default=2, help="windows run at once (default 2)")
    p.add_argument(
        "--lookahead",
        type=int,
        default=2,
        help="start the next window when the last one started has this many groups left "
        "(default 2)",
    )
    p.add_argument("--retry-failed", action="store_true", help="run only the failed groups")
    p.add_argument("--progress-s", type=float, default=60.0, help="progress line interval (s)")
    args = p.parse_args(ours)
    args.snakemake_args = extra
    seconds = args.window * 3600
    if not (60 <= seconds <= 366 * 86400) or abs(seconds - round(seconds)) > 1e-6:
        p.error(f"--window {args.window:g}: from 1 minute to 366 days, a whole number of seconds")
    if args.at_once < 1 or args.lookahead < 0:
        p.error("--at-once must be at least 1, --lookahead at least 0")
    try:
        settings = load_settings(args.configfile, args.config)
        lock = hold_driver_lock(ARCHIVE_DIR / "driver.lock")
        archive = Archive(args, settings, lock.fileno())
        signal.signal(signal.SIGTERM, archive.stop)
        signal.signal(signal.SIGINT, archive.stop)
        code = archive.run()
    except (Dsa110msError, LedgerError) as exc:
        if BAR is not None:
            BAR.end()
        print(f"dsa110ms: error: {exc}", file=sys.stderr, flush=True)
        return 1
    del lock
    return code


if __name__ == "__main__":
    raise SystemExit(main())
