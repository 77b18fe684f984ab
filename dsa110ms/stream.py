"""Streaming mode: watch ``input_dir`` and convert each group as soon as it is complete.

    python -m dsa110ms.stream --cores 2 --config input_dir=/data/incoming output_dir=/data/ms

Every ``--poll-s`` seconds the input directory is scanned. A group is *ready* when all 16
subband files are there and none of its files is still being written (``*_incomplete.hdf5``),
or, if subbands are missing, when no file of it has arrived for ``--wait-s`` seconds; then the
``incomplete_groups`` policy decides (``convert``: converted with the subbands present;
``skip``/``fail``: recorded, not converted). Ready groups are converted in batches, one
Snakemake run of this same workflow per batch (``--config groups=[...]``), with any extra
Snakemake arguments given after ``--`` (e.g. ``-- --profile profiles/slurm``).

Restarts: what was done is in the output directory (published MSs are never converted again)
and in the state file ``<log_dir>/stream/state.json`` (groups skipped or failed, with the
reason; they are tried again only if their set of files changes). A group that arrived while
the stream was down is converted when it starts. SIGINT/SIGTERM stop the current batch (its
Snakemake run cleans up after itself) and exit; the next start finishes the job.

A file that arrives after its group was published (``incomplete_groups=convert`` published it
without that subband, or a re-sent duplicate) is not converted: it is reported once, as a warning
line and under the group's ``late_files`` in the state file, with what to do (move the MS aside
and the stream converts the group again). Files discovery cannot use (unreadable, a dangling
symlink) are reported once per start, as warning lines.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

from dsa110ms.batch import WorkflowRun, command_line, groups_item, load_settings
from dsa110ms.errors import Dsa110msError
from dsa110ms.manifest import Manifest
from dsa110ms.ms.publish import is_published
from dsa110ms.observe.report import read_group_record
from dsa110ms.settings import Settings
from dsa110ms.streamstate import Candidate, StreamState, scan

PREFIX = "[dsa110ms stream]"
#: a batch that failed before any job of a group ran is tried again after this long (s)
RETRY_AFTER_S = 60


def say(line: str) -> None:
    print(f"{PREFIX} {time.strftime('%H:%M:%S')} {line}", flush=True)


class Stream:
    def __init__(self, args: argparse.Namespace, settings: Settings):
        self.args = args
        self.settings = settings
        self.state = StreamState.load(Path(settings.log_dir) / "stream" / "state.json")
        self.child: WorkflowRun | None = None
        self.stopping = False
        self.retry_at: dict[str, float] = {}  # group -> when to try a failed batch again
        self.warned: set[str] = set()  # discovery's reasons already shown since the start
        self.record_files: dict[str, list[str] | None] = {}  # group -> files in its record

    def final_ms(self, group: str) -> Path:
        return Path(self.settings.output_dir) / f"{group}.ms"

    def ready(self, now: float) -> tuple[list[Candidate], int]:
        """Groups to convert now, and how many are still waiting."""
        ready, waiting = [], 0
        candidates, skipped = scan(self.settings)
        for reason in skipped:  # e.g. a dangling symlink: its group is never a candidate
            if reason not in self.warned:
                self.warned.add(reason)
                say(f"warning: {reason}")
        by_file = self.state.published_by_file()
        for c in candidates:
            published = self.published_as(c, by_file)
            if published:
                self.report_late(c, published)
                continue
            if self.state.settled(c):
                continue
            if (
                c.writing
                or (c.missing and now - c.last_arrival < self.args.wait_s)
                or self.retry_at.get(c.id, 0.0) > now
            ):
                waiting += 1
                continue
            if c.missing and self.settings.incomplete_groups != "convert":
                gaps = ", ".join(f"sb{sb:02d}" for sb in c.missing)
                status = "failed" if self.settings.incomplete_groups == "fail" else "skipped"
                reason = (
                    f"incomplete after waiting {self.args.wait_s:g} s (missing {gaps}); "
                    f"policy incomplete_groups={self.settings.incomplete_groups}"
                )
                self.state.record(c, status, reason=reason, at=now)
                self.state.save()
                say(f"{c.id} {status}: {reason}")
                continue
            ready.append(c)
        return ready, waiting

    def published_as(self, c: Candidate, by_file: dict[str, str]) -> str | None:
        """The published group holding ``c``'s files: ``c`` itself, or the group that a file of
        ``c`` was published in (an MS published before group ids came from the data is named by
        its sb00 file's name, which may differ from the id its data give now)."""
        if is_published(self.final_ms(c.id)):
            return c.id
        for name in c.files:
            gid = by_file.get(name)
            if gid and is_published(self.final_ms(gid)):
                return gid
        return None

    def published_files(self, gid: str) -> list[str] | None:
        """The file names the published MS of ``gid`` was made from: as the stream recorded it,
        else in the group record its concat job wrote (None: published before records)."""
        entry = self.state.groups.get(gid)
        if entry and entry["status"] == "published":
            return entry["files"]
        if gid not in self.record_files:  # read once: a backlog has many published groups
            record = read_group_record(self.settings.metrics_dir, gid)
            self.record_files[gid] = record["files"] if record else None
        return self.record_files[gid]

    def report_late(self, c: Candidate, gid: str) -> None:
        """Report, once, each file of ``c`` that the published MS of ``gid`` was not made from
        (never converted silently into nothing, never converted twice)."""
        published = self.published_files(gid)
        if published is None:
            return
        entry = self.state.groups.get(gid)
        if not entry or entry["status"] != "published":  # published by another run
            entry = {"status": "published", "files": published}
        late = entry.get("late_files", {})
        new = [name for name in c.files if name not in published and name not in late]
        if not new:
            return
        for name in new:
            late[name] = (
                f"arrived after group {gid} was published without it; move "
                f"{self.final_ms(gid)} aside to convert the group again"
            )
            say(f"warning: {name}: {late[name]}")
        self.state.groups[gid] = {**entry, "late_files": late}
        self.state.save()

    def convert(self, batch: list[Candidate]) -> None:
        ids = [c.id for c in batch]
        say(f"batch of {len(ids)}: {', '.join(ids)}")
        log_path = Path(self.settings.log_dir) / "stream" / "batches.log"
        self.child = WorkflowRun(
            workdir=".",
            settings=self.settings,
            cores=self.args.cores,
            configfiles=self.args.configfile,
            config=[*self.args.config, groups_item(ids)],
            snakemake_args=self.args.snakemake_args,
            log_path=log_path,
        )
        self.child.start()
        if self.stopping:  # the signal came while it was being started
            self.child.interrupt()
        code = self.child.wait()
        run, self.child = self.child, None
        outcomes = run.outcomes(ids)
        batch_manifest = run.manifest() or Manifest("")
        for c in batch:
            done = time.time()
            outcome = outcomes[c.id]
            if outcome.status in ("published", "changed"):
                published = self.final_ms(c.id).stat().st_ctime  # its rename into place
                latency = round(published - c.last_arrival, 1)
                # the files the batch converted (one may have come since the scan): late files
                # are those not in this list
                group = batch_manifest.groups.get(c.id)
                files = group and sorted(os.path.basename(p) for p in group.files.values())
                self.state.record(c, "published", files=files, latency_s=latency, at=done)
                say(f"{c.id} published {latency:.1f} s after its last file")
            elif self.stopping:
                continue  # interrupted: the next start converts it
            elif outcome.status in ("skipped", "failed"):
                self.state.record(c, outcome.status, reason=outcome.reason, at=done)
                say(f"{c.id} {outcome.status}: {outcome.reason}")
            else:  # the batch failed before any job of this group (e.g. a run still alive)
                self.retry_at[c.id] = done + RETRY_AFTER_S
                say(f"{c.id} not converted (see {log_path}); trying again in {RETRY_AFTER_S} s")
        self.state.save()
        say(f"batch done in {time.time() - run.started:.1f} s (snakemake exit {code})")

    def run(self) -> int:
        idle_since = time.time()
        while not self.stopping:
            now = time.time()
            try:
                batch, waiting = self.ready(now)
            except Dsa110msError as exc:
                print(f"dsa110ms: error: {exc}", file=sys.stderr, flush=True)
                return 1
            if batch:
                self.convert(batch)
                idle_since = time.time()
            elif waiting:
                idle_since = now
            elif self.args.exit_when_idle and now - idle_since >= self.args.exit_when_idle:
                say(f"idle for {self.args.exit_when_idle:g} s: exiting")
                return 0
            if not batch:
                time.sleep(self.args.poll_s)
        return 0

    def stop(self, signum, _frame) -> None:
        say(f"signal {signum}: stopping")
        self.stopping = True
        if self.child is not None:
            self.child.interrupt()  # Snakemake's Ctrl-C: it stops and cleans up


def main(argv: list[str] | None = None) -> int:
    p, ours, extra = command_line(
        "python -m dsa110ms.stream", __doc__.splitlines()[0], argv, runs="batch"
    )
    p.add_argument("--poll-s", type=float, default=10.0, help="scan interval (default 10 s)")
    p.add_argument(
        "--wait-s",
        type=float,
        default=600.0,
        help="wait this long after a group's last file for missing subbands (default 600 s)",
    )
    p.add_argument(
        "--exit-when-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="exit once nothing has been pending for S seconds (default: run until stopped)",
    )
    args = p.parse_args(ours)
    # discovery runs every poll: its warnings about groups still arriving are noise here
    logging.getLogger("dsa110ms.groups").setLevel(logging.ERROR)
    args.snakemake_args = extra
    try:
        settings = load_settings(args.configfile, args.config)
    except Dsa110msError as exc:
        print(f"dsa110ms: error: {exc}", file=sys.stderr)
        return 1
    stream = Stream(args, settings)
    signal.signal(signal.SIGTERM, stream.stop)
    signal.signal(signal.SIGINT, stream.stop)
    say(
        f"watching {settings.input_dir} -> {settings.output_dir} (poll {args.poll_s:g} s, "
        f"wait {args.wait_s:g} s for missing subbands, policy "
        f"incomplete_groups={settings.incomplete_groups})"
    )
    return stream.run()


if __name__ == "__main__":
    raise SystemExit(main())
