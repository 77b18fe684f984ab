"""The jobs (template, part, join, report) as their entry points in ``scripts/`` call them:
logging, faults, metrics, then the work.

Each function is what one Snakemake job does, given plain values (no Snakemake object), so it can
be called and tested without Snakemake.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dsa110ms import faults, paths
from dsa110ms.errors import InputFileError, JoinError, TransientJoinError
from dsa110ms.observe import metrics, progress
from dsa110ms.owned import remove_owned
from dsa110ms.phasecenter import PhaseCenter
from dsa110ms.run.joblog import JobStopped, job_log
from dsa110ms.run.node import claim_group
from dsa110ms.run.runwatch import die_with_run
from dsa110ms.run.scratch import ScratchLayout, make_group_dir, settings_variant
from dsa110ms.settings import Settings
from dsa110ms.space import check_room, template_bytes

log = logging.getLogger(__name__)


def error_class(exc: BaseException) -> str:
    """A short class for metrics: the original exception's type, with errno name for OSError;
    an input refused for what is inside it, by its own class (the HDF5 error under it says
    less)."""
    if isinstance(exc, InputFileError):
        return type(exc).__name__
    cause = exc.__cause__ or exc
    if isinstance(cause, OSError) and cause.errno in errno.errorcode:
        return f"OSError.{errno.errorcode[cause.errno]}"
    return type(cause).__name__


#: The one channel by which jobs get the run's settings: a JSON environment variable every
#: Snakemake process of the run sets when it reads the Snakefile, and every job inherits. Not
#: rule params, so that changing a setting (say concat_retries) does not make Snakemake
#: rerun finished jobs and no setting is written into a shell command; not the config, so that a
#: part job need not import the schema validator (jsonschema, ~0.15 s of its ~0.8 s).
CONTEXT_ENV = "DSA110MS_JOB_CONTEXT"


@dataclass(frozen=True)
class JobContext:
    """What every job of a run knows: the run's settings, its scratch instance, and when the run
    started (Unix s; a job reads only this run's window of the metrics events)."""

    settings: Settings
    instance: str
    run_started: float

    @property
    def layout(self) -> ScratchLayout:
        root = Path(os.path.abspath(self.settings.scratch_root))
        return ScratchLayout(root, self.instance, settings_variant(self.settings))

    @classmethod
    def export(cls, settings: Settings, instance: str, environ=os.environ) -> None:
        """Set the context for the jobs this process starts. The run's start is kept from the
        process that started the run (a cluster job's Snakemake inherits it)."""
        before = json.loads(environ.get(CONTEXT_ENV, "{}")).get("run_started")
        context = {"settings": json.loads(settings.to_json()), "instance": instance}
        environ[CONTEXT_ENV] = json.dumps(context | {"run_started": before or time.time()})

    @classmethod
    def current(cls, environ=os.environ) -> JobContext:
        """The context the Snakefile exported (:meth:`export`)."""
        d = json.loads(environ[CONTEXT_ENV])
        return cls(Settings(**d["settings"]), d["instance"], d["run_started"])

    def activate(self) -> faults.Faults:
        """Metrics and test faults of this job process."""
        metrics.configure(self.settings.metrics_dir)
        return faults.activate()


def part_command(group: str, filetime: str, subband: str) -> None:
    """Rule ms_part, as ``python -m dsa110ms.run.partjob GROUP FILETIME SUBBAND``: the paths are
    computed here from the job context, so that no path is ever written into a shell command
    (only the rule's wildcards, which its constraints limit to digits, ``-``, ``T`` and ``:``)."""
    context = JobContext.current()
    settings = context.settings
    part_job(
        uvh5=paths.input_file(settings.input_dir, filetime, subband),
        part=str(context.layout.part(group, f"{filetime}_sb{subband}")),
        group=group,
        subband=int(subband),
        log_path=paths.part_log(settings.log_dir, group, subband, filetime),
        context=context,
    )


def part_job(
    *,
    uvh5: str,
    part: str,
    group: str,
    subband: int,
    log_path: str,
    context: JobContext,
) -> None:
    """Rule ms_part: one subband file -> one MS part on scratch."""
    from dsa110ms.ms.part import write_part

    options = part_options(context.settings)
    if PhaseCenter.of(context.settings).one_field:
        options["phase_plan"] = context.layout.phase_plan(group)
    event_fields = {"group": group, "subband": subband, "file": uvh5, "bytes": 0}
    with scratch_job("part", context, part, log_path, **event_fields) as (active, event):
        write_part(uvh5, part, **options, crash=active.part_crashes(group, subband))
        event["bytes"] = metrics.du_bytes(part)


@contextmanager
def scratch_job(kind: str, context: JobContext, path: str, log_path: str, **event_fields):
    """A job writing ``path`` into its group's scratch: it dies with the run, logs to
    ``log_path``, makes and claims the group's scratch directory, activates metrics and test
    faults, and times its work as a ``kind`` event; yields the faults and the event."""
    die_with_run()
    with job_log(log_path):
        make_group_dir(Path(path).parent)
        claim_group(Path(path).parent)
        active = context.activate()
        with metrics.timed(kind, **event_fields) as event:
            yield active, event


def part_options(settings: Settings) -> dict:
    """How every part and the template are written (:func:`dsa110ms.ms.part.write_part`,
    :func:`dsa110ms.ms.template.write_template`)."""
    return {
        "telescope": settings.telescope,
        "generic_phasing": settings.generic_phasing,
        "keep_autocorrelations": settings.keep_autocorrelations,
    }


def template_job_forked(*, uvh5: str, template: str, group: str, log_path: str) -> None:
    """Rule ms_template, its work in a forked child (:mod:`dsa110ms.run.forked`): casacore
    aborts the process on a write error (a full scratch), which no Python code sees; this
    process then says so in one line, in the log, on stderr and in the summary."""
    from dsa110ms.run.forked import run_job_forked

    code = run_job_forked(
        lambda: template_job(uvh5=uvh5, template=template, group=group, log_path=log_path),
        "template",
        group=group,
        uvh5=uvh5,
        log_path=log_path,
        metrics_dir=JobContext.current().settings.metrics_dir,
        scratch=Path(template).parent,
    )
    if code:
        raise SystemExit(code)


def template_job(*, uvh5: str, template: str, group: str, log_path: str) -> None:
    """Rule ms_template: the group's template MS from one of its files (pyuvdata)."""
    from dsa110ms.ms.template import write_template

    context = JobContext.current()
    settings = context.settings
    with scratch_job("template", context, template, log_path, group=group, file=uvh5):
        check_room(Path(template).parent, template_bytes(uvh5), "the group's template")
        faults.while_writing_template(group)  # test faults only
        write_template(
            uvh5,
            template,
            **part_options(settings),
            ms_telescope_name=settings.ms_telescope_name,
            phase_center=PhaseCenter.of(settings),
        )


def phase_plan_job(*, uvh5: str, plan: str, group: str, log_path: str) -> None:
    """Rule phase_plan: the rotation of the group's visibilities to its one FIELD
    (:mod:`dsa110ms.phasecenter`), from one of its files, for its part jobs."""
    from dsa110ms.phasecenter import write_plan

    context = JobContext.current()
    with scratch_job("phase_plan", context, plan, log_path, group=group, file=uvh5):
        write_plan(uvh5, plan, PhaseCenter.of(context.settings))


def join_job(
    *,
    group: str,
    template: str,
    parts: Sequence[str],
    log_path: str,
    sources: Mapping[str, str],
    contiguous: bool,
    attempt: int,
) -> None:
    """Rule concat: join, validate, publish; then remove the group's scratch (verified).

    The last attempt removes the group's scratch whatever the outcome: the job itself cleans the
    node it runs on (on a cluster, Snakemake's hooks run only on the submitting host)."""
    # imported here, not at the top: a part job (16 a group) needs none of them
    from dsa110ms import casa
    from dsa110ms.ms.join_group import JoinOptions, join_group, kill_child
    from dsa110ms.ms.publish import OutputArea
    from dsa110ms.observe.report import group_record, write_group_record

    die_with_run(on_death=kill_child)
    context = JobContext.current()
    settings, layout = context.settings, context.layout
    group_scratch = layout.group_dir(group)
    output = OutputArea.of(settings.output_dir)
    final = output.final_ms(group)
    last_attempt = attempt > settings.concat_retries
    with job_log(log_path):
        casa.log_to(log_path)
        context.activate()
        started = time.time()
        event = {"group": group, "attempt": attempt}
        figure = draw_figure_meanwhile(group, template, parts, sources, settings.metrics_dir)
        try:
            options = JoinOptions.from_settings(settings, contiguous=contiguous)
            summary, published = join_group(
                group,
                template,
                parts,
                output,
                options,
                instance=layout.instance,
                group_scratch=group_scratch,
                sources=sources,
                attempt=attempt,
            )
        except BaseException as exc:
            if isinstance(exc, JoinError):
                metrics.emit(
                    "join",
                    **event,
                    outcome="transient" if isinstance(exc, TransientJoinError) else "permanent",
                    error_class=error_class(exc),
                    error=metrics.first_line(exc),
                    seconds=round(time.time() - started, 3),
                )
            elif isinstance(exc, JobStopped):  # the run is being stopped: not the group's fault
                metrics.emit(
                    "join",
                    **event,
                    outcome="stopped",
                    stopped=signal.Signals(exc.signum).name,
                    error=metrics.first_line(exc),
                    seconds=round(time.time() - started, 3),
                )
            if last_attempt:
                remove_owned(group_scratch, layout.root)
            raise
        finally:
            if figure:
                os.waitpid(figure, 0)
        record = None
        if published:
            try:  # read from the parts, so before they are removed
                record = group_record(group, summary, parts, sources, final)
            except Exception as exc:  # noqa: BLE001 - the MS is published: the report is secondary
                log.warning("group %s: no report record: %s: %s", group, type(exc).__name__, exc)
        metrics.emit(
            "join",
            **event,
            outcome="published" if published else "kept_existing",
            error_class=None,
            seconds=round(time.time() - started, 3),
            bytes=record["bytes"] if record else metrics.du_bytes(final),
            rows=summary.nrows if summary else None,
        )
        remove_owned(group_scratch, layout.root)
        metrics_dir = settings.metrics_dir
        if metrics_dir and record:
            events = metrics.read_events(metrics_dir, since=context.run_started)
            record["facts"] = metrics.group_facts(events, group, layout.instance)
            write_group_record(metrics_dir, group, record)
            progress.group_finished(group, record, record["facts"])


def draw_figure_meanwhile(
    group: str, template: str, parts: Sequence[str], sources: Mapping[str, str], metrics_dir
) -> int | None:
    """Draw the group's quick-look figure (beside its record) in a forked process while this one
    writes the MS: the join is mostly I/O and the figure CPU, so on 2 cores they overlap, and the
    run report at the end only links figures (its matplotlib was ~0.8 s after the last group).
    Returns the process's pid, to be waited for; a figure that fails is drawn by the report."""
    if not metrics_dir:
        return None
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        from dsa110ms.ms.validate import summarize
        from dsa110ms.observe.report import figure_path, figure_record, plot_group

        record = figure_record(group, summarize(template), parts, sources)
        path = figure_path(metrics_dir, group)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.stem}.{os.getpid()}{path.suffix}")
        plot_group(record, staging)
        os.replace(staging, path)
        code = 0
    except Exception as exc:  # noqa: BLE001 - the report draws it then
        log.warning("group %s: figure not drawn: %s: %s", group, type(exc).__name__, exc)
    finally:
        os._exit(code)  # no exit handlers, no buffers of the parent flushed twice


def report_job(*, groups: Sequence[str], table: str, plots: str, log_path: str) -> None:
    """Rule run_report: the run report's table and figures (:mod:`dsa110ms.observe.report`)."""
    from dsa110ms.observe.report import make_report

    context = JobContext.current()
    with job_log(log_path) as log:
        rows = make_report(
            groups,
            metrics_dir=context.settings.metrics_dir,
            output_dir=context.settings.output_dir,
            events=[],  # every group is published (the rule's input): its record has its facts
            scratch_instance=context.instance,
            table_path=table,
            plots_dir=plots,
        )
        log.info("run report: %d groups in %s, figures in %s", len(rows), table, plots)
