"""What the Snakefile needs from the package: settings, the group manifest, paths and hooks.

Everything here is computed from the configuration and the working directory only, so the
Snakefile evaluates to the same jobs and paths in every process of a run.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dsa110ms import casa, faults, paths
from dsa110ms.errors import DiscoveryError, exit_with, one_line_errors
from dsa110ms.groups import discover
from dsa110ms.inventory import Inventory
from dsa110ms.manifest import Manifest
from dsa110ms.ms.publish import OutputArea, StampCheck
from dsa110ms.observe import metrics
from dsa110ms.phasecenter import PhaseCenter
from dsa110ms.run import scratch
from dsa110ms.run.cluster import cluster_job_id
from dsa110ms.run.hooks import prepare_main_process
from dsa110ms.run.node import NodeJob
from dsa110ms.run.runwatch import export_run_process
from dsa110ms.settings import Settings

log = logging.getLogger("dsa110ms")

#: The main process writes the manifest here (relative to the working directory); the other
#: processes of the run (cluster jobs re-reading the Snakefile) read it instead of re-discovering.
MANIFEST_PATH = Path(".dsa110ms") / "manifest.json"


def jobs_use_this_python() -> None:
    """Put this Python's directory first on PATH, so that ``python`` in a shell: job is the one
    running Snakemake, with this package installed (e.g. .venv/bin/python without an activated
    venv; with --use-conda, Snakemake puts the job's environment before it)."""
    paths = [os.path.dirname(sys.executable), *os.environ.get("PATH", "").split(os.pathsep)]
    os.environ["PATH"] = os.pathsep.join(dict.fromkeys(filter(None, paths)))


#: The cyclic garbage collector's thresholds once the Snakefile is read (CPython's: 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 20)


def collect_garbage_less() -> None:
    """Keep CPython's cyclic garbage collector out of the way of Snakemake's DAG. Building the
    DAG of a 1-day window (280 groups, 5,042 jobs) makes millions of small objects, and at the
    default thresholds the collector runs thousands of times meanwhile, its full collections
    traversing every object of the ~110 MB Snakemake and its plugins imported: ~1.5 s of the
    dry run's 5.9 s of CPU (measured; with this, no more than with no collector at all, and the
    same peak RSS). What exists now (modules, classes, the config: kept for the
    life of the process) is moved out of the collector's sight (``gc.freeze``); the youngest
    objects are collected every 50,000 allocations instead of 700, the older generations 20
    times less often than the next younger one instead of 10. Cycles are still collected."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def setup_run(config: dict, snakemake_workflow) -> Run:
    """What every process does when it reads the Snakefile: validate the config and load the
    groups (discovered by the main process, read from its manifest by the others), export the
    settings jobs need; then the main process prepares its scratch and checks CASA's data, and
    the process running a cluster job on its node takes ownership of the job's scratch there.
    Errors end the run with one line (:func:`exit_with`)."""
    collect_garbage_less()
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
    """The one channel by which jobs get the run's settings
    (:class:`dsa110ms.run.jobs.JobContext`)."""
    from dsa110ms.run.jobs import JobContext

    JobContext.export(run.settings, run.layout.instance)


def log_to_stderr() -> None:
    """Show the package's messages (discovery warnings, cleanup) beside Snakemake's own."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("dsa110ms %(levelname)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


@dataclass
class Run:
    """One evaluation of the Snakefile: settings, groups and scratch layout."""

    settings: Settings
    manifest: Manifest | None
    discovery_error: str | None
    layout: scratch.ScratchLayout
    _part_cache: dict = field(default_factory=dict, repr=False)
    #: what the main process found of the published MSs (:func:`hooks.prepare_main_process`)
    stamps: StampCheck | None = field(default=None, repr=False)
    #: the input files' headers, cached (:mod:`dsa110ms.inventory`): the main process's, which
    #: discovery filled (None elsewhere: :meth:`scratch_need_mb` opens the cache at the path)
    inventory: Inventory | None = field(default=None, repr=False)
    inventory_path: Path | None = field(default=None, repr=False)

    @classmethod
    def load(cls, config: dict, *, is_main_process: bool, workdir: str | os.PathLike = ".") -> Run:
        settings = Settings.from_config(config)
        layout = scratch.ScratchLayout.for_workdir(
            settings.scratch_root, workdir, scratch.settings_variant(settings)
        )
        manifest, error, inventory = None, None, None
        manifest_path = Path(workdir) / MANIFEST_PATH
        inventory_path = Path(workdir) / settings.inventory
        try:
            if is_main_process:
                inventory = Inventory(inventory_path)
                manifest = discover(
                    settings.input_dir,
                    tolerance_s=settings.tolerance_s,
                    start_time=settings.start_time,
                    end_time=settings.end_time,
                    incomplete_groups=settings.incomplete_groups,
                    duplicate_subbands=settings.duplicate_subbands,
                    only=settings.groups,
                    telescope=settings.telescope,
                    inventory=inventory,
                    input_listing=settings.input_listing,
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
        return cls(
            settings, manifest, error, layout, inventory=inventory, inventory_path=inventory_path
        )

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

    def input_pattern(self) -> str:
        return paths.input_file(self.settings.input_dir, "{filetime}", "{subband}")

    def published_pattern(self) -> str:
        return str(self.output.stamp("{group}"))

    def log_pattern(self, name: str) -> str:
        """A job's log, ``name`` relative to ``<log_dir>`` (wildcards allowed in it)."""
        return os.path.join(self.settings.log_dir, name)

    def part_log_pattern(self) -> str:
        return paths.part_log(self.log_pattern(""), "{group}", "{subband}", "{filetime}")

    def parts_ascending_frequency(self, group: str) -> list[str]:
        """Parts of a group in SPW order: lowest frequency (sb15) first."""
        g = self.manifest.groups[group]
        return [self.part(group, sb) for sb in g.subbands_ascending_frequency()]

    def template(self, group: str) -> str:
        return str(self.layout.template(group))

    def phase_plan(self, group: str) -> str:
        return str(self.layout.phase_plan(group))

    def phase_plan_pattern(self) -> list[str]:
        """The part rule's plan input: the group's phase plan for a one-FIELD MS, else none."""
        return [self.phase_plan("{group}")] if PhaseCenter.of(self.settings).one_field else []

    def template_source(self, group: str) -> str:
        """The file a group's template is made from: its lowest-numbered subband."""
        files = self.manifest.groups[group].files
        return files[min(files)]

    def scratch_mb(self) -> int:
        """Each template, part and concat job's scratch resource (:data:`scratch.SCRATCH_RESOURCE`):
        the largest group's scratch (MB), at most the run's limit (:meth:`scratch_limit_mb`), so
        that a group larger than scratch still runs, alone, and fails saying so."""
        return min(self.scratch_need_mb(), self.scratch_limit_mb())

    def scratch_need_mb(self, smallest: bool = False) -> int:
        """The scratch of the run's largest group (or ``smallest``) in MB, estimated from its
        files' data shapes, which discovery read (in the main process, the same inventory: no
        file is opened, nor the cache read, again)."""
        if "scratch_mb" not in self._part_cache:
            shapes = (self.inventory or Inventory(self.inventory_path)).data_shape
            needs = [
                scratch.group_scratch_bytes(
                    list(g.files.values()),
                    self.template_source(g.id),
                    join_method=self.settings.join_method,
                    shapes=shapes,
                )
                for g in self.manifest or ()
            ] or [0]
            mb = [max(int(need / 1e6) + 1, 1) for need in (max(needs), min(needs))]
            self._part_cache["scratch_mb"] = mb
        return self._part_cache["scratch_mb"][1 if smallest else 0]

    def scratch_limit_mb(self) -> int:
        """Free scratch when the run's jobs were first sized (MB; the main process's figure)."""
        if "scratch_limit_mb" not in self._part_cache:
            self._part_cache["scratch_limit_mb"] = scratch.scratch_limit_mb(self.layout.root)
        return self._part_cache["scratch_limit_mb"]

    def priority(self, group: str, *, first: bool = False) -> int:
        """Every job of an earlier group outranks every job of a later one (groups finish one
        after another, see :mod:`dsa110ms.run.scratch`); within a group the template (``first``,
        the group's longest job) starts first."""
        if "rank" not in self._part_cache:
            ids = sorted(g.id for g in self.manifest or ())
            self._part_cache["rank"] = {g: len(ids) - i for i, g in enumerate(ids)}
        return 2 * self._part_cache["rank"].get(group, 0) + (1 if first else 0)

    def all_published(self) -> list[str]:
        """Every group's published stamp (what the rules declare; never the MS itself), but
        those of the groups kept with changed inputs (:meth:`kept_changed`) or published under
        an earlier version's name (``stamps.legacy``): not a target, no job of theirs runs,
        whatever Snakemake's rerun triggers would say of their files."""
        kept = {*self.kept_changed(), *(self.stamps.legacy if self.stamps else ())}
        return [str(self.output.stamp(g)) for g in self.groups() if g not in kept]

    def kept_changed(self) -> dict:
        """Group -> :class:`dsa110ms.ms.publish.ChangedInputs` of each published MS whose input
        files changed since, kept as it is: every one under ``changed_inputs: report``, those a
        reconversion cannot or should not replace under ``reconvert`` (files only removed, an
        earlier version's MS); known in the main process only, which alone asks for targets."""
        if self.stamps is None:
            return {}
        reconvert = self.settings.changed_inputs == "reconvert"
        return {g: c for g, c in self.stamps.changed.items() if not (reconvert and c.reconvertible)}

    def part_sources(self, group: str) -> dict[str, str]:
        """Part path -> the input file it is made from (to name inputs in join errors)."""
        files = self.manifest.groups[group].files
        return {self.part(group, sb): path for sb, path in files.items()}

    def is_complete(self, group: str) -> bool:
        return not self.manifest.groups[group].missing_subbands

    def report_table(self) -> str:
        return os.path.join(self.settings.report_dir, "groups.html")

    def report_plots(self) -> str:
        return os.path.join(self.settings.report_dir, "plots")

    def log_dir(self, group: str) -> str:
        return os.path.join(self.settings.log_dir, group)

    @property
    def output(self) -> OutputArea:
        return OutputArea.of(self.settings.output_dir)

    def final_ms(self, group: str) -> str:
        return str(self.output.final_ms(group))


# --- a cluster job's own process on its node ---------------------------------------------------


def start_cluster_job(run: Run) -> None:
    """In the Snakemake process that runs a cluster job on its node: own the scratch the job's
    groups use there and remove it when this process exits, whatever the outcome
    (:class:`dsa110ms.run.node.NodeJob`; Snakemake's hooks run only on the submitting host)."""
    job = cluster_job_id()
    if not job:
        return
    faults.activate()
    metrics.configure(run.settings.metrics_dir)
    owner = NodeJob.start(run.layout, job)
    if owner is not None:
        atexit.register(owner.finish)
