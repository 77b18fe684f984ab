"""The pinned environment: conda spec = lock file, CASA offline, both casacore builds together."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import yaml

from dsa110ms.groups import scan

REPO = Path(__file__).resolve().parent.parent


def lock_pins() -> list[str]:
    lines = (REPO / "requirements.lock").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_conda_spec_has_the_lock_file_pins():
    env = yaml.safe_load((REPO / "envs" / "dsa110ms.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == lock_pins()


def test_lock_resolves_the_numpy_numba_slurm_trap():
    pins = dict(p.split("==") for p in lock_pins())
    assert pins["numpy"].startswith("2.3.")
    assert pins["numba"].startswith("0.62.")
    assert "snakemake-executor-plugin-slurm" in pins and "six" in pins and "casadata" in pins


def test_casa_starts_offline_without_touching_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    code = (
        "from dsa110ms import casa; import casadata;"
        "ct = casa.tools(); import casatasks;"
        "me = ct.measures(); assert me.observatory('DSA_110')['refer'] == 'WGS84';"
        "from casatools import ctsys; print(ctsys.measurespath())"
    )
    env = {k: v for k, v in os.environ.items() if k != "CASASITECONFIG"}
    env["HOME"] = str(home)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "casadata" in proc.stdout
    assert not (home / ".casa").exists()
    assert not list(tmp_path.glob("casa-*.log")), "CASA must not litter the working directory"


def test_python_casacore_and_casatools_in_one_process(two_groups, tmp_path):
    """pyuvdata writes with python-casacore; casatools reads it back in the same process (as
    the join job writes with python-casacore and validates with casatools)."""
    from dsa110ms.ms.template import write_pyuvdata_ms
    from dsa110ms.ms.validate import check_opens, summarize

    f = next(x for x in scan(two_groups)[0] if x.subband == 15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ms = write_pyuvdata_ms(f.path, tmp_path / "group" / "sb15.ms")
    check_opens(str(ms))
    s = summarize(ms)
    assert s.nrows == 3 * 36 and s.n_spws == 1 and len(s.field_names) == 3
    assert s.spw_freqs[0][0] < s.spw_freqs[0][-1]
