"""Validation of a joined Measurement Set and its atomic publication.

A joined MS is checked against what its parts promise before anyone can see it:

- it opens with CASA's ``ms`` and ``msmetadata`` tools, and every subtable the main table refers
  to exists and opens;
- main-table rows = sum of the parts' rows;
- one SPW per part with the part's frequencies, each with ascending channels, SPWs ascending
  and, for a complete group, contiguous (channel spacing preserved across SPW edges);
- the FIELD table holds the parts' fields once (the 16 subbands share their fields);
- the TIME range equals the parts' TIME range.

Only then is it renamed, in one ``rename(2)``, from its staging name to ``<output_dir>/<group>.ms``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import casa
from .errors import ValidationError

log = logging.getLogger(__name__)

#: Frequencies are compared to this precision (Hz); the channel grid is exact in binary.
FREQ_TOLERANCE_HZ = 1e-3


@dataclass(frozen=True)
class MsSummary:
    """What validation needs to know about an MS (part or joined). Frequencies in Hz, TIME in s."""

    path: str
    nrows: int
    spw_freqs: tuple[np.ndarray, ...]  # CHAN_FREQ of each SPW, in SPW order
    field_names: tuple[str, ...]
    time_min: float
    time_max: float

    @property
    def n_spws(self) -> int:
        return len(self.spw_freqs)


def summarize(ms_path: str | os.PathLike) -> MsSummary:
    """Read the summary of an MS with casatools' table tool."""
    path = str(ms_path)
    try:
        with casa.table(path) as tb:
            nrows = tb.nrows()
            times = tb.getcol("TIME") if nrows else np.zeros(1)
        with casa.table(f"{path}/SPECTRAL_WINDOW") as tb:
            freqs = tuple(
                np.asarray(tb.getcell("CHAN_FREQ", i), dtype=float) for i in range(tb.nrows())
            )
        with casa.table(f"{path}/FIELD") as tb:
            names = tuple(str(n) for n in tb.getcol("NAME")) if tb.nrows() else ()
    except RuntimeError as exc:
        raise ValidationError(f"{path}: cannot be read as a Measurement Set: {exc}") from exc
    return MsSummary(path, nrows, freqs, names, float(times.min()), float(times.max()))


def check_opens(ms_path: str) -> None:
    """The ms and msmetadata tools open it and every referenced subtable exists and opens."""
    tools = casa.tools()
    try:
        with casa.table(ms_path) as tb:
            keywords = tb.getkeywords()
        for name, value in keywords.items():
            if isinstance(value, str) and value.startswith("Table: "):
                sub = value.removeprefix("Table: ")
                if not os.path.isdir(sub):
                    raise ValidationError(f"{ms_path}: subtable {name} missing ({sub})")
                with casa.table(sub):
                    pass
        ms = tools.ms()
        ms.open(ms_path)
        ms.close()
        msmd = tools.msmetadata()
        msmd.open(ms_path)
        msmd.nspw()
        msmd.done()
    except RuntimeError as exc:
        raise ValidationError(f"{ms_path}: CASA cannot open it: {exc}") from exc


def check_frequencies(
    spw_freqs: tuple[np.ndarray, ...], where: str, *, contiguous: bool = True
) -> None:
    """Every SPW ascending; SPWs ascending; with ``contiguous``, no gap between SPWs (a group
    converted without some subbands under incomplete_groups=convert has gaps)."""
    for i, f in enumerate(spw_freqs):
        if len(f) > 1 and not np.all(np.diff(f) > 0):
            raise ValidationError(f"{where}: SPW {i} channels are not in ascending frequency")
    for i in range(1, len(spw_freqs)):
        prev, cur = spw_freqs[i - 1], spw_freqs[i]
        step = (prev[-1] - prev[0]) / (len(prev) - 1) if len(prev) > 1 else None
        if cur[0] <= prev[-1]:
            raise ValidationError(
                f"{where}: SPW {i} starts at {cur[0]:.3f} Hz, not above SPW {i - 1} "
                f"(ends {prev[-1]:.3f} Hz): SPWs must ascend"
            )
        if contiguous and step is not None and abs(cur[0] - prev[-1] - step) > FREQ_TOLERANCE_HZ:
            raise ValidationError(
                f"{where}: SPW {i - 1} and SPW {i} are not contiguous "
                f"(gap {cur[0] - prev[-1]:.3f} Hz, channel spacing {step:.3f} Hz)"
            )


def validate_joined(
    joined: str | os.PathLike, parts: list[MsSummary], group: str, *, contiguous: bool = True
) -> MsSummary:
    """Check a joined MS against its parts (in SPW order); raises ValidationError naming group.

    ``contiguous``: the parts cover the band without gaps (the group is complete)."""
    where = f"group {group} ({joined})"
    check_opens(str(joined))
    got = summarize(joined)
    want_rows = sum(p.nrows for p in parts)
    if got.nrows != want_rows:
        raise ValidationError(f"{where}: {got.nrows} rows, parts have {want_rows}")
    if got.n_spws != len(parts):
        raise ValidationError(f"{where}: {got.n_spws} SPWs, expected one per part ({len(parts)})")
    for i, (f, part) in enumerate(zip(got.spw_freqs, parts, strict=True)):
        if len(f) != len(part.spw_freqs[0]) or np.abs(f - part.spw_freqs[0]).max() > 1e-3:
            raise ValidationError(f"{where}: SPW {i} frequencies differ from part {part.path}")
    check_frequencies(got.spw_freqs, where, contiguous=contiguous)
    want_fields = sorted(set().union(*(p.field_names for p in parts)))
    if sorted(got.field_names) != want_fields:
        raise ValidationError(
            f"{where}: fields {sorted(got.field_names)} differ from the parts' {want_fields}"
        )
    t_lo, t_hi = min(p.time_min for p in parts), max(p.time_max for p in parts)
    if (got.time_min, got.time_max) != (t_lo, t_hi):
        raise ValidationError(
            f"{where}: TIME range {got.time_min}-{got.time_max} s differs from the parts' "
            f"{t_lo}-{t_hi} s"
        )
    return got


def publish(staging: Path, final: Path) -> None:
    """Make a validated MS visible at ``final`` in one rename; never replaces an existing one."""
    if os.path.lexists(final):
        raise ValidationError(f"{final}: already exists; not replaced by {staging}")
    os.rename(staging, final)
    log.info("published %s", final)
