"""DSA-110's primary beam for CASA: a voltage-pattern table for ``tclean(vptable=...)``.

CASA has no beam for the telescope names a DSA-110 MS carries. Without one, tclean warns
("vpmanager does not have a beam") and guesses from the ANTENNA table's dish diameter. The table
written here holds an Airy pattern of a 4.65 m unblocked dish (reference 1.4 GHz; CASA scales it
with frequency), keyed by every name a DSA-110 MS may carry: the name we write
(:data:`dsa110ms.telescope.MS_TELESCOPE_NAME`), the correlator's, and "DSA-110".

Use (also in the README), in a CASA that knows the observatory DSA_110 (the package's site
config: ``export CASASITECONFIG=$(python -m dsa110ms.casa siteconfig)``)::

    python -m dsa110ms.beam dsa110.vptable
    tclean(vis=..., gridder="standard", vptable="dsa110.vptable", pbcor=True, ...)

The standard gridder and ``widebandpbcor`` use the table (the pb at a source 0.4 deg off the
pointing is the Airy value within 0.1%: tests/test_casa_site.py); the mosaic gridder builds its
own Airy pattern from the ANTENNA table's DISH_DIAMETER (4.65 m, written by the converter) and
logs that it overrides the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dsa110ms import casa
from dsa110ms import telescope as tel
from dsa110ms.errors import OutputError, one_line_errors

#: Names the table answers to.
BEAM_TELESCOPE_NAMES = (*tel.MS_TELESCOPE_NAMES, tel.TELESCOPE_NAME, "DSA-110")
#: Radius (deg) out to which the pattern is tabulated: past the Airy first null (3.7 deg at
#: 1.28 GHz, the band's bottom) and the first sidelobe.
MAX_RADIUS_DEG = 7.0
REFERENCE_FREQUENCY_GHZ = 1.4


def write_vptable(path: str | Path) -> Path:
    """Write the voltage-pattern table at ``path`` (a new directory)."""
    path = Path(path)
    if path.exists():
        raise OutputError(f"{path}: exists; the beam table is written only to a new path")
    vp = casa.tools().vpmanager()
    vp.reset()
    try:
        for name in BEAM_TELESCOPE_NAMES:
            vp.setpbairy(
                telescope=name,
                dishdiam=f"{tel.DISH_DIAMETER_M}m",
                blockagediam="0m",
                maxrad=f"{MAX_RADIUS_DEG}deg",
                reffreq=f"{REFERENCE_FREQUENCY_GHZ}GHz",
                dopb=True,
            )
        if not vp.saveastable(str(path)):
            raise OutputError(f"{path}: CASA's vpmanager could not write the beam table")
    finally:
        vp.reset()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write DSA-110's primary beam table for tclean.")
    parser.add_argument("path", help="new directory, e.g. dsa110.vptable")
    args = parser.parse_args(argv)
    with one_line_errors():
        print(write_vptable(args.path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
