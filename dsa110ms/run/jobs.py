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
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from dsa110ms import casa, faults, paths
from dsa110ms.errors import JoinError, TransientJoinError
from dsa110ms.ms.publish import OutputArea
from dsa110ms.observe import metrics, progress
from dsa110ms.owned import remove_owned
from dsa110ms.run.joblog import job_log
from dsa110ms.run.runwatch import die_with_run
from dsa110ms.run.scratch import ScratchLayout, claim_group, make_group_dir

log = logging.getLogger(__name__)


def error_class(exc: BaseException) -> str:
    """A short class for metrics: the original exception's type, with errno name for OSError."""
    cause = exc.__cause__ or exc
    if isinstance(cause, OSError) and cause.errno in errno.errorcode:
        return f"OSError.{errno.errorcode[cause.errno]}"
    return type(cause).__name__


#: The run's settings that jobs need (metrics directory, test faults, where parts and logs go),
#: exported as JSON by the Snakefile in every process. Not rule params, so that changing them (a
#: test turning faults off) does not make Snakemake rerun finished jobs; not the config, so that
#: a part job need not import the schema validator (jsonschema, ~0.15 s of its ~0.8 s).
SETTINGS_ENV = "DSA110MS_JOB_SETTINGS"
JOB_SETTINGS = (
    "metrics_dir",
    "faults",
    "concat_retries",
    "input_dir",
    "log_dir",
    "scratch_root",
    "telescope",
    "keep_autocorrelations",
    "spw_layout",
    "join_method",
    "imaging_columns",
)


def export_settings(settings: Mapping, instance: str, environ=os.environ) -> None:
    """Make the validated run settings the jobs need visible to every job process, with the
    scratch instance and the run's start (Unix s): kept from the process that started the run
    (a cluster job's Snakemake inherits it), so that a job reads only this run's window of the
    events."""
    started = json.loads(environ.get(SETTINGS_ENV, "{}")).get("run_started", time.time())
    environ[SETTINGS_ENV] = json.dumps(
        {k: settings[k] for k in JOB_SETTINGS} | {"instance": instance, "run_started": started}
    )


def _settings(settings: Mapping | None) -> Mapping:
    """``settings``, or the ones the Snakefile exported."""
    return settings if settings is not None else json.loads(os.environ.get(SETTINGS_ENV, "{}"))


def _activate(settings: Mapping | None) -> faults.Faults:
    """Faults and metrics of this job process, from ``settings`` or the exported ones."""
    settings = _settings(settings)
    metrics.configure(settings.get("metrics_dir"))
    return faults.activate(settings.get("faults"))


def part_command(group: str, filetime: str, subband: str, settings: Mapping | None = None):
    """Rule ms_part, as ``python -m dsa110ms.run.partjob GROUP FILETIME SUBBAND``: the paths are
    computed here from the exported settings, so that no path is ever written into a shell
    command (only the rule's wildcards, which its constraints limit to digits, ``-``, ``T``
    and ``:``)."""
    settings = _settings(settings)
    layout = ScratchLayout(Path(os.path.abspath(settings["scratch_root"])), settings["instance"])
    part_job(
        uvh5=paths.input_file(settings["input_dir"], filetime, subband),
        part=str(layout.part(group, f"{filetime}_sb{subband}")),
        group=group,
        subband=int(subband),
        log_path=paths.part_log(settings["log_dir"], group, subband, filetime),
        options={k: settings[k] for k in ("telescope", "keep_autocorrelations")},
        settings=settings,
    )


def part_job(
    *,
    uvh5: str,
    part: str,
    group: str,
    subband: int,
    log_path: str,
    options: Mapping,
    settings: Mapping | None = None,
) -> None:
    """Rule ms_part: one subband file -> one MS part on scratch. ``settings``: metrics_dir and
    faults (default: those exported by the Snakefile, :func:`export_settings`)."""
    from dsa110ms.ms.part import write_part

    die_with_run()
    with job_log(log_path):
        make_group_dir(Path(part).parent)
        claim_group(Path(part).parent)
        active = _activate(settings)
        with metrics.timed("part", group=group, subband=subband, file=uvh5, bytes=0) as event:
            write_part(uvh5, part, **options, crash=active.part_crashes(group, subband))
            event["bytes"] = metrics.du_bytes(part)


def template_job(
    *, uvh5: str, template: str, group: str, log_path: str, options: Mapping, settings=None
) -> None:
    """Rule ms_template: the group's template MS from one of its files (pyuvdata)."""
    from dsa110ms.ms.template import write_template

    die_with_run()
    with job_log(log_path):
        make_group_dir(Path(template).parent)
        claim_group(Path(template).parent)
        _activate(settings)
        with metrics.timed("template", group=group, file=uvh5):
            write_template(uvh5, template, **options)


def join_job(
    *,
    group: str,
    template: str,
    parts: Sequence[str],
    output_dir: str,
    log_path: str,
    sources: Mapping[str, str],
    contiguous: bool,
    attempt: int,
    settings: Mapping | None = None,
) -> None:
    """Rule concat: join, validate, publish; then remove the group's scratch (verified).

    The last attempt removes the group's scratch whatever the outcome: the job itself cleans the
    node it runs on (on a cluster, Snakemake's hooks run only on the submitting host)."""
    from dsa110ms.ms.join_group import JoinOptions, join_group, kill_child
    from dsa110ms.observe.report import group_record, write_group_record

    die_with_run(on_death=kill_child)
    settings = _settings(settings)
    layout = ScratchLayout(Path(os.path.abspath(settings["scratch_root"])), settings["instance"])
    group_scratch = layout.group_dir(group)
    output = OutputArea.of(output_dir)
    final = output.final_ms(group)
    last_attempt = attempt > settings.get("concat_retries", 0)
    with job_log(log_path):
        casa.log_to(log_path)
        _activate(settings)
        started = time.time()
        event = {"group": group, "attempt": attempt}
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
            if last_attempt:
                remove_owned(group_scratch, layout.root)
            raise
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
        metrics_dir = settings.get("metrics_dir")
        if metrics_dir and record:
            events = metrics.read_events(metrics_dir, since=settings.get("run_started", 0.0))
            record["facts"] = metrics.group_facts(events, group, f"{layout.instance}/{group}")
            write_group_record(metrics_dir, group, record)
            progress.group_finished(group, record, record["facts"])


def report_job(
    *,
    groups: Sequence[str],
    metrics_dir: str,
    output_dir: str,
    instance: str,
    table: str,
    plots: str,
    log_path: str,
) -> None:
    """Rule run_report: the run report's table and figures (:mod:`dsa110ms.observe.report`)."""
    from dsa110ms.observe.report import make_report

    with job_log(log_path) as log:
        rows = make_report(
            groups,
            metrics_dir=metrics_dir,
            output_dir=output_dir,
            events=[],  # every group is published (the rule's input): its record has its facts
            scratch_instance=instance,
            table_path=table,
            plots_dir=plots,
        )
        log.info("run report: %d groups in %s, figures in %s", len(rows), table, plots)
