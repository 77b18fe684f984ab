"""Shared fixtures: real Snakemake runs in temporary working directories, scratch on tmpfs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import yaml

from dsa110ms.faults import FAULTS_ENV
from dsa110ms.ms.publish import OutputArea
from dsa110ms.simulate import SimulationSpec, simulate

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
SCRATCH_PARENT = Path("/dev/shm")


@pytest.fixture
def scratch_root():
    """A private scratch root on tmpfs; after the test it must hold nothing."""
    root = SCRATCH_PARENT / f"dsa110ms-test-{uuid.uuid4().hex[:8]}"
    yield root
    left = sorted(str(p) for p in root.rglob("*")) if root.exists() else []
    shutil.rmtree(root, ignore_errors=True)
    assert not left, f"scratch left behind ({len(left)} entries): {left[:5]}"


def snakemake_command(workdir: Path, *args: str, config: dict | None = None) -> list[str]:
    """The Snakemake CLI command for this repository's workflow in ``workdir``. A ``faults``
    entry of ``config`` is not configuration: it goes into the run's environment
    (:data:`dsa110ms.faults.FAULTS_ENV`, through ``env``, which execs Snakemake in place)."""
    config = dict(config or {})
    faults = config.pop("faults", None)
    env = ["env", f"{FAULTS_ENV}={json.dumps(faults)}"] if faults else []
    cmd = [
        *env,
        str(SNAKEMAKE),
        *args,  # first: --configfile takes every word after it
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(REPO / "config" / "config.yaml"),
    ]
    if config:  # a second config file overrides the first, with YAML types intact
        override = workdir / f"test-config-{uuid.uuid4().hex[:6]}.yaml"
        override.write_text(yaml.safe_dump({k: _plain(v) for k, v in config.items()}))
        cmd.append(str(override))
    return cmd


#: Run a command as root without the capabilities that bypass file permissions, so that
#: unreadable inputs and unwritable outputs behave for the test as for any user.
WITHOUT_DAC_OVERRIDE = [
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
]


def run_snakemake(
    workdir: Path, *args: str, config: dict | None = None, check: bool = True, prefix=()
):
    """Run the real Snakemake CLI on this repository's workflow in ``workdir``; its whole output
    (Snakemake writes to stdout or stderr depending on the terminal) is in ``.stdout``."""
    cmd = [*prefix, *snakemake_command(workdir, *args, config=config)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-6000:]}"
        )
    return proc


def convert(input_dir, work: Path, **config) -> Path:
    """Run the workflow once; returns the output directory. Scratch must end empty."""
    root = SCRATCH_PARENT / f"dsa110ms-test-{uuid.uuid4().hex[:8]}"
    out = work / "out"
    try:
        run_snakemake(
            work,
            "--cores",
            "2",
            config={"input_dir": input_dir, "output_dir": out, "scratch_root": root, **config},
        )
        assert not (root.exists() and any(root.iterdir())), "scratch left behind"
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def _plain(value):
    return str(value) if isinstance(value, Path) else value


@pytest.fixture(scope="session")
def two_groups(tmp_path_factory) -> Path:
    """Two complete small groups (16 subbands x 48 channels, 8 antennas, 3 integrations)."""
    d = tmp_path_factory.mktemp("two_groups")
    simulate(SimulationSpec(n_groups=2), d)
    return d


def hold_lock(root, workdir):
    """A separate live process that owns workdir's scratch (like a running Snakemake)."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from dsa110ms.run import scratch
        layout = scratch.ScratchLayout.for_workdir({str(root)!r}, {str(workdir)!r})
        lock = scratch.acquire_instance(layout)
        (layout.group_dir("g")).mkdir()
        (layout.group_dir("g") / "sb00.part").mkdir()
        print("locked", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def leftovers(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*")) if root.exists() else []


def mounted_tmpfs(directory: Path, size: str):
    """A tmpfs of ``size`` (mount's form: ``3m``) mounted at the new ``directory`` while the
    generator runs (needs root, as CI runs; else the test is skipped)."""
    directory.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)]
    if subprocess.run(mount).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield directory
    subprocess.run(["umount", str(directory)], check=True)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 3 MB tmpfs mounted for the test: a file system that fills."""
    yield from mounted_tmpfs(tmp_path / "tiny", "3m")


def visible(directory: Path) -> list[str]:
    """What a user sees in an output directory: names not starting with a dot (the workflow's
    own state is in ``.dsa110ms-output``)."""
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


def staging_left(output_dir: Path) -> list[str]:
    """Staging MSs left in an output directory (there must be none after a run)."""
    return leftovers(OutputArea.of(output_dir).state_dir / "staging")


@pytest.fixture(scope="session")
def converted(two_groups, tmp_path_factory):
    """Two complete groups converted in one run."""
    work = tmp_path_factory.mktemp("work")
    root = SCRATCH_PARENT / f"dsa110ms-test-{uuid.uuid4().hex[:8]}"
    config = {"input_dir": two_groups, "output_dir": work / "out", "scratch_root": root}
    proc = run_snakemake(work, "--cores", "2", config=config)
    yield work, config, proc
    left = leftovers(root)
    shutil.rmtree(root, ignore_errors=True)
    assert not left, f"scratch left behind ({len(left)} entries): {left[:5]}"
