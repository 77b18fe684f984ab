"""A plain (non-editable) install of the package ships every file it reads, and converts from
outside the checkout: every process of the run imports the installed copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import REPO, snakemake_command
from .test_robustness import small_config, small_groups

#: Records which dsa110ms every Python process of the run imports, when it imports it (a finder
#: ahead of the others that asks them and writes down the answer).
SITECUSTOMIZE = textwrap.dedent(
    """
    import os, sys

    class RecordDsa110ms:
        def find_spec(self, name, path, target=None):
            if name != "dsa110ms":
                return None
            for finder in sys.meta_path:
                spec = None if finder is self else finder.find_spec(name, path, target)
                if spec is not None:
                    with open(os.environ["DSA110MS_IMPORTED_FROM"], "a") as f:
                        where = os.path.realpath(spec.origin)
                        f.write(f"{where} {' '.join(sys.argv)[:200]}\\n")
                    return spec
            return None

    sys.meta_path.insert(0, RecordDsa110ms())
    """
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip install --no-deps --target`` of a copy of the package's sources (so that the
    build writes nothing into the checkout): the directory holding the installed dsa110ms."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(
        REPO / "dsa110ms", src / "dsa110ms", ignore=shutil.ignore_patterns("__pycache__")
    )
    site = tmp / "site"
    subprocess.run(
        [
            sys.executable,
            *("-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            *("--no-deps", "--no-build-isolation", "--target", str(site), str(src)),
        ],
        check=True,
        cwd=tmp,
    )
    return site


def test_every_file_of_the_package_is_installed(installed):
    """Every file under dsa110ms/ that git tracks (code and data) is in the plain install."""
    tracked = subprocess.run(
        ["git", "ls-files", "dsa110ms"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    missing = [path for path in tracked if not (installed / path).is_file()]
    assert tracked and not missing


def test_installed_copy_works_outside_the_checkout(installed, tmp_path):
    code = textwrap.dedent(
        """
        import dsa110ms
        from dsa110ms import casa, schema, telescope
        print(dsa110ms.__file__)
        assert telescope.pad_positions_wgs84().shape == (117, 3)
        assert schema.SCHEMA_PATH.is_file() and casa.SITE_CONFIG.is_file()
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(installed)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(installed / "dsa110ms" / "__init__.py")


#: What a site keeps of the workflow beside an installed package: everything but its sources.
WORKFLOW_FILES = ("Snakefile", "rules", "scripts", "config", "envs", "profiles", "docs/report")


def test_conversion_with_the_installed_copy(installed, tmp_path, scratch_root):
    """A real run of a copy of the workflow files (no package beside them: Snakemake puts the
    Snakefile's directory first on the main process's path), in a working directory outside the
    checkout, the installed copy on every process's path (PYTHONPATH carries to the jobs, whose
    command is ``python -m dsa110ms.run.partjob``): it converts, and every process imported
    the installed dsa110ms."""
    workflow = tmp_path / "workflow"
    for name in WORKFLOW_FILES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        (workflow / name).parent.mkdir(parents=True, exist_ok=True)
        copy(REPO / name, workflow / name)
    site = tmp_path / "record-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    imported = tmp_path / "imported-from.txt"
    d = tmp_path / "in"
    (gid,) = small_groups(d, 1, n_integrations=2, n_antennas=4)
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "out"
    cmd = snakemake_command(work, "--cores", "2", config=small_config(d, out, scratch_root))
    cmd[cmd.index("--snakefile") + 1] = str(workflow / "Snakefile")
    cmd[cmd.index("--configfile") + 1] = str(workflow / "config" / "config.yaml")
    env = {"PYTHONPATH": f"{installed}{os.pathsep}{site}", "DSA110MS_IMPORTED_FROM": str(imported)}
    proc = subprocess.run(
        cmd,
        cwd=work,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert (out / f"{gid}.ms").is_dir()
    records = imported.read_text().splitlines()
    # the main process, the template, the two parts (python -m), the join and the report
    assert len(records) == 6 and sum(" -m " in f" {r}" for r in records) == 2, records
    installed_init = str(installed / "dsa110ms" / "__init__.py")
    assert all(r.split()[0] == installed_init for r in records), records
