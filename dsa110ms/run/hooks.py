"""The run's hooks: what the main Snakemake process does when it reads the Snakefile, when the
run starts (``onstart``) and when it ends (``onsuccess``/``onerror``): scratch ownership and the
stale sweep, the published stamps, verified cleanup, the end-of-run summary, metrics, alerts.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dsa110ms import faults
from dsa110ms.errors import Dsa110msError, OutputError, ScratchError, one_line_errors
from dsa110ms.ms.publish import ms_options
from dsa110ms.observe import metrics, progress
from dsa110ms.observe.report import check_report_dir
from dsa110ms.owned import remove_owned
from dsa110ms.run import scratch

if TYPE_CHECKING:
    from dsa110ms.run.workflow import Run

log = logging.getLogger("dsa110ms")


_owner: scratch.OwnerLock | None = None


_started: float = 0.0


def prepare_main_process(run: Run) -> None:
    """At Snakefile evaluation in the main process, before Snakemake looks at any file.

    If this working directory's scratch exists (parts left by an earlier run that Snakemake may
    reuse), lock it so no concurrent sweep can remove it. Then make every group's published
    stamp (the rules' declared output) tell the truth about its MS
    (:meth:`dsa110ms.ms.publish.OutputArea.check_stamps`): a group whose MS is gone, damaged or not
    ours is converted again; its MS is set aside, never removed, by the job that replaces it.
    Snakemake's own locks are not used (``nolock`` in the workflow profile): the owner lock
    keeps two runs of one working directory apart, and dies with its process.
    """
    global _owner
    layout = run.layout
    # before Snakemake looks at the outputs and parts there (it would end in a traceback)
    output_dir = Path(run.settings.output_dir)
    if os.path.lexists(output_dir) and not output_dir.is_dir():
        raise OutputError(f"output_dir {output_dir} is not a directory")
    scratch.check_root(layout.root, create=False)
    check_report_dir(run.settings.report_dir)
    if _owner is None and layout.lock_path.exists():
        _owner = scratch.OwnerLock.try_acquire(layout.lock_path, create=False)
    if run.manifest is not None and os.path.isdir(run.settings.output_dir):
        options = ms_options(run.settings)
        for note in run.output.check_stamps((g.id for g in run.manifest), options):
            log.warning("%s", note)


def on_start(run: Run) -> None:
    """Own this run's scratch (create + lock), then remove scratch of runs that are dead and
    staging MSs left by joins that died. Errors end the run with one line."""
    global _owner, _started
    with one_line_errors():
        _started = time.time()
        layout = run.layout
        check_writable(Path(run.settings.output_dir))
        faults.activate()
        metrics.configure(run.settings.metrics_dir)
        run.output.prepare()
        if _owner is None:
            _owner = scratch.acquire_instance(layout)
        else:
            _owner.describe_owner()
        try:
            report = scratch.sweep_stale(layout.root, keep=layout.instance)
            for path in run.output.remove_stale_staging():
                log.info("removed staging MS left by a join that died: %s", path)
        except Dsa110msError:  # onerror does not run after a failed onstart: clean up here
            remove_owned(layout.instance_dir, layout.root)
            _owner.release()
            raise
        log.info(
            "scratch %s (locked); stale sweep removed %d, skipped %d live",
            layout.instance_dir,
            len(report.removed),
            len(report.live),
        )


def check_writable(directory: Path) -> None:
    """Fail before any job runs if ``directory`` cannot be created or written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):  # unnamed (O_TMPFILE): nothing to remove
            pass
    except OSError as exc:
        raise OutputError(f"output_dir {directory} is not writable: {exc.strerror}") from None


def on_finish(run: Run, *, success: bool) -> None:
    """Remove this run's whole scratch and verify it is gone; record metrics; alert if needed.
    Raises (making the run fail) if scratch could not be removed."""
    global _owner
    layout = run.layout
    cleanup_error = None
    try:
        remove_owned(layout.instance_dir, layout.root)
    except ScratchError as exc:
        cleanup_error = exc
        left = scratch.remaining_entries(layout.instance_dir)
        log.error("scratch cleanup failed: %s; left: %s", exc, ", ".join(left) or "nothing")
    finally:
        if _owner is not None:
            _owner.release()
            _owner = None
    failed = [
        g for g in (run.groups() if run.manifest else []) if not os.path.isdir(run.final_ms(g))
    ]
    events = metrics.read_events(run.settings.metrics_dir, _started)
    summary = metrics.summarize_run(
        events,
        started=_started,
        success=success and cleanup_error is None,
        failed_groups=failed,
    )
    metrics.write_run(run.settings.metrics_dir, summary)
    print(progress.summary_table(summary_rows(run, events)), file=sys.stderr, flush=True)
    if not success and run.manifest is not None:
        write_report_after_failure(run, events)
    log.info(
        "run %s: %d groups converted, %d failed, %d join retries, %d cleanup failures; "
        "scratch %s %s",
        "succeeded" if summary["success"] else "failed",
        summary["groups_converted"],
        summary["groups_failed"],
        summary["join_retries"],
        summary["cleanup_failures"],
        layout.instance_dir,
        "removed and verified gone" if cleanup_error is None else "NOT removed",
    )
    if summary["groups_failed"] or summary["cleanup_failures"]:
        alert(run.settings.alert_command, summary)
    if cleanup_error is not None:
        raise cleanup_error


def write_report_after_failure(run: Run, events: list[dict]) -> None:
    """The run report, with the failed groups in it: rule run_report needs every group's MS, so
    it does not run when a group failed; `snakemake --report` then bundles this one."""
    from dsa110ms.observe.report import make_report

    try:
        make_report(
            run.groups(),
            metrics_dir=run.settings.metrics_dir,
            output_dir=run.settings.output_dir,
            events=events,
            scratch_instance=run.layout.instance,
            table_path=run.report_table(),
            plots_dir=run.report_plots(),
        )
    except Exception as exc:  # noqa: BLE001 - the report must not hide the run's own outcome
        log.warning("run report not written: %s", exc)
    else:
        log.info("run report with the failed groups: %s", run.report_table())


def summary_rows(run: Run, events: list[dict]) -> list[dict]:
    """One row per group of the run for :func:`dsa110ms.observe.progress.summary_table`, and one per
    group or file discovery skipped, each with its reason."""
    rows = []
    for group in run.groups() if run.manifest else []:
        facts = metrics.group_facts(events, group, run.layout.instance)
        published = any(
            e["kind"] == "join" and e["group"] == group and e["outcome"] == "published"
            for e in events
        )
        row = {"group": group, "seconds": facts["conversion_s"]}
        row["retries"] = max(facts["concat_attempts"] - 1, 0)
        if published:
            row["status"] = "converted"
        elif os.path.isdir(run.final_ms(group)):
            row.update(status="up-to-date", seconds=None)
        else:
            reason = facts["error"] or "not run (the run stopped first; see the Snakemake log)"
            row.update(status="FAILED", reason=f"{reason}; logs in {run.log_dir(group)}")
        rows.append(row)
    for skip in run.manifest.skipped if run.manifest else []:
        label = skip.group or os.path.basename(skip.subject)
        rows.append({"group": label, "status": "skipped", "reason": skip.detail})
    return rows


def alert(command: str | None, summary: dict) -> None:
    """Run the configured alert command with the run summary in DSA110MS_ALERT (JSON)."""
    if not command:
        return
    env = {**os.environ, "DSA110MS_ALERT": json.dumps(summary)}
    try:
        proc = subprocess.run(command, shell=True, env=env, timeout=60, capture_output=True)
    except subprocess.TimeoutExpired:
        log.error("alert command timed out after 60 s: %s", command)
        return
    if proc.returncode:
        log.error("alert command failed (exit %d): %s", proc.returncode, command)
