"""The run's hooks: what the main Snakemake process does when it reads the Snakefile, when the
run starts (``onstart``) and when it ends (``onsuccess``/``onerror``): scratch ownership and the
stale sweep, the published stamps, verified cleanup, the end-of-run summary, metrics, alerts.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dsa110ms import casa, faults
from dsa110ms.errors import (
    ConfigError,
    Dsa110msError,
    OutputError,
    ScratchError,
    one_line_errors,
)
from dsa110ms.manifest import one_line
from dsa110ms.ms.publish import damage, ms_options
from dsa110ms.observe import metrics, progress
from dsa110ms.observe.report import check_report_dir
from dsa110ms.owned import remove_owned
from dsa110ms.run import internals, scratch
from dsa110ms.run.joblog import DroppedStops

if TYPE_CHECKING:
    from dsa110ms.run.workflow import Run

log = logging.getLogger("dsa110ms")


_owner: scratch.OwnerLock | None = None
#: The working directory's own lock, held for the life of the main process: two runs of one
#: working directory share Snakemake's metadata, logs and metrics even with other scratch roots.
_workdir_owner: scratch.OwnerLock | None = None
#: Its file, relative to the working directory (Snakemake's current directory).
WORKDIR_LOCK = Path(".dsa110ms") / "run.lock"


_started: float = 0.0


#: How far this main process got: "read" (Snakefile read), "started" (onstart done),
#: "finished" (onsuccess/onerror done). :func:`finish_at_exit` completes what did not run.
_phase: str = "read"
#: The signal that stopped this main process's run (Ctrl-C, a closed terminal), if one did.
_stopped_by: str | None = None
#: Ctrl-C's KeyboardInterrupt, raised again if Python dropped it (:func:`stop_handlers`).
_dropped: DroppedStops | None = None
#: Snakemake's workflow object in the main process (:func:`handle_stops`).
_workflow = None
#: Whether Snakemake's own SIGTERM handler ran before the end of the run began.
_terminated = False


def prepare_main_process(run: Run) -> None:
    """At Snakefile evaluation in the main process, before Snakemake looks at any file.

    If this working directory's scratch exists (parts left by an earlier run that Snakemake may
    reuse), lock it so no concurrent sweep can remove it. Then make every group's published
    stamp (the rules' declared output) tell the truth about its MS
    (:meth:`dsa110ms.ms.publish.OutputArea.check_stamps`): a group whose MS is gone, damaged or not
    ours is converted again; its MS is set aside, never removed, by the job that replaces it.
    A group whose input files changed since its MS was published is named in one warning line
    (every run, until the files are restored or the group reconverted) and, unless
    ``changed_inputs: reconvert``, kept out of the targets (:meth:`Run.all_published`).
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
        run.stamps = run.output.check_stamps(
            run.manifest,
            ms_options(run.settings),
            reconvert_changed=run.settings.changed_inputs == "reconvert",
        )
        for note in run.stamps.notes:
            log.warning("%s", note)
        if unrecorded := run.stamps.unrecorded:
            log.info(
                "%d published MSs (e.g. group %s) predate the record of their input files: a "
                "file changed since cannot be detected for them",
                len(unrecorded),
                unrecorded[0],
            )


def on_start(run: Run) -> None:
    """Own this run's scratch (create + lock), then remove scratch of runs that are dead and
    staging MSs left by joins that died. Errors end the run with one line."""
    global _owner, _started, _phase
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
            if left := scratch.left_by_earlier_run(layout):
                log.info(
                    "scratch %s holds %d entries left by an earlier run that ended without "
                    "cleaning up: reused where Snakemake can, removed at the end of this run",
                    layout.instance_dir,
                    len(left),
                )
        try:
            hold_working_directory()
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
        log.info("CASA: site config %s, measures %s", *reversed(casa.measures_path()))
        _phase = "started"


def hold_working_directory() -> None:
    """Take the working directory's lock (:data:`WORKDIR_LOCK`), or end the run in one line
    naming the live run that holds it."""
    global _workdir_owner
    if _workdir_owner is not None:
        return
    WORKDIR_LOCK.parent.mkdir(mode=0o700, exist_ok=True)
    _workdir_owner = scratch.OwnerLock.try_acquire(WORKDIR_LOCK, create=True)
    if _workdir_owner is None:
        holder = scratch.lock_holder(WORKDIR_LOCK)
        raise ScratchError(
            f"working directory {os.getcwd()} is in use by a live run ({holder}, with another "
            "scratch_root); wait for it or run from another working directory"
        )
    _workdir_owner.describe_owner()


def admit_groups_by_scratch(run: Run, snakemake_workflow) -> None:
    """At onstart: limit the jobs' scratch resource to the free space of scratch now
    (:mod:`dsa110ms.run.scratch`), unless ``--resources scratch_mb=...`` set it or a cluster
    executor runs the jobs; say how many groups fit at once when that is fewer than the cores."""
    if run.manifest is None:
        return
    limit = run.scratch_limit_mb()
    if not internals.limit_local_resource(snakemake_workflow, scratch.SCRATCH_RESOURCE, limit):
        return
    each = run.scratch_need_mb()
    if limit < (least := run.scratch_need_mb(smallest=True)):  # every job would fail, in turn
        with one_line_errors():
            raise ScratchError(
                f"scratch_root {run.layout.root}: {limit} MB usable, the smallest group needs "
                f"~{least} MB: no group fits; free space there, or point scratch_root at a "
                "larger file system (--resources scratch_mb=N overrides this check)"
            )
    if limit < 2 * each:
        log.info(
            "scratch %s has room for one group at a time (%d MB usable, a group needs ~%d MB): "
            "groups are converted one after another",
            run.layout.root,
            limit,
            each,
        )


#: Rule concat's resource (1 per join; rules/convert.smk), whose total bounds the joins running
#: at once, since a join holds no core: it runs beside the parts filling the cores.
JOINS_RESOURCE = "joins"


def overlap_joins(snakemake_workflow) -> None:
    """At onstart: at most one join per two cores (at least one) at once, unless
    ``--resources joins=N`` (N >= 1) said otherwise; N < 1 is refused in one line (Snakemake
    would cap each join's request at it, and then not limit the joins at all). A full-size
    group's join is ~2.2 core-s of CPU in ~2.5 s, plus its wait for the disk; with a core of its
    own, that core idled while it waited (issue 21: idle and iowait 1.08 -> 0.65 core-s per
    group, N = 8 on 2 cores). The limit is per Snakemake run: the archive driver's windows run
    at once (``--at-once``) have one each."""
    if not (cores := internals.local_cores(snakemake_workflow)):
        return
    if internals.limit_local_resource(snakemake_workflow, JOINS_RESOURCE, max(1, cores // 2)):
        return
    given = snakemake_workflow.scheduler.global_resources[JOINS_RESOURCE]
    if given < 1:
        with one_line_errors():
            raise ConfigError(
                f"--resources {JOINS_RESOURCE}={given}: the joins that may run at once must be "
                "at least 1"
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
    """Remove this run's whole scratch and its staging MSs and verify they are gone; record
    metrics; alert if needed. Raises (making the run fail) if they could not be removed."""
    global _owner, _phase, _terminated
    _phase = "finishing"
    if _dropped:
        _dropped.end()
    # a SIGTERM from now on interrupts the end of the run, not the run
    _terminated = bool(_workflow and internals.stopped_by_sigterm(_workflow))
    layout = run.layout
    cleanup_error, staging = None, []
    try:
        remove_owned(layout.instance_dir, layout.root)
        staging = remove_own_staging(run)
    except ScratchError as exc:
        cleanup_error = exc
        left = scratch.remaining_entries(layout.instance_dir)
        log.error("scratch cleanup failed: %s; left: %s", exc, ", ".join(left) or "nothing")
    finally:
        if _owner is not None:
            _owner.release()
            _owner = None
    events = metrics.read_events(run.settings.metrics_dir, _started)
    rows = summary_rows(run, events)
    failed = failed_groups(rows)
    summary = metrics.summarize_run(
        events,
        started=_started,
        success=success and cleanup_error is None,
        failed_groups=failed,
        changed_inputs=run.stamps.changed if run.stamps else None,
        rows=rows,
    )
    metrics.write_run(run.settings.metrics_dir, summary)
    print(progress.summary_table(rows), file=sys.stderr, flush=True)
    if not success and run.manifest is not None:
        write_report_after_failure(run, events)
    log.info(
        "run %s: %d groups converted, %d failed, %d join retries, %d cleanup failures; "
        "scratch %s %s%s",
        "succeeded" if summary["success"] else "failed",
        summary["groups_converted"],
        summary["groups_failed"],
        summary["join_retries"],
        summary["cleanup_failures"],
        layout.instance_dir,
        "removed and verified gone" if cleanup_error is None else "NOT removed",
        "" if cleanup_error else f"; {staging_note(staging)}",
    )
    _phase = "finished"
    if summary["groups_failed"] or summary["cleanup_failures"]:
        alert(run.settings.alert_command, summary)
    if cleanup_error is not None:
        raise cleanup_error


def remove_own_staging(run: Run) -> list[Path]:
    """Remove (verified) every staging MS of this run's instance, saying so for each: the
    staging directories that were still there."""
    left = run.output.remove_instance_staging(run.layout.instance)
    for path in left:
        log.warning("removed staging MS left by a join of this run: %s", path)
    return left


def staging_note(removed: list[Path]) -> str:
    if not removed:
        return "no staging MS of this run left"
    return f"{len(removed)} staging MS(s) of this run removed and verified gone"


def handle_stops(run: Run, snakemake_workflow) -> None:
    """In the main Snakemake process, when the Snakefile is read: every way the run can end
    cleans up.

    - Ctrl-C: the first interrupts Snakemake as usual (it stops the jobs, then onerror cleans
      up and prints the summary); a second one (or ``timeout``, which sends SIGINT to the
      process and then to its group) only says that the run is stopping, instead of breaking
      Snakemake's cleanup with a second KeyboardInterrupt (its "event loop is already running"
      tracebacks, no summary, scratch left).
    - SIGHUP (the terminal closed) stops the run as SIGTERM does: Snakemake waits for the
      running jobs (which stop themselves, :mod:`dsa110ms.run.joblog`), then onerror runs.
    - At exit, :func:`finish_at_exit` does what onsuccess/onerror did not do (Snakemake skips
      them when its scheduler raises, e.g. WorkflowError for an input that vanished mid-run,
      and every hook when nothing is to be done).
    """
    global _workflow
    _workflow = snakemake_workflow
    stop_handlers()
    # at exit Snakemake is back in the directory it was started from: relative paths of the
    # settings (log_dir, report_dir...) are the working directory's
    atexit.register(finish_at_exit, run, snakemake_workflow, workdir=os.getcwd())


def stop_handlers() -> None:
    """The main process's Ctrl-C and SIGHUP handlers (:func:`handle_stops`)."""
    global _dropped
    # a KeyboardInterrupt raised in one of asyncio's weakref callbacks is dropped by Python
    _dropped = DroppedStops(_interrupt_again)
    signal.signal(signal.SIGINT, _first_interrupt)
    signal.signal(signal.SIGHUP, _hang_up_as_terminate)


def _first_interrupt(signum, frame) -> None:
    _stopping("SIGINT")
    signal.signal(signal.SIGINT, _repeated_interrupt)
    raise _dropped.raising(KeyboardInterrupt())  # installed only by stop_handlers


def _interrupt_again(exc: BaseException) -> int | None:
    if _phase in ("finishing", "finished"):  # the end of the run is under way: not again
        return None
    signal.signal(signal.SIGINT, _first_interrupt)
    return signal.SIGINT


def _stopping(signal_name: str) -> None:
    """Note the signal that stops the run, if it is still running (not one during its end)."""
    global _stopped_by
    if _phase == "started":
        _stopped_by = _stopped_by or signal_name


def _repeated_interrupt(signum, frame) -> None:
    print(
        "dsa110ms: stopping: waiting for the jobs to stop, then scratch and staging are removed "
        "and the summary printed",
        file=sys.stderr,
        flush=True,
    )


def _hang_up_as_terminate(signum, frame) -> None:
    _stopping("SIGHUP")
    os.kill(os.getpid(), signal.SIGTERM)


def finish_at_exit(run: Run, snakemake_workflow, *, workdir: str) -> None:
    """At the main process's exit: if the run executed jobs but its onsuccess/onerror did not
    complete, run the end of the run now (scratch and staging removed and verified, summary,
    metrics); if it ran no hook at all (nothing to be done) but holds scratch left by an earlier
    run of this working directory, remove it and say so. Nothing for a dry run, ``--report``
    and the like (no job executed) or once the end of the run is done."""
    global _owner
    if _phase == "finished" or not internals.executed_jobs(snakemake_workflow):
        return
    try:
        os.chdir(workdir)
        if _phase in ("started", "finishing"):
            log.error(
                "the run stopped without its end-of-run hook (Snakemake's error above): "
                "cleaning up now"
            )
            on_finish(run, success=False)
        elif _owner is not None and _owner.held:
            left = scratch.left_by_earlier_run(run.layout)
            remove_owned(run.layout.instance_dir, run.layout.root)
            _owner.release()
            _owner = None
            staging = run.output.remove_stale_staging()
            if left or staging:
                log.info(
                    "removed what an earlier run left (it ended without cleaning up): "
                    "%d entries of scratch %s, %d staging MSs; verified gone",
                    len(left),
                    run.layout.instance_dir,
                    len(staging),
                )
        if _phase == "read" and run.manifest is not None:
            summarize_run_without_jobs(run)
    except (Dsa110msError, OSError) as exc:
        log.error("cleanup at exit failed: %s", exc)


def summarize_run_without_jobs(run: Run) -> None:
    """A run with nothing to be done (Snakemake runs no hook then): its summary and run
    record all the same, so that what stays wrong (inputs changed since publication, files
    skipped) is said, and counted, on every run until someone acts."""
    summary = metrics.summarize_run(
        [],
        started=time.time(),
        success=True,
        failed_groups=[],
        changed_inputs=run.stamps.changed if run.stamps else None,
        rows=(rows := summary_rows(run, [])),
    )
    metrics.write_run(run.settings.metrics_dir, summary)
    print(progress.summary_table(rows), file=sys.stderr, flush=True)


def failed_groups(rows: list[dict]) -> list[str]:
    """The groups of :func:`summary_rows` left without the MS they should have (FAILED: not
    those stopped with the run, those kept on purpose, nor those skipped by discovery)."""
    return [r["group"] for r in rows if r["status"] == "FAILED"]


#: Why a group with no MS and no failed job is left: the run stopped before its jobs.
NOT_RUN = "not run (the run stopped first; see the Snakemake log)"


def not_run_reason(run: Run, group: str) -> str:
    """Why a group of the run has neither an MS nor a job's error: an input file that vanished
    during the run (Snakemake then stops before the job), else the run stopped first."""
    gone = [p for p in run.manifest.groups[group].files.values() if not os.path.lexists(p)]
    if gone:
        return f"not run: {', '.join(gone)} vanished during the run (put it back and rerun)"
    return NOT_RUN


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
        log.info("run report, with the groups not converted: %s", run.report_table())


def summary_rows(run: Run, events: list[dict]) -> list[dict]:
    """One row per group of the run for :func:`dsa110ms.observe.progress.summary_table`, and one per
    group or file discovery skipped, each with its reason. A group whose input files changed
    since its MS was published is never "up-to-date": CHANGED (kept), reconverted, or FAILED;
    one stopped with the run, or not started before a signal stopped it, is "stopped", not
    FAILED."""
    rows = []
    groups = run.groups() if run.manifest else []
    facts_of = {g: metrics.group_facts(events, g, run.layout.instance) for g in groups}
    # a signal seen by this process or Snakemake's, or by a job; not for a group a job of
    # which failed (a crash leaves no event of ours: Snakemake counts it)
    stopped_by = (
        _stopped_by
        or ("SIGTERM" if _terminated else None)
        or next((f["stopped"] for f in facts_of.values() if f["stopped"]), None)
    )
    failed_jobs = internals.failed_job_groups(_workflow) if _workflow and stopped_by else set()
    for group in groups:
        facts = facts_of[group]
        row = {"group": group, "seconds": facts["conversion_s"]}
        row["retries"] = max(facts["concat_attempts"] - 1, 0)
        stopped = None if group in failed_jobs else stopped_by
        row.update(group_outcome(run, group, events, facts, stopped_by=stopped))
        rows.append(row)
    for skip in run.manifest.skipped if run.manifest else []:
        label = skip.group or one_line(os.path.basename(skip.subject))
        reason = skip.detail
        if skip.group and os.path.isdir(run.final_ms(skip.group)):  # e.g. a re-sent duplicate
            reason += f"; {run.final_ms(skip.group)}, published earlier, is kept as it is"
        rows.append({"group": label, "status": "skipped", "reason": reason})
    return rows


def group_outcome(
    run: Run, group: str, events: list[dict], facts: dict, *, stopped_by: str | None = None
) -> dict:
    """A summary row's status and reason (and no seconds where nothing ran for the group);
    ``stopped_by``: the signal that stopped the run, if one did."""
    changed = run.stamps.changed if run.stamps else {}
    legacy = run.stamps.legacy.get(group) if run.stamps else None
    joins = {e["outcome"] for e in events if e["kind"] == "join" and e["group"] == group}
    logs = f"logs in {run.log_dir(group)}"
    if legacy is not None and group in changed:  # reconvert cannot replace it: other name
        what = f"{changed[group].what}; {legacy.name} kept: move it out of output_dir"
        return {
            "status": "CHANGED",
            "reason": f"{what} to convert the group again",
            "seconds": None,
        }
    if group in run.kept_changed():
        return {"status": "CHANGED", "reason": changed[group].kept_reason, "seconds": None}
    if "published" in joins and group in changed:
        return {"status": "reconverted", "reason": changed[group].reconverted_reason()}
    if "published" in joins:
        if warnings := facts["warnings"]:
            more = f" (and {len(warnings) - 1} more warnings)" if warnings[1:] else ""
            return {"status": "converted", "reason": f"warning: {warnings[0]}{more}; {logs}"}
        return {"status": "converted"}
    if facts["stopped"]:
        why = f"stopped by {facts['stopped']} (the run was stopped; the next run converts it)"
        return {"status": "stopped", "reason": why}
    if group in changed and "kept_existing" in joins:  # another run reconverted it meanwhile
        return {"status": "up-to-date", "reason": "converted again by another run"}
    if group in changed:  # to be reconverted, and it was not
        reason = facts["error"] or not_run_reason(run, group)
        ms, what = changed[group].ms, changed[group].what
        return {
            "status": "FAILED",
            "reason": f"reconversion: {reason}; {ms} kept, its inputs changed since it was "
            f"published: {what}; {logs}",
            "ran": bool(facts["error"]),
        }
    final = run.final_ms(group)
    problem = damage(final, group) if os.path.lexists(final) else None
    if os.path.lexists(final) and problem is None:
        other = run.stamps.other_options.get(group) if run.stamps else None
        if other:
            reason = f"kept, made with other options ({other}): move it away to convert it so"
            return {"status": "up-to-date", "reason": reason, "seconds": None}
        return {"status": "up-to-date", "seconds": None}
    if legacy is not None:
        return {"status": "up-to-date", "reason": f"published as {legacy.name}", "seconds": None}
    reason = facts["error"] or not_run_reason(run, group)
    if problem:  # damaged or not ours, and the conversion meant to replace it failed
        reason += f"; {final} is not an intact MS of this workflow ({problem})"
    elif stopped_by and reason == NOT_RUN:  # no error, nothing vanished: not the group's fault
        why = f"the run was stopped by {stopped_by} before this group was converted"
        why += " (the next run converts it)"
        return {"status": "stopped", "reason": why, "ran": False}
    # FAILED to people (no MS); to the archive and the stream, "not run" if no job of it failed
    return {"status": "FAILED", "reason": f"{reason}; {logs}", "ran": bool(facts["error"])}


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
