"""What the Snakefile needs from the package: settings, the group manifest, paths and hooks.

Everything here is computed from the configuration and the working directory only, so the
Snakefile evaluates to the same jobs and paths in every process of a run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from . import scratch
from .config import validate_config
from .errors import DiscoveryError, ScratchError
from .groups import Manifest, discover

log = logging.getLogger("dsa110ms")

#: The main process writes the manifest here (relative to the working directory); the other
#: processes of the run (cluster jobs re-reading the Snakefile) read it instead of re-discovering.
MANIFEST_PATH = Path(".dsa110ms") / "manifest.json"


def export_package_path(basedir: str) -> None:
    """Put the checkout holding this package on PYTHONPATH for the jobs Snakemake starts."""
    paths = [basedir, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


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

    settings: dict
    manifest: Manifest | None
    discovery_error: str | None
    layout: scratch.ScratchLayout

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
                )
                manifest.write(manifest_path)
            else:
                manifest = Manifest.read(manifest_path)
        except DiscoveryError as exc:
            # Raised when the conversion targets are asked for, so that `snakemake simulate`
            # works before the input directory exists.
            error = str(exc)
        return cls(settings, manifest, error, layout)

    # --- what the rules ask for -------------------------------------------------------------

    def groups(self) -> list[str]:
        if self.discovery_error:
            raise DiscoveryError(self.discovery_error)
        return [g.id for g in self.manifest]

    def input_file(self, group: str, subband: str | int) -> str:
        return self.manifest.groups[group].files[int(subband)]

    def part(self, group: str, subband: str | int) -> str:
        return str(self.layout.part(group, subband))

    def parts_ascending_frequency(self, group: str) -> list[str]:
        """Parts of a group in SPW order: lowest frequency (sb15) first."""
        g = self.manifest.groups[group]
        return [self.part(group, sb) for sb in g.subbands_ascending_frequency()]

    def is_complete(self, group: str) -> bool:
        return not self.manifest.groups[group].missing_subbands

    def final_ms(self, group: str) -> str:
        return os.path.join(self.settings["output_dir"], f"{group}.ms")

    def all_final_ms(self) -> list[str]:
        return [self.final_ms(g) for g in self.groups()]


# --- hooks: scratch ownership and verified cleanup ------------------------------------------

_owner: scratch.OwnerLock | None = None


def protect_existing_scratch(layout: scratch.ScratchLayout) -> None:
    """At Snakefile evaluation in the main process: if this working directory's scratch exists
    (parts left by an earlier run that Snakemake may reuse), lock it before Snakemake looks at it,
    so no concurrent sweep can remove it. Creates nothing, so dry runs leave no trace."""
    global _owner
    if _owner is None and layout.lock_path.exists():
        _owner = scratch.OwnerLock.try_acquire(layout.lock_path, create=False)


def on_start(layout: scratch.ScratchLayout) -> None:
    """Own this run's scratch (create + lock), then remove scratch of runs that are dead."""
    global _owner
    if _owner is None:
        _owner = scratch.acquire_instance(layout)
    else:
        _owner.describe_owner()
    report = scratch.sweep_stale(layout.root, keep=layout.instance)
    log.info(
        "scratch %s (locked); stale sweep removed %d, skipped %d live",
        layout.instance_dir,
        len(report.removed),
        len(report.live),
    )


def on_finish(layout: scratch.ScratchLayout, *, success: bool) -> None:
    """Remove this run's whole scratch and verify it is gone; raise naming what is left."""
    global _owner
    try:
        scratch.remove_if_present(layout.instance_dir, layout.root)
    except ScratchError as exc:
        left = scratch.remaining_entries(layout.instance_dir)
        log.error("scratch cleanup failed: %s; left: %s", exc, ", ".join(left) or "nothing")
        raise
    finally:
        if _owner is not None:
            _owner.release()
            _owner = None
    log.info(
        "run %s: scratch %s removed and verified gone",
        "succeeded" if success else "failed",
        layout.instance_dir,
    )
