"""Validation: the parts of a group against its template, and a joined MS against its parts.

Before joining (:func:`check_parts`): every part has the integrations, rows, channels and
geometry of the rest of the group and of the template, the template's baselines, and no two parts
overlap in frequency; a part that differs is named by its input file, with what differs (a
permanent failure: retrying cannot fix it). The file named is the one that differs from the
majority of the group, not the first compared (the template's source is a file like the others).

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
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dsa110ms import casa
from dsa110ms.errors import JoinError, ValidationError
from dsa110ms.ms.part import open_part
from dsa110ms.ms.template import (
    DIGEST_KEYWORD,
    ITEMS_KEYWORD,
    PHASE_CENTER_KEYWORD,
    SOURCE_KEYWORD,
)
from dsa110ms.phasecenter import FIELD_NAMES
from dsa110ms.rawuvh5 import describe_geometry_difference

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
    spw_freqs: tuple[np.ndarray, ...],
    where: str,
    *,
    contiguous: bool = True,
    names: Sequence[str] | None = None,
) -> None:
    """Channels ascend within and across SPWs (in SPW order); with ``contiguous``, they are one
    evenly spaced grid without gaps (a group converted without some subbands under
    incomplete_groups=convert has gaps). ``names``: what each SPW was made from (its part), named
    with the SPW in messages."""

    def spw(i: int) -> str:
        return f"SPW {i} ({names[i]})" if names else f"SPW {i}"

    for i, f in enumerate(spw_freqs):
        if len(f) > 1 and not np.all(np.diff(f) > 0):
            raise ValidationError(f"{where}: {spw(i)} channels are not in ascending frequency")
        if i and f[0] <= spw_freqs[i - 1][-1]:
            raise ValidationError(
                f"{where}: {spw(i)} starts at {f[0]:.3f} Hz, not above {spw(i - 1)} "
                f"(ends {spw_freqs[i - 1][-1]:.3f} Hz): SPWs must ascend"
            )
    steps = np.diff(np.concatenate(spw_freqs))
    if contiguous and len(steps) and np.ptp(steps) > FREQ_TOLERANCE_HZ:
        spacing = float(np.median(steps))  # the majority's: not the first SPW's, which may be odd
        k = int(np.flatnonzero(np.abs(steps - spacing) > FREQ_TOLERANCE_HZ)[0])
        # channel k + 1 is where the grid breaks: in which SPW, or at which SPW's start
        after = int(np.searchsorted(np.cumsum([len(f) for f in spw_freqs]), k + 1, side="right"))
        raise ValidationError(
            f"{where}: channels are not contiguous (step {steps[k]:.3f} Hz after "
            f"{np.concatenate(spw_freqs)[k]:.3f} Hz, at {spw(after)}; channel spacing "
            f"{spacing:.3f} Hz)"
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
    one_field: bool = False,
) -> MsSummary:
    """Check a joined MS against its parts (in SPW order); raises ValidationError naming group.

    ``contiguous``: the parts cover the band without gaps (the group is complete).
    ``spw_layout``: "per_subband" (one SPW per part, rows add up) or "single" (one SPW with all
    channels, rows as in each part). ``field_per_integration`` (DSA-110 mode): one FIELD per
    integration time; ``one_field`` (config phase_center other than per_integration): one FIELD."""
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
    names = [p.path for p in parts] if spw_layout != "single" else None
    for i, (f, want) in enumerate(zip(got.spw_freqs, want_freqs, strict=True)):
        if len(f) != len(want) or np.abs(f - want).max() > FREQ_TOLERANCE_HZ:
            made_from = f"its part {names[i]}" if names else "the parts"
            raise ValidationError(f"{where}: SPW {i} frequencies differ from those of {made_from}")
    check_frequencies(got.spw_freqs, where, contiguous=contiguous, names=names)
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
    if one_field and len(got.field_names) != 1:
        raise ValidationError(f"{where}: {len(got.field_names)} fields; expected one")
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
    """Check every part against the rest of the group and the group's template; returns what each
    part promises the joined MS (as one SPW), lowest frequency first.

    A subband that differs (integrations, rows, channels, or any header item of the geometry) is
    named by its input file, with its value and the others': the file that differs from the
    majority of the group (marked if it is the template's source), or, without a majority, every
    file with its value; never merely the file compared first. A geometry difference names the
    item and how it differs (:func:`dsa110ms.rawuvh5.describe_geometry_difference`). A permanent
    error (:class:`JoinError`): retrying cannot fix it."""
    from casacore import tables

    template = str(template)
    with tables.table(template, ack=False) as tb:
        digest, reference = tb.getkeyword(DIGEST_KEYWORD), tb.getkeyword(SOURCE_KEYWORD)
        template_items = (
            json.loads(tb.getkeyword(ITEMS_KEYWORD)) if ITEMS_KEYWORD in tb.keywordnames() else {}
        )
        times = tb.getcol("TIME")
        antennas = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        template_field = (
            json.loads(tb.getkeyword(PHASE_CENTER_KEYWORD))
            if PHASE_CENTER_KEYWORD in tb.keywordnames()
            else None
        )
    with tables.table(f"{template}/FIELD", ack=False) as tb:
        fields = tuple(str(n) for n in tb.getcol("NAME")) if tb.nrows() else ()
    opened = [open_part(p) for p in parts]
    files = {str(p.path): sources.get(str(p.path), p.manifest["source_file"]) for p in opened}
    manifests = {files[str(p.path)]: p.manifest for p in opened}
    for what, key in (
        ("number of times", "times"),
        ("number of rows", "rows"),
        ("number of channels", "channels"),
    ):
        _check_agree(what, {f: m[key] for f, m in manifests.items()}, reference)
    _check_geometry_agrees(manifests, reference)
    _check_phase_center(manifests, reference, template_field)
    _check_template(template, reference, times, digest, template_items, opened[0].manifest)
    summaries = []
    for p in opened:
        try:
            p.check_arrays()
        except ValidationError as exc:
            raise JoinError(f"{files[str(p.path)]}: its part is damaged: {exc}") from exc
        got = p.array("ANTENNA1"), p.array("ANTENNA2")
        differ = np.flatnonzero((got[0] != antennas[0]) | (got[1] != antennas[1]))
        if len(differ):
            row = int(differ[0])
            raise JoinError(
                f"{files[str(p.path)]}: baselines are not in the template's row order (from "
                f"row {row}: {got[0][row]}-{got[1][row]}, the template's "
                f"{antennas[0][row]}-{antennas[1][row]}); the group cannot be joined"
            )
        summaries.append(
            MsSummary(
                str(p.path),
                len(times),
                (p.chan_freq,),
                fields,
                times.min(),
                times.max(),
                p.manifest["times"],
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


CANNOT_JOIN = "the group cannot be joined"


def _label(file: str, reference: str) -> str:
    """A file as messages name it: the template's source says so."""
    return f"{file} (the template's source)" if file == reference else file


def _majority(values: Mapping[str, object]):
    """The value more files share than any other, or None (all equal counts as a majority)."""
    ranked = Counter(values.values()).most_common(2)
    if len(ranked) == 1 or ranked[0][1] > ranked[1][1]:
        return ranked[0][0]
    return None


def _others(n: int) -> str:
    return "the other file of the group" if n == 1 else f"the {n} other files of the group"


def _check_agree(what: str, values: Mapping[str, object], reference: str) -> None:
    """Every file has the same ``what`` (a count); else a JoinError naming the files that differ
    from the majority with their values and the majority's, or, without a majority, every value
    with its files."""
    if len(set(values.values())) < 2:
        return
    common = _majority(values)
    if common is not None:
        odd = [f for f, v in values.items() if v != common]
        listing = "; ".join(f"{_label(f, reference)} has {values[f]}" for f in odd)
        n = len(values) - len(odd)
        raise JoinError(f"{what}: {listing}, {_others(n)} {common}; {CANNOT_JOIN}")
    by_value = {}
    for f, v in values.items():
        by_value.setdefault(v, []).append(_label(f, reference))
    listing = "; ".join(
        f"{', '.join(fs)} {'has' if len(fs) == 1 else 'have'} {v}" for v, fs in by_value.items()
    )
    raise JoinError(
        f"{what} differs between the files of the group, none in a majority: {listing}; "
        f"{CANNOT_JOIN}"
    )


def _differing_items(a: Mapping, b: Mapping) -> list[str]:
    """Names of the geometry items whose hashes differ (every item if either has none)."""
    names = [k for k in a if a.get(k) != b.get(k)]
    return names or sorted(set(a) | set(b))


def _check_geometry_agrees(manifests: Mapping[str, dict], reference: str) -> None:
    """Every file has the same geometry digest; else a JoinError naming the file that differs
    from the majority (or, without one, two files that differ) and the items that differ, with
    their values read again from both files."""
    digests = {f: m["geometry_digest"] for f, m in manifests.items()}
    if len(set(digests.values())) < 2:
        return
    common = _majority(digests)
    if common is not None:
        odd = [f for f, d in digests.items() if d != common]
        same = next(f for f, d in digests.items() if d == common)
        more = f" (and {len(odd) - 1} more: {', '.join(odd[1:])})" if len(odd) > 1 else ""
        head = (
            f"geometry: {_label(odd[0], reference)}{more} differs from "
            f"{_others(len(digests) - len(odd))} (compared with {same})"
        )
    else:
        first = reference if reference in digests else next(iter(digests))
        odd = [first]
        same = next(f for f, d in digests.items() if d != digests[first])
        head = (
            f"geometry differs between {_label(first, reference)} and {same}, none of the "
            f"group's {len(digests)} files in a majority"
        )
    items = _differing_items(
        manifests[odd[0]].get("geometry_items", {}), manifests[same].get("geometry_items", {})
    )
    what = describe_geometry_difference(odd[0], same, items)
    raise JoinError(f"{head}: {what}; {CANNOT_JOIN}")


#: How far (radians) a part's phase centre may be from the template's: the same computation
#: from the same file gives the same numbers; this allows for their JSON round trip only.
PHASE_CENTER_TOLERANCE_RAD = 1e-12


def _check_phase_center(manifests: Mapping[str, dict], reference: str, template_field) -> None:
    """Every part was rotated to the template's one FIELD (:mod:`dsa110ms.phasecenter`), or none
    was and the template has one FIELD per integration: a part of another run's settings, or a
    plan of another centre, would put visibilities in the wrong place without a word."""
    one_field = template_field is not None and template_field["name"] in FIELD_NAMES.values()
    for source, manifest in manifests.items():
        rotated_to = manifest.get("phase_center")
        if rotated_to is None and not one_field:
            continue
        agrees = (
            rotated_to is not None
            and one_field
            and rotated_to["name"] == template_field["name"]
            and np.allclose(
                rotated_to["direction"],
                template_field["direction"],
                rtol=0,
                atol=PHASE_CENTER_TOLERANCE_RAD,
            )
        )
        if not agrees:
            raise JoinError(
                f"{source}: its part was rotated to {rotated_to or 'no one FIELD'}, the "
                f"template (from {reference}) has {template_field}; {CANNOT_JOIN}"
            )


def _check_template(
    template: str, reference: str, times, digest: str, items: Mapping, manifest: dict
) -> None:
    """The template, made from one of the group's files, still agrees with the parts (which
    agree with each other): else its source changed between the template and its part."""
    for what, want, got in (
        ("number of times", len(np.unique(times)), manifest["times"]),
        ("number of rows", len(times), manifest["rows"]),
    ):
        if want != got:
            raise JoinError(
                f"{reference}: the template made from it has {what} {want}, every part of the "
                f"group (its own included) {got}: the file changed after the template was made? "
                f"(a rerun makes both again); {CANNOT_JOIN}"
            )
    if digest != manifest["geometry_digest"]:
        names = ", ".join(_differing_items(items, manifest.get("geometry_items", {})))
        raise JoinError(
            f"{reference}: the template made from it differs in geometry ({names}) from every "
            f"part of the group, its own included: the file changed after the template was made? "
            f"(a rerun makes both again); {CANNOT_JOIN}"
        )
