"""What the Snakefile needs from the package: settings, the group manifest, paths and hooks.

Everything here is computed from the configuration and the working directory only, so the
Snakefile evaluates to the same jobs and paths in every process of a run.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from dsa110ms import casa, faults, paths
from dsa110ms.errors import DiscoveryError, Dsa110msError, OutputError, ScratchError
from dsa110ms.groups import Manifest, discover
from dsa110ms.ms.publish import OutputArea, ms_options
from dsa110ms.observe import metrics, progress
from dsa110ms.observe.report import check_report_dir
from dsa110ms.owned import remove_owned
from dsa110ms.run import scratch
from dsa110ms.run.cluster import cluster_job_id
from dsa110ms.run.runwatch import export_run_process
from dsa110ms.settings import validate_config

log = logging.getLogger("dsa110ms")

#: The main process writes the manifest here (relative to the working directory); the other
#: processes of the run (cluster jobs re-reading the Snakefile) read it instead of re-discovering.
MANIFEST_PATH = Path(".dsa110ms") / "manifest.json"


def export_package_path(basedir: str) -> None:
    """Put the checkout holding this package on PYTHONPATH for the jobs Snakemake starts, and
    this Python's directory first on PATH, so that ``python`` in a shell: job is the one running
    Snakemake (e.g. .venv/bin/python without an activated venv; with --use-conda, Snakemake
    puts the job's environment before it)."""
    for var, first in (("PYTHONPATH", basedir), ("PATH", os.path.dirname(sys.executable))):
        paths = [first, *filter(None, os.environ.get(var, "").split(os.pathsep))]
        os.environ[var] = os.pathsep.join(dict.fromkeys(paths))


def setup_run(config: dict, snakemake_workflow) -> Run:
    """What every process does when it reads the Snakefile: validate the config and load the
    groups (discovered by the main process, read from its manifest by the others), export the
    settings jobs need; then the main process prepares its scratch and checks CASA's data, and
    the process running a cluster job on its node takes ownership of the job's scratch there.
    Errors end the run with one line (:func:`exit_with`)."""
    with one_line_errors():
        run = Run.load(config, is_main_process=snakemake_workflow.is_main_process)
        export_job_settings(run)
        export_run_process()
        if snakemake_workflow.is_main_process:
            casa.check_data()
            prepare_main_process(run)
        if snakemake_workflow.remote_exec:
            start_cluster_job(run)
        return run


def export_job_settings(run: Run) -> None:
    """The settings job processes read (:func:`dsa110ms.run.jobs.export_settings`)."""
    from dsa110ms.run.jobs import export_settings

    export_settings(run.settings, run.layout.instance)


def log_to_stderr() -> None:
    """Show the package's messages (discovery warnings, cleanup) beside Snakemake's own."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("dsa110ms %(levelname)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def exit_with(error: Dsa110msError) -> NoReturn:
    """End Snakemake with the error's one line (it names the file or key and what to do)
    instead of a traceback."""
    print(f"dsa110ms: error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(1)


@contextmanager
def one_line_errors():
    """Around Snakefile code: a :class:`Dsa110msError` ends the run with its line."""
    try:
        yield
    except Dsa110msError as exc:
        exit_with(exc)


@dataclass
class Run:
    """One evaluation of the Snakefile: settings, groups and scratch layout."""

    settings: dict
    manifest: Manifest | None
    discovery_error: str | None
    layout: scratch.ScratchLayout
    _part_cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, config: dict, *, is_main_process: bool, workdir: str | os.PathLike = ".") -> Run:
        settings = validate_config(config)
        layout = scratch.ScratchLayout.for_workdir(settings["scratch_root"], workdir)
        manifest, error = None, None
        manifest_path = Path(workdir) / MANIFEST_PATH
        try:
            if is_main_process:
                manifest = discover(
                    settings["input_dir"],
                    tolerance_s=settings["tolerance_s"],
                    start_time=settings["start_time"],
                    end_time=settings["end_time"],
                    incomplete_groups=settings["incomplete_groups"],
                    duplicate_subbands=settings["duplicate_subbands"],
                    only=settings["groups"],
                )
                manifest.write(manifest_path)
                if manifest.empty_reason:
                    raise DiscoveryError(manifest.empty_reason)
            else:
                manifest = Manifest.read(manifest_path)
        except DiscoveryError as exc:
            # Reported when the conversion targets are asked for, so that `snakemake simulate`
            # works before the input directory exists or has files.
            manifest, error = None, str(exc)
        return cls(settings, manifest, error, layout)

    # --- what the rules ask for -------------------------------------------------------------

    def groups(self) -> list[str]:
        if self.discovery_error:
            exit_with(DiscoveryError(self.discovery_error))
        return [g.id for g in self.manifest]

    def part(self, group: str, subband: str | int) -> str:
        return self._parts_of(group)[int(subband)]

    def _parts_of(self, group: str) -> dict[int, str]:
        """Subband -> part path, computed once per group (Snakemake asks for it per job)."""
        parts = self._part_cache.get(group)
        if parts is None:
            files = self.manifest.groups[group].files
            parts = {
                sb: str(self.layout.part(group, os.path.basename(path).removesuffix(".hdf5")))
                for sb, path in files.items()
            }
            self._part_cache[group] = parts
        return parts

    # A part's path names its input file, so that the part rule's input is a pattern, not a
    # function: Snakemake inspects the signature of every input function for every job
    # (16,000 part jobs in a dry run over 1,000 groups: seconds).
    # Patterns: the same path functions as for concrete paths, with wildcards (the config
    # refuses braces in directories: Snakemake has no escape for them in patterns).
    def part_pattern(self) -> str:
        return str(self.layout.part("{group}", "{filetime}_sb{subband}"))

    def template_pattern(self) -> str:
        return str(self.layout.template("{group}"))

    def input_pattern(self) -> str:
        return paths.input_file(self.settings["input_dir"], "{filetime}", "{subband}")

    def published_pattern(self) -> str:
        return str(self.output.stamp("{group}"))

    def log_pattern(self, name: str) -> str:
        """A job's log, ``name`` relative to ``<log_dir>`` (wildcards allowed in it)."""
        return os.path.join(self.settings["log_dir"], name)

    def part_log_pattern(self) -> str:
        return paths.part_log(self.log_pattern(""), "{group}", "{subband}", "{filetime}")

    def parts_ascending_frequency(self, group: str) -> list[str]:
        """Parts of a group in SPW order: lowest frequency (sb15) first."""
        g = self.manifest.groups[group]
        return [self.part(group, sb) for sb in g.subbands_ascending_frequency()]

    def template(self, group: str) -> str:
        return str(self.layout.template(group))

    def template_source(self, group: str) -> str:
        """The file a group's template is made from: its lowest-numbered subband."""
        files = self.manifest.groups[group].files
        return files[min(files)]

    def all_published(self) -> list[str]:
        """Every group's published stamp (what the rules declare; never the MS itself)."""
        return [str(self.output.stamp(g)) for g in self.groups()]

    def part_options(self) -> dict:
        """How every part and the template are written (:func:`dsa110ms.ms.part.write_part`,
        :func:`dsa110ms.ms.template.write_template`)."""
        return {k: self.settings[k] for k in ("telescope", "keep_autocorrelations")}

    def part_sources(self, group: str) -> dict[str, str]:
        """Part path -> the input file it is made from (to name inputs in join errors)."""
        files = self.manifest.groups[group].files
        return {self.part(group, sb): path for sb, path in files.items()}

    def is_complete(self, group: str) -> bool:
        return not self.manifest.groups[group].missing_subbands

    def report_table(self) -> str:
        return os.path.join(self.settings["report_dir"], "groups.html")

    def report_plots(self) -> str:
        return os.path.join(self.settings["report_dir"], "plots")

    def log_dir(self, group: str) -> str:
        return os.path.join(self.settings["log_dir"], group)

    @property
    def output(self) -> OutputArea:
        return OutputArea.of(self.settings["output_dir"])

    def final_ms(self, group: str) -> str:
        return str(self.output.final_ms(group))


# --- hooks: scratch ownership, verified cleanup, metrics -------------------------------------

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
    output_dir = Path(run.settings["output_dir"])
    if os.path.lexists(output_dir) and not output_dir.is_dir():
        raise OutputError(f"output_dir {output_dir} is not a directory")
    scratch.check_root(layout.root, create=False)
    check_report_dir(run.settings["report_dir"])
    if _owner is None and layout.lock_path.exists():
        _owner = scratch.OwnerLock.try_acquire(layout.lock_path, create=False)
    if run.manifest is not None and os.path.isdir(run.settings["output_dir"]):
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
        check_writable(Path(run.settings["output_dir"]))
        faults.activate(run.settings["faults"])
        metrics.configure(run.settings["metrics_dir"])
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


def start_cluster_job(run: Run) -> None:
    """In the Snakemake process that runs a cluster job on its node: own the scratch the job's
    groups use there and remove it when this process exits, whatever the outcome
    (:class:`dsa110ms.run.scratch.NodeJob`; Snakemake's hooks run only on the submitting host)."""
    job = cluster_job_id()
    if not job:
        return
    faults.activate(run.settings["faults"])
    metrics.configure(run.settings["metrics_dir"])
    owner = scratch.NodeJob.start(run.layout, job)
    if owner is not None:
        atexit.register(owner.finish)


def retry_inside_cluster_jobs(snakemake_workflow) -> None:
    """Under a cluster executor, retries run only inside the group's job, never as resubmissions.

    The job on the node re-reads the Snakefile and retries a failed concat there (up to
    ``concat_retries``), where the group's parts are. Were the submitting process to retry the
    failed group job as well, each resubmission would start again from ``--attempt n`` and retry
    inside itself too: measured with ``concat_retries: 2`` and a join that always fails, 10 joins
    over 3 SLURM jobs instead of 3 joins in 1. So the submitting process sets every rule's retries
    to 0 once it knows its executor (which it does not yet know when the Snakefile is read).
    A failing concat therefore runs ``concat_retries + 1`` times, in one SLURM job, on one node.
    """
    if snakemake_workflow.non_local_exec:
        for rule in snakemake_workflow.rules:
            rule.restart_times = 0


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
    events = metrics.read_events(run.settings["metrics_dir"], _started)
    summary = metrics.summarize_run(
        events,
        started=_started,
        success=success and cleanup_error is None,
        failed_groups=failed,
    )
    metrics.write_run(run.settings["metrics_dir"], summary)
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
        alert(run.settings["alert_command"], summary)
    if cleanup_error is not None:
        raise cleanup_error


def write_report_after_failure(run: Run, events: list[dict]) -> None:
    """The run report, with the failed groups in it: rule run_report needs every group's MS, so
    it does not run when a group failed; `snakemake --report` then bundles this one."""
    from dsa110ms.observe.report import make_report

    try:
        make_report(
            run.groups(),
            metrics_dir=run.settings["metrics_dir"],
            output_dir=run.settings["output_dir"],
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
        facts = metrics.group_facts(events, group, f"{run.layout.instance}/{group}")
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
    for reason in run.manifest.skipped if run.manifest else []:
        subject, _, why = reason.partition(": ")  # "group <id>: ..." or "<file>: ..."
        label = os.path.basename(subject.removeprefix("group "))
        rows.append({"group": label, "status": "skipped", "reason": why})
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
