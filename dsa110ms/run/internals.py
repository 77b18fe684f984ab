"""Every reach of this package into Snakemake's internals, in one place.

Each is pinned by ``tests/test_internals.py`` (what it relies on exists and behaves so in the
Snakemake version of requirements.lock). The rest of the package uses documented interfaces
only: the Snakefile's ``workflow.is_main_process`` and
``workflow.remote_exec`` (read in :func:`dsa110ms.run.workflow.setup_run`),
``snakemake.utils.update_config``, and the workflow profile (``nolock``, ``keep-going``,
``rerun-incomplete``).
"""

from __future__ import annotations

import threading

from dsa110ms.errors import ConfigError


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


def keep_going_inside_cluster_jobs(snakemake_workflow) -> None:
    """Under a cluster executor, the Snakemake running a cluster job on its node keeps going past
    a failed group: it runs in remote mode, which reads no profile, so the submitting process
    adds ``--keep-going`` to every cluster job's command (the executor's
    ``additional_general_args``). Else a group that fails every time would stop the groups after
    it in the same SLURM job (12 of them: profiles/slurm) on every run. At onstart, before any
    job is submitted."""
    if not snakemake_workflow.non_local_exec:
        return
    executor = snakemake_workflow.scheduler._executor
    plugin_args = executor.additional_general_args
    if getattr(plugin_args, "keeps_going", False):
        return

    def additional_general_args() -> str:
        return f"{plugin_args() or ''} --keep-going".strip()

    additional_general_args.keeps_going = True
    executor.additional_general_args = additional_general_args


def cancel_rescheduling_timers() -> int:
    """Cancel the job scheduler's pending re-evaluation timers, at the end of a run; returns how
    many. After every scheduling round Snakemake starts a ``threading.Timer`` of its job rate
    limiter's timespan (``--max-jobs-per-timespan``, default 100/1s) that is not a daemon: the
    process then lingers up to 1 s after its last line before it exits (measured: 1.2 s, with
    a one-rule Snakefile too). The timespan cannot be set below 1 s (the option's pattern reads
    "100ms" as 100 minutes), and the limiter cannot be turned off. Called from onsuccess and
    onerror, when no job is left to schedule."""
    timers = [t for t in threading.enumerate() if isinstance(t, threading.Timer)]
    for timer in timers:
        timer.cancel()
    return len(timers)


def local_cores(snakemake_workflow) -> int | None:
    """The cores of a local run (``--cores``, as the scheduler holds them), or None under a
    cluster executor or before the scheduler exists."""
    scheduler = snakemake_workflow.scheduler
    if snakemake_workflow.non_local_exec or scheduler is None:
        return None
    return scheduler.global_resources.get("_cores")


def limit_local_resource(snakemake_workflow, name: str, value: int) -> bool:
    """Make ``name`` a global resource of ``value`` for a local run whose command line did not
    set it (``--resources name=...``); returns whether it did. Called from onstart, when the
    executor is known and the scheduler exists: its total (checked per job) and its available
    amount (what running jobs hold is subtracted from it). Under a cluster executor the jobs'
    scratch is on the nodes: nothing is set."""
    scheduler = snakemake_workflow.scheduler
    if snakemake_workflow.non_local_exec or scheduler is None:
        return False
    if name in scheduler.global_resources:
        return False
    scheduler.global_resources[name] = value
    scheduler.resources[name] = value
    return True


def executed_jobs(snakemake_workflow) -> bool:
    """True once Snakemake has begun executing the workflow for real: not a dry run, not
    ``--touch``, and not a mode that never executes (``--report``, ``--unlock``, ``--lint``,
    ``--list``...), in which it sets no executor plugin (``Workflow.execute`` sets it)."""
    return (
        snakemake_workflow.executor_plugin is not None
        and not snakemake_workflow.dryrun
        and not snakemake_workflow.touch
    )


def parse_config_overrides(pairs: list[str]) -> dict:
    """``key=value`` pairs exactly as ``snakemake --config`` reads them (each value: int, float,
    bool, YAML with every scalar a string, or the string itself), since every batch passes the
    same pairs to Snakemake. Raises ConfigError with Snakemake's one-line reason."""
    from snakemake.cli import parse_config

    try:
        return parse_config(pairs)
    except ValueError as exc:
        raise ConfigError(f"--config {' '.join(pairs)}: {exc}") from None


def stopped_by_sigterm(snakemake_workflow) -> bool:
    """Snakemake's own SIGTERM handler ran (``JobScheduler.exit_gracefully``: the running jobs
    finish, then the run stops)."""
    scheduler = getattr(snakemake_workflow, "scheduler", None)
    return getattr(scheduler, "_user_kill", None) == "graceful"


def failed_job_groups(snakemake_workflow) -> set[str]:
    """The ``group`` wildcards of the jobs Snakemake counts as failed (``JobScheduler.failed``:
    no attempts left), those of a group job's jobs included."""
    scheduler = getattr(snakemake_workflow, "scheduler", None)
    groups = set()
    for job in getattr(scheduler, "failed", ()):
        for one in getattr(job, "jobs", None) or [job]:
            if group := (getattr(one, "wildcards_dict", None) or {}).get("group"):
                groups.add(group)
    return groups
