"""What dsa110ms/run/internals.py relies on in Snakemake (requirements.lock's version): if an
upgrade changes it, this fails before a run does."""

import snakemake.api  # noqa: F401 - imports snakemake's modules in the order they need
from snakemake.rules import Rule
from snakemake.workflow import Workflow

from dsa110ms.errors import ConfigError
from dsa110ms.run.internals import parse_config_overrides


def test_workflow_knows_its_executor_and_rules_carry_their_retries():
    for name in ("non_local_exec", "is_main_process", "remote_exec", "rules"):
        assert hasattr(Workflow, name), name
    assert isinstance(Rule.restart_times, property) and Rule.restart_times.fset is not None


def test_config_overrides_parse_as_snakemake_config_does():
    got = parse_config_overrides(["start_time=2026-01-15T03:00:00", "concat_retries=3", "key=b=c"])
    assert got == {"start_time": "2026-01-15T03:00:00", "concat_retries": 3, "key": "b=c"}
    try:
        parse_config_overrides(["no-equals-sign"])
    except ConfigError as exc:
        assert "no-equals-sign" in str(exc)
    else:
        raise AssertionError("a pair without = must be refused")


def test_the_scheduler_reevaluates_with_a_timer_that_the_end_of_a_run_cancels():
    """Snakemake's scheduler starts a non-daemon threading.Timer after each round; a run's
    process lingers until it fires unless onsuccess/onerror cancel it."""
    import inspect
    import threading

    from snakemake.scheduling.job_scheduler import JobScheduler

    from dsa110ms.run.internals import cancel_rescheduling_timers

    assert "threading.Timer(" in inspect.getsource(JobScheduler._schedule_reevalutation)
    fired = threading.Event()
    timer = threading.Timer(30, fired.set)
    timer.start()
    assert cancel_rescheduling_timers() >= 1
    timer.join(timeout=1)
    assert not timer.is_alive() and not fired.is_set()


def test_a_workflow_knows_whether_it_executed_jobs():
    """dsa110ms.run.internals.executed_jobs: Workflow.execute sets the executor plugin (not
    set when the Snakefile is read, nor in --report/--unlock/--lint modes); dryrun and touch
    are properties of it."""
    import inspect

    from dsa110ms.run.internals import executed_jobs

    for name in ("executor_plugin", "dryrun", "touch"):
        assert isinstance(getattr(Workflow, name), property), name
    assert "self._executor_plugin = executor_plugin" in inspect.getsource(Workflow.execute)

    class NotExecuted:
        executor_plugin, dryrun, touch = None, False, False

    class Executed(NotExecuted):
        executor_plugin = object()

    class DryRun(Executed):
        dryrun = True

    assert not executed_jobs(NotExecuted()) and executed_jobs(Executed())
    assert not executed_jobs(DryRun())


def test_the_scheduler_holds_global_and_available_resources_that_onstart_may_extend():
    """dsa110ms.run.internals.limit_local_resource: the scheduler exists when onstart runs,
    checks each job against ``global_resources`` and subtracts what it starts from
    ``resources`` for every name of ``global_resources``."""
    import inspect

    from snakemake.scheduling.job_scheduler import JobScheduler

    assert isinstance(Workflow.scheduler, property) and isinstance(
        Workflow.non_local_exec, property
    )
    execute = inspect.getsource(Workflow.execute)
    assert execute.index("self.scheduler = JobScheduler(") < execute.index("self._onstart(")
    init = inspect.getsource(JobScheduler.__init__)
    assert "self.global_resources = {" in init and "self.resources = copy.copy(" in init
    update = inspect.getsource(JobScheduler.update_available_resources)
    assert "for name in self.global_resources:" in update and "self.resources[name] -=" in update
    free = inspect.getsource(JobScheduler._free_resources)
    assert "self.resources[name] += value" in free


def test_a_cluster_executor_adds_general_args_to_each_jobs_command():
    """keep_going_inside_cluster_jobs wraps the executor's additional_general_args, which the
    real executor puts in every cluster job's command line; the scheduler holds the executor."""
    import inspect

    from snakemake.scheduling.job_scheduler import JobScheduler
    from snakemake_interface_executor_plugins.executors.real import RealExecutor

    assert "self.additional_general_args()" in inspect.getsource(RealExecutor.format_job_exec)
    assert "self._executor" in inspect.getsource(JobScheduler.__init__)


def test_the_scheduler_records_sigterm_and_its_failed_jobs():
    """dsa110ms.run.internals.stopped_by_sigterm and failed_job_groups (the run summary's
    "stopped" rows): Snakemake's SIGTERM handler sets ``_user_kill = "graceful"``; a job with
    no attempts left goes into ``failed``; a job's wildcards are in ``wildcards_dict``."""
    import inspect

    from snakemake.jobs import Job
    from snakemake.scheduling.job_scheduler import JobScheduler

    init = inspect.getsource(JobScheduler.__init__)
    assert "signal.signal(signal.SIGTERM, self.exit_gracefully)" in init
    assert 'self._user_kill = "graceful"' in inspect.getsource(JobScheduler.exit_gracefully)
    assert "self.failed.add(job)" in inspect.getsource(JobScheduler._handle_error)
    assert "self.wildcards_dict = wildcards_dict" in inspect.getsource(Job.__init__)
