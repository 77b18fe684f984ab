"""One Snakemake run of this workflow on a batch of groups, and what became of each group: the
one way the streaming mode (:mod:`dsa110ms.stream`, a batch of ready groups) and the archive
driver (:mod:`dsa110ms.archive`, a window of time) run the workflow.

A batch is an ordinary ``snakemake`` run of the Snakefile (so SLURM profiles, retries, cleanup,
reports and metrics work as in any run), started in its own process group-less child that gets
SIGINT, Snakemake's Ctrl-C, if its parent dies, even by SIGKILL (it then stops its jobs and
cleans up). Its output goes to a log file. Afterwards :meth:`WorkflowRun.outcomes` reads what
became of each group from the run's manifest, the metrics events and the output directory.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from dsa110ms.errors import Dsa110msError
from dsa110ms.files import write_text_atomically
from dsa110ms.manifest import Manifest
from dsa110ms.ms.publish import is_published
from dsa110ms.observe import metrics
from dsa110ms.run.internals import parse_config_overrides
from dsa110ms.run.runwatch import signal_on_parent_death
from dsa110ms.run.workflow import MANIFEST_PATH
from dsa110ms.schema import load_schema
from dsa110ms.settings import Settings

#: A batch's own settings, in its working directory (:class:`WorkflowRun`).
SETTINGS_FILE = Path(".dsa110ms") / "batch-config.yaml"
REPO = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO / "Snakefile"
DEFAULT_CONFIG = REPO / "config" / "config.yaml"


def interrupt_when_orphaned() -> None:
    """In a batch's Snakemake (before exec): get SIGINT, Snakemake's Ctrl-C, if its parent dies
    (even by SIGKILL), so no batch outlives it and holds the working directory's locks."""
    signal_on_parent_death(signal.SIGINT)


def command_line(
    prog: str, description: str, argv: list[str] | None, runs: str
) -> tuple[argparse.ArgumentParser, list[str], list[str]]:
    """The parser of a mode that runs the workflow (``runs``: what one run is, for the help),
    with the options every such mode takes (``--cores``, ``--configfile``, ``--config``, as
    for snakemake), and ``argv`` split into the mode's own arguments and those after ``--``,
    which go to Snakemake."""
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--cores", type=int, default=2, help=f"cores of each {runs} (default 2)")
    parser.add_argument(
        "--configfile", nargs="*", default=[], help="config files, as for snakemake"
    )
    parser.add_argument("--config", nargs="*", default=[], help="key=value, as for snakemake")
    return parser, argv[:split], argv[split + 1 :]


def load_settings(configfiles: list[str], config_items: list[str]) -> Settings:
    """The settings of runs given these ``--configfile`` and ``--config`` arguments (merged over
    config/config.yaml as Snakemake merges them). Raises :class:`Dsa110msError`."""
    from snakemake.utils import update_config  # nested keys merged as Snakemake merges them

    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    for path in configfiles:
        try:
            update_config(config, yaml.safe_load(Path(path).read_text()) or {})
        except (OSError, yaml.YAMLError) as exc:
            raise Dsa110msError(f"{path}: config file cannot be read ({exc})") from None
    update_config(config, parse_config_overrides(config_items))
    return Settings.from_config(config)


def absolute_paths(settings: Settings) -> dict[str, str]:
    """Every path setting (``format: directory`` in the schema) as an absolute path: for a run
    started in another working directory."""
    properties = load_schema()["properties"]
    keys = [key for key, spec in properties.items() if spec.get("format") == "directory"]
    return {key: os.path.abspath(getattr(settings, key)) for key in keys}


@dataclass(frozen=True)
class Outcome:
    """What became of a group in a batch: ``published``, ``changed`` (its published MS kept,
    its input files changed since), ``skipped`` (discovery left it out), ``failed`` (a job of
    it failed) or ``not run`` (the batch stopped, or failed, before it); ``reason`` says why
    (for ``published``, a warning, if any)."""

    status: str
    reason: str = ""


class WorkflowRun:
    """One Snakemake run of this workflow in ``workdir``, its output appended to ``log_path``.
    Its configuration: config/config.yaml, then ``configfiles``, then ``settings_file`` (a
    mapping written as YAML into the working directory, so that values reach Snakemake as
    they are: a ``--config`` value is parsed as YAML after its quotes are stripped, which turns
    ``out #2`` into ``out``), then the ``config`` items. ``pass_fds``: descriptors the run
    inherits (a lock it holds as long as it lives)."""

    def __init__(
        self,
        *,
        workdir: str | os.PathLike,
        settings: Settings,
        cores: int,
        snakemake_args: list[str],
        log_path: str | os.PathLike,
        configfiles: list[str] = (),
        settings_file: dict | None = None,
        config: list[str] = (),
        pass_fds: tuple[int, ...] = (),
    ):
        self.workdir = Path(workdir)
        self.settings = settings
        self.log_path = Path(log_path)
        self.settings_file = settings_file
        self.pass_fds = pass_fds
        files = [os.path.abspath(p) for p in configfiles]
        if settings_file is not None:
            files.append(str((self.workdir / SETTINGS_FILE).absolute()))
        self.command = [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(SNAKEFILE),
            "--cores",
            str(cores),
            *snakemake_args,
            "--configfile",
            str(DEFAULT_CONFIG),
            *files,
            *(["--config", *config] if config else []),
        ]
        self.process: subprocess.Popen | None = None
        self.started = 0.0
        self.code: int | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.settings_file is not None:
            write_text_atomically(
                self.workdir / SETTINGS_FILE, yaml.safe_dump(self.settings_file, sort_keys=False)
            )
        self.started = time.time()
        with open(self.log_path, "a") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} in {self.workdir}: ")
            log.write(f"{' '.join(self.command)}\n")
            log.flush()
            self.process = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=interrupt_when_orphaned,
                pass_fds=self.pass_fds,
            )

    def poll(self) -> int | None:
        """The run's exit code, or None while it runs."""
        if self.process is not None and self.code is None:
            self.code = self.process.poll()
        return self.code

    def wait(self) -> int:
        self.code = self.process.wait()
        return self.code

    def interrupt(self) -> None:
        """Snakemake's Ctrl-C: it stops its jobs and cleans up."""
        if self.process is not None and self.poll() is None:
            self.process.send_signal(signal.SIGINT)

    def manifest(self) -> Manifest | None:
        """The groups this run discovered (its manifest, if written since it started)."""
        path = self.workdir / MANIFEST_PATH
        try:
            if path.stat().st_mtime >= self.started:
                return Manifest.read(path)
        except (OSError, Dsa110msError):
            pass
        return None

    def final_ms(self, group: str) -> Path:
        return Path(self.settings.output_dir) / f"{group}.ms"

    def outcomes(self, ids: list[str] | None = None) -> dict[str, Outcome]:
        """What became of each group of ``ids`` (default: every group the run discovered or
        skipped by id), once the run has ended: as its run record says
        (:func:`dsa110ms.observe.metrics.last_run`, the rows of its summary table), else, for a
        run that ended without one (killed, or stopped before its start hook), from the
        output directory and the manifest."""
        manifest = self.manifest() or Manifest("")
        if ids is None:
            ids = sorted({*manifest.groups, *(r.group for r in manifest.skipped if r.group)})
        record = metrics.last_run(self.settings.metrics_dir, since=self.started) or {}
        rows = record.get("groups", {})
        result = {}
        for gid in ids:
            status, reason = rows.get(gid, (None, ""))
            if status in RECORDED:
                result[gid] = Outcome(RECORDED[status], reason)
            elif is_published(self.final_ms(gid)):
                result[gid] = Outcome("published")
            elif why_skipped := [r for r in manifest.skipped if gid in r]:
                result[gid] = Outcome("skipped", why_skipped[0])
            else:  # the run stopped, or failed, before any job of this group
                result[gid] = Outcome("not run", reason or f"see {self.log_path}")
        return result


#: A run summary's statuses (:func:`dsa110ms.run.hooks.group_outcome`) -> an outcome's status
#: (``stopped``: not run; the next run converts it).
RECORDED = {
    "converted": "published",
    "reconverted": "published",
    "up-to-date": "published",
    "CHANGED": "changed",  # its MS kept as it is, its inputs changed since: the reason says
    "FAILED": "failed",
    "skipped": "skipped",
    "not run": "not run",  # no job of it failed: the run stopped (or was refused) first
}


def groups_item(ids: list[str]) -> str:
    """The ``--config`` item of a batch of these group ids."""
    return f"groups={json.dumps(ids)}"
