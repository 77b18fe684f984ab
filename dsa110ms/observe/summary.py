"""``python -m dsa110ms.observe.summary DIR``: list the published MSs in DIR as CASA sees them."""

from __future__ import annotations

import sys
from pathlib import Path

from dsa110ms import casa
from dsa110ms.ms.validate import summarize


def describe(ms: Path) -> str:
    """One line per MS: path, rows, SPWs, frequency range (MHz), fields, as read by CASA."""
    s = summarize(ms)
    obs = casa.tasks().listobs(vis=str(ms), listfile="")  # proves listobs reads it
    lo, hi = s.spw_freqs[0][0] / 1e6, s.spw_freqs[-1][-1] / 1e6
    return (
        f"{ms.resolve()}  rows={s.nrows} spws={s.n_spws} {lo:.3f}-{hi:.3f} MHz "
        f"fields={obs['nfields']} listobs=ok"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m dsa110ms.observe.summary OUTPUT_DIR", file=sys.stderr)
        return 2
    found = sorted(Path(args[0]).glob("*.ms"))
    if not found:
        print(f"no Measurement Sets in {args[0]}", file=sys.stderr)
        return 1
    print("Measurement Sets:")
    for ms in found:
        print("  " + describe(ms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
