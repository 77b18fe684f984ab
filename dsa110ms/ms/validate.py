"""Validation: the parts of a group against its template, and a joined MS against its parts.

Before joining (:func:`check_parts`): every part has the template's integrations, rows,
baselines and geometry, the same number of channels, and no two parts overlap in frequency;
a part that differs is named by its input file (a permanent failure: retrying cannot fix it).

After joining (:func:`validate_joined`), before anyone can see the MS:

- it opens with CASA's ``ms`` and ``msmetadata`` tools, and every subtable the main table refers
  to exists and opens;
- rows: the sum of the parts' (one SPW per part), or each part's (single SPW);
- SPW frequencies are the parts' (one SPW per part, or all channels in one SPW), channels
  ascending within and across SPWs and, for a complete group, one contiguous grid;
- the FIELD table holds the parts' fields once (the 16 subbands share their fields, one per
  integration in DSA-110 mode);
- the TIME range equals the parts' TIME range;
- UVW are finite and no longer than the array's longest baseline.

:class:`MsSummary` is what both sides promise: frequencies in Hz, TIME in MJD seconds.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dsa110ms import casa
from dsa110ms.errors import JoinError, ValidationError
from dsa110ms.ms.part import open_part
from dsa110ms.ms.template import DIGEST_KEYWORD, SOURCE_KEYWORD

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
    n_times: int

    @property
    def n_spws(self) -> int:
        return len(self.spw_freqs)


def summarize(ms_path: str | os.PathLike) -> MsSummary:
    """Read the summary of an MS (python-casacore: the join already has it loaded)."""
    from casacore import tables

    path = str(ms_path)
    try:
        with tables.table(path, ack=False) as tb:
            nrows = tb.nrows()
            times = tb.getcol("TIME") if nrows else np.zeros(1)
        with tables.table(f"{path}/SPECTRAL_WINDOW", ack=False) as tb:
            freqs = tuple(
                np.asarray(tb.getcell("CHAN_FREQ", i), dtype=float) for i in range(tb.nrows())
            )
        with tables.table(f"{path}/FIELD", ack=False) as tb:
            names = tuple(str(n) for n in tb.getcol("NAME")) if tb.nrows() else ()
    except RuntimeError as exc:
        raise ValidationError(f"{path}: cannot be read as a Measurement Set: {exc}") from exc
    return MsSummary(
        path, nrows, freqs, names, float(times.min()), float(times.max()), len(np.unique(times))
    )


def check_opens(ms_path: str) -> None:
    """Every referenced subtable exists and opens; CASA's ms and msmetadata tools open it."""
    from casacore import tables

    try:
        with tables.table(ms_path, ack=False) as tb:
            keywords = tb.getkeywords()
        for name, value in keywords.items():
            if isinstance(value, str) and value.startswith("Table: "):
                sub = value.removeprefix("Table: ")
                if not os.path.isdir(sub):
                    raise ValidationError(f"{ms_path}: subtable {name} missing ({sub})")
                with tables.table(sub, ack=False):
                    pass
        tools = casa.tools()
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
    """Channels ascend within and across SPWs (in SPW order); with ``contiguous``, they are one
    evenly spaced grid without gaps (a group converted without some subbands under
    incomplete_groups=convert has gaps)."""
    for i, f in enumerate(spw_freqs):
        if len(f) > 1 and not np.all(np.diff(f) > 0):
            raise ValidationError(f"{where}: SPW {i} channels are not in ascending frequency")
        if i and f[0] <= spw_freqs[i - 1][-1]:
            raise ValidationError(
                f"{where}: SPW {i} starts at {f[0]:.3f} Hz, not above SPW {i - 1} "
                f"(ends {spw_freqs[i - 1][-1]:.3f} Hz): SPWs must ascend"
            )
    steps = np.diff(np.concatenate(spw_freqs))
    if contiguous and len(steps) and np.ptp(steps) > FREQ_TOLERANCE_HZ:
        k = int(np.argmax(np.abs(steps - steps[0])))
        raise ValidationError(
            f"{where}: channels are not contiguous (step {steps[k]:.3f} Hz after "
            f"{np.concatenate(spw_freqs)[k]:.3f} Hz, channel spacing {steps[0]:.3f} Hz)"
        )


def check_uvw(ms_path: str, where: str) -> None:
    """UVW finite and no longer than the longest baseline of the array (plus 1 m)."""
    from casacore import tables

    with tables.table(ms_path, ack=False) as tb:
        uvw = tb.getcol("UVW")  # (nrow, 3)
    with tables.table(f"{ms_path}/ANTENNA", ack=False) as tb:
        pos = tb.getcol("POSITION")  # (nant, 3)
    if not np.all(np.isfinite(uvw)):
        raise ValidationError(f"{where}: UVW has non-finite values")
    longest = max(np.linalg.norm(pos - p, axis=1).max() for p in pos)
    got = np.linalg.norm(uvw, axis=1).max() if uvw.size else 0.0
    if got > longest + 1.0:
        raise ValidationError(
            f"{where}: |UVW| up to {got:.1f} m, longer than the longest baseline ({longest:.1f} m)"
        )


def validate_joined(
    joined: str | os.PathLike,
    parts: list[MsSummary],
    group: str,
    *,
    contiguous: bool = True,
    spw_layout: str = "per_subband",
    field_per_integration: bool = False,
) -> MsSummary:
    """Check a joined MS against its parts (in SPW order); raises ValidationError naming group.

    ``contiguous``: the parts cover the band without gaps (the group is complete).
    ``spw_layout``: "per_subband" (one SPW per part, rows add up) or "single" (one SPW with all
    channels, rows as in each part). ``field_per_integration`` (DSA-110 mode): one FIELD per
    integration time."""
    where = f"group {group} ({joined})"
    check_opens(str(joined))
    got = summarize(joined)
    if spw_layout == "single":
        want_rows = parts[0].nrows
        want_freqs = (np.concatenate([p.spw_freqs[0] for p in parts]),)
    else:
        want_rows = sum(p.nrows for p in parts)
        want_freqs = tuple(p.spw_freqs[0] for p in parts)
    if got.nrows != want_rows:
        raise ValidationError(f"{where}: {got.nrows} rows, the parts make {want_rows}")
    if got.n_spws != len(want_freqs):
        raise ValidationError(f"{where}: {got.n_spws} SPWs, expected {len(want_freqs)}")
    for i, (f, want) in enumerate(zip(got.spw_freqs, want_freqs, strict=True)):
        if len(f) != len(want) or np.abs(f - want).max() > FREQ_TOLERANCE_HZ:
            raise ValidationError(f"{where}: SPW {i} frequencies differ from the parts'")
    check_frequencies(got.spw_freqs, where, contiguous=contiguous)
    want_fields = sorted(set().union(*(p.field_names for p in parts)))
    if sorted(got.field_names) != want_fields:
        raise ValidationError(
            f"{where}: fields {sorted(got.field_names)} differ from the parts' {want_fields}"
        )
    if field_per_integration and len(got.field_names) != got.n_times:
        raise ValidationError(
            f"{where}: {len(got.field_names)} fields for {got.n_times} integrations; "
            "expected one meridian field per integration"
        )
    t_lo, t_hi = min(p.time_min for p in parts), max(p.time_max for p in parts)
    if (got.time_min, got.time_max) != (t_lo, t_hi):
        raise ValidationError(
            f"{where}: TIME range {got.time_min}-{got.time_max} s differs from the parts' "
            f"{t_lo}-{t_hi} s"
        )
    check_uvw(str(joined), where)
    return got


def check_parts(
    template: str | os.PathLike, parts: Sequence[str | os.PathLike], sources: Mapping[str, str]
) -> list[MsSummary]:
    """Check every part against the group's template; returns what each part promises the
    joined MS (as one SPW), lowest frequency first. A subband that differs (integrations, rows,
    channels, or any header item of the geometry) is named by its input file: a permanent
    error, retrying cannot fix it."""
    from casacore import tables

    template = str(template)
    with tables.table(template, ack=False) as tb:
        digest, reference = tb.getkeyword(DIGEST_KEYWORD), tb.getkeyword(SOURCE_KEYWORD)
        times = tb.getcol("TIME")
        antennas = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
    with tables.table(f"{template}/FIELD", ack=False) as tb:
        fields = tuple(str(n) for n in tb.getcol("NAME")) if tb.nrows() else ()
    summaries, files = [], {}
    for p in map(open_part, parts):
        m = p.manifest
        files[str(p.path)] = source = sources.get(str(p.path), m["source_file"])
        n_chan = len(summaries[0].spw_freqs[0]) if summaries else m["channels"]
        for what, want, got in (
            ("number of times", len(np.unique(times)), m["times"]),
            ("number of rows", len(times), m["rows"]),
            ("number of channels", n_chan, m["channels"]),
            ("geometry (times, baselines, antennas or pointing)", digest, m["geometry_digest"]),
        ):
            if want != got:
                raise JoinError(
                    f"{source}: {what} {got} differs from {reference} ({want}); the group "
                    "cannot be joined"
                )
        got = p.array("ANTENNA1"), p.array("ANTENNA2")
        if any(np.any(g != a) for g, a in zip(got, antennas, strict=True)):
            raise JoinError(f"{source}: baselines are not in the template's row order")
        summaries.append(
            MsSummary(
                str(p.path),
                len(times),
                (p.chan_freq,),
                fields,
                times.min(),
                times.max(),
                m["times"],
            )
        )
    # SPW order: lowest frequency first, whatever the subband numbering
    summaries.sort(key=lambda s: s.spw_freqs[0].min())
    for below, above in itertools.pairwise(summaries):
        if above.spw_freqs[0].min() <= below.spw_freqs[0].max():
            raise JoinError(
                f"{files[above.path]}: its channels "
                f"({above.spw_freqs[0].min() / 1e6:.6f}-{above.spw_freqs[0].max() / 1e6:.6f} MHz)"
                f" overlap those of {files[below.path]} "
                f"({below.spw_freqs[0].min() / 1e6:.6f}-{below.spw_freqs[0].max() / 1e6:.6f} MHz):"
                " a subband is duplicated or mislabelled; the group cannot be joined"
            )
    return summaries
