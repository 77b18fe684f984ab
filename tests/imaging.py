"""DP3 (and through it EveryBeam's C++ library) run on the workflow's Measurement Sets, for
the tests: the ``dp3`` wheel of requirements-test.lock (its command is ``DP3.py`` in the venv's
bin). Test-only readers, never runtime dependencies.

What DP3 6.6.0 needs of an MS, and what ours are:

* one FIELD: a per_integration MS (one FIELD per integration) is refused ("Multiple entries
  in FIELD table"); phase_center: group_meridian or fixed writes one.
* one SPW per run: several are refused ("The MS appears to have multiple subbands") unless
  ``msin.band`` picks one (spw_layout: single writes one SPW of every channel).
* four correlations: its MS reader refuses any other number ("DP3 expects a measurement set
  with 4 polarizations"), and DSA-110 records two (XX, YY). :func:`four_polarization_copy`
  makes a copy DP3 reads: XY and YX zero, of zero weight, nothing else changed.
* measures tables: the wheel's casacore has none of its own; :func:`dp3_environment` points it
  at the package's measures overlay (which knows the observatory DSA_110) by ``CASARCFILES``,
  leaving ``~/.casarc`` alone.
* ``OPENBLAS_NUM_THREADS=1``: without it the wheel refuses to start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from casacore import tables

from dsa110ms import casa

#: DP3's command as the dp3 wheel installs it (a console script beside this Python).
DP3 = Path(sys.executable).parent / "DP3.py"
#: Correlation types (casacore Stokes enum) DP3 reads: XX XY YX YY.
LINEAR_FOUR = [9, 10, 11, 12]
CORR_PRODUCT_FOUR = [[0, 0], [0, 1], [1, 0], [1, 1]]
#: What DP3 says of an MS with one FIELD per integration, and of one with two correlations.
MULTIPLE_FIELDS = "Multiple entries in FIELD table"
NOT_FOUR_POLARIZATIONS = "DP3 expects a measurement set with 4 polarizations"


def dp3_environment(directory: Path) -> dict[str, str]:
    """The environment DP3 runs in: one OpenBLAS thread, and casacore's measures directory
    (the package's overlay) in a casarc file of its own in ``directory``."""
    casarc = Path(directory) / "dp3.casarc"
    casarc.write_text(casa.casarc_line(casa.measures_overlay()) + "\n")
    env = dict(os.environ)
    env.update({"OPENBLAS_NUM_THREADS": "1", "CASARCFILES": str(casarc)})
    return env


def run_dp3(*keys: str, cwd: Path) -> subprocess.CompletedProcess:
    """``DP3.py key=value ...`` in ``cwd``; whatever it did (stdout and stderr together in
    ``.stdout``), for the caller to check ``returncode``."""
    return subprocess.run(
        [str(DP3), *keys],
        cwd=cwd,
        env=dp3_environment(cwd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def dp3_average(
    ms: Path, out: Path, *, band: int = 0, freqstep: int = 1, timestep: int = 1
) -> subprocess.CompletedProcess:
    """DP3 msin -> averager -> msout: SPW ``band`` of ``ms`` averaged by ``freqstep`` channels
    and ``timestep`` integrations into the new MS ``out`` (``ms`` is only read)."""
    return run_dp3(
        f"msin={ms}",
        f"msin.band={band}",
        f"msout={out}",
        "msout.overwrite=false",
        "steps=[averager]",
        f"averager.freqstep={freqstep}",
        f"averager.timestep={timestep}",
        cwd=Path(out).parent,
    )


def dp3_applybeam(
    ms: Path, out: Path, *, band: int = 0, direction: tuple[float, float] | None = None
) -> subprocess.CompletedProcess:
    """DP3 msin -> applybeam -> msout: SPW ``band`` of ``ms`` corrected for EveryBeam's beam
    (divided by it, DP3's default) towards ``direction`` (ICRS ra, dec in radians; default
    the phase centre), written to the new MS ``out``."""
    keys = [f"msin={ms}", f"msin.band={band}", f"msout={out}", "steps=[applybeam]"]
    if direction is not None:
        ra, dec = (float(angle) for angle in direction)
        keys.append(f"applybeam.direction=[{ra!r}rad,{dec!r}rad]")
    return run_dp3(*keys, cwd=Path(out).parent)


def four_polarization_copy(ms: Path, dest: Path) -> Path:
    """A copy of ``ms`` at ``dest`` with four correlations (XX XY YX YY) where it had XX, YY:
    the two it had unchanged, XY and YX zero and of zero weight (DP3 reads only four). Not
    flagged: DP3 flags a visibility's every correlation when one is flagged. Only the copy is
    written."""
    dest = Path(shutil.copytree(ms, dest))
    with tables.table(f"{dest}/POLARIZATION", readonly=False, ack=False) as tb:
        assert tb.nrows() == 1 and list(tb.getcell("CORR_TYPE", 0)) == [9, 12], "XX, YY only"
        tb.putcell("CORR_TYPE", 0, np.array(LINEAR_FOUR, dtype=np.int32))
        tb.putcell("CORR_PRODUCT", 0, np.array(CORR_PRODUCT_FOUR, dtype=np.int32))
        tb.putcell("NUM_CORR", 0, 4)
    with tables.table(str(dest), readonly=False, ack=False) as tb:
        for name, fill in (
            ("DATA", 0),
            ("FLAG", False),
            ("WEIGHT_SPECTRUM", 0),
            ("WEIGHT", 0),
            ("SIGMA", 0),
        ):
            if name in tb.colnames():
                two = tb.getcol(name)
                four = np.full((*two.shape[:-1], 4), fill, dtype=two.dtype)
                four[..., 0], four[..., 3] = two[..., 0], two[..., 1]
                if name == "SIGMA":
                    four[..., 1:3] = 1  # a weight of zero, a sigma of one
                rewrite_column(tb, name, four)
    return dest


def rewrite_column(tb, name: str, values: np.ndarray) -> None:
    """Replace the fixed-shape array column ``name`` (of the main table) by one of
    ``values``'s cell shape, in a tiled storage manager of its own (casacore cannot reshape a
    fixed-shape column)."""
    desc = tb.getcoldesc(name)
    desc["ndim"] = values.ndim - 1
    desc["shape"] = list(values.shape[1:])
    desc["option"] = 5  # Direct | FixedShape
    desc["_c_order"] = True
    desc["dataManagerType"] = "TiledColumnStMan"
    desc["dataManagerGroup"] = f"{name}_four"
    tb.removecols(name)
    tb.addcols(
        tables.maketabdesc(tables.makecoldesc(name, desc)),
        {"TYPE": "TiledColumnStMan", "NAME": f"{name}_four", "SPEC": {}},
    )
    tb.putcol(name, values)
