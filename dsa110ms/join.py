"""Joining the parts of a group into one MS, validating it and publishing it.

Each attempt starts from a clean staging path next to the final output
(``<output_dir>/.<group>.ms.<instance>.staging``: same filesystem, so publication is one rename;
the instance name keeps two runs that share an output directory apart). ``casatasks.concat``
appends to an existing output, so a leftover staging MS from an earlier attempt is removed first.
Whatever fails, the staging path is removed before the error propagates: nothing partial is ever
left at, or next to, the final path.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from . import casa
from .errors import JoinError, TransientJoinError, ValidationError
from .faults import LOCK_ERRORS, PERMANENT_ERRORS
from .faults import active as active_faults
from .msfix import weights_from_spectrum
from .publish import MsSummary, publish, summarize, validate_joined
from .scratch import remove_if_present

log = logging.getLogger(__name__)


def staging_path(final: Path, instance: str) -> Path:
    return final.with_name(f".{final.name}.{instance}.staging")


def concat_parts(parts: Sequence[str | os.PathLike], joined: Path) -> None:
    """The reference join: ``casatasks.concat`` of the parts, in the given (SPW) order."""
    try:
        casa.tasks().concat(vis=[str(p) for p in parts], concatvis=str(joined))
    except Exception as exc:  # CASA raises bare RuntimeError/AssertionError for everything
        raise TransientJoinError(f"{joined}: casatasks.concat failed: {exc}") from exc
    if not joined.is_dir():
        raise TransientJoinError(f"{joined}: casatasks.concat returned without writing the MS")


#: Columns with a channel axis, joined along it by the single-SPW layout.
SPECTRAL_COLUMNS = ("DATA", "MODEL_DATA", "CORRECTED_DATA", "FLAG", "WEIGHT_SPECTRUM")
#: Per-channel columns of the SPECTRAL_WINDOW table.
CHANNEL_COLUMNS = ("CHAN_FREQ", "CHAN_WIDTH", "EFFECTIVE_BW", "RESOLUTION")
#: Rows copied at a time by the single-SPW join (bounds its memory: ~100 MB of DATA at 768 chans).
ROWS_PER_CHUNK = 8192


def _row_keys(part: str) -> tuple[np.ndarray, ...]:
    with casa.table(part) as tb:
        return tuple(tb.getcol(c) for c in ("TIME", "ANTENNA1", "ANTENNA2", "FIELD_ID"))


def join_single_spw(parts: Sequence[str | os.PathLike], joined: Path) -> None:
    """One SPW holding every channel of the parts (ascending frequency), no regridding.

    The parts must have the same rows in the same order (same times, baselines and fields:
    true of the subbands of one group); each row's spectra are joined along the channel axis.
    The lowest-frequency part is copied as the template (subtables included); its spectral
    columns are re-created so no storage of the old shape remains.
    """
    parts = [str(p) for p in parts]
    keys = _row_keys(parts[0])
    for p in parts[1:]:
        other = _row_keys(p)
        if any(len(a) != len(b) or np.any(a != b) for a, b in zip(keys, other, strict=True)):
            raise JoinError(
                f"{p}: rows differ from {parts[0]} (times, baselines or fields); "
                "spw_layout=single needs subbands with identical rows"
            )
    copy_template(parts[0], joined)
    sources = [casa.tools().table() for _ in parts]
    out = casa.tools().table()
    try:
        for src, p in zip(sources, parts, strict=True):
            src.open(p)
        out.open(str(joined), nomodify=False)
        columns = [c for c in SPECTRAL_COLUMNS if c in out.colnames()]
        _recreate_columns(out, columns)
        nrow = out.nrows()
        for start in range(0, nrow, ROWS_PER_CHUNK):
            n = min(ROWS_PER_CHUNK, nrow - start)
            for c in columns:
                # casatools shape: (npol, nchan, nrow); channels are axis 1
                cells = np.concatenate([s.getcol(c, start, n) for s in sources], axis=1)
                out.putcol(c, cells, start, n)
                if c == "FLAG":
                    flag = cells
                elif c == "WEIGHT_SPECTRUM":
                    spectrum = cells
            weight, sigma = weights_from_spectrum(
                spectrum.transpose(2, 1, 0), flag.transpose(2, 1, 0)
            )
            out.putcol("WEIGHT", weight.T, start, n)
            out.putcol("SIGMA", sigma.T, start, n)
            out.putcol("FLAG_ROW", flag.all(axis=(0, 1)), start, n)
    finally:
        out.close()
        for src in sources:
            src.close()
    _join_spectral_window(parts, joined)


def copy_template(part: str, joined: Path) -> None:
    """Deep-copy a part (main table and subtables) to ``joined``."""
    tb = casa.tools().table()
    tb.open(part)
    try:
        tb.copy(str(joined), deep=True, valuecopy=True, returnobject=False)
    finally:
        tb.close()


def join_rows(parts: Sequence[str | os.PathLike], joined: Path) -> None:
    """The per-subband join without casatasks.concat: one pass, rows appended part by part.

    The result matches ``casatasks.concat`` of the same parts (tested): the rows of part k, in
    order, with DATA_DESC_ID = k; SPECTRAL_WINDOW and DATA_DESCRIPTION with one row per part;
    FEED repeated for every SPW; the other subtables (FIELD, SOURCE, ANTENNA, OBSERVATION,
    STATE, POLARIZATION) once, as the parts share them. Only HISTORY differs (concat adds its
    own entries). Parts whose FIELD tables differ are refused (concat would merge them).
    """
    parts = [str(p) for p in parts]
    for p in parts[1:]:
        if _field_directions(p) != _field_directions(parts[0]):
            raise JoinError(f"{p}: fields differ from {parts[0]}; cannot join rows directly")
    copy_template(parts[0], joined)
    out = casa.tools().table()
    src = casa.tools().table()
    out.open(str(joined), nomodify=False)
    try:
        columns = [c for c in out.colnames() if c != "FLAG_CATEGORY"]
        for k, p in enumerate(parts[1:], start=1):
            src.open(p)
            try:
                nrow, offset = src.nrows(), out.nrows()
                out.addrows(nrow)
                for start in range(0, nrow, ROWS_PER_CHUNK):
                    n = min(ROWS_PER_CHUNK, nrow - start)
                    for c in columns:
                        out.putcol(c, src.getcol(c, start, n), offset + start, n)
                out.putcol("DATA_DESC_ID", np.full(nrow, k, dtype=np.int32), offset, nrow)
            finally:
                src.close()
    finally:
        out.close()
    _append_spectral_windows(parts, joined)


def _field_directions(ms: str) -> tuple:
    with casa.table(f"{ms}/FIELD") as tb:
        return tuple(tb.getcol("NAME")), tb.getcol("PHASE_DIR").tobytes()


def _append_spectral_windows(parts: list[str], joined: Path) -> None:
    """SPECTRAL_WINDOW rows of parts 1.., one DATA_DESCRIPTION row and FEED rows per SPW."""
    tb = casa.tools().table()
    for p in parts[1:]:
        tb.open(f"{p}/SPECTRAL_WINDOW")
        try:
            tb.copyrows(f"{joined}/SPECTRAL_WINDOW")
        finally:
            tb.close()
    n = len(parts)
    tb.open(f"{joined}/DATA_DESCRIPTION", nomodify=False)
    try:
        tb.addrows(n - 1)
        tb.putcol("SPECTRAL_WINDOW_ID", np.arange(n, dtype=np.int32))
        tb.putcol("POLARIZATION_ID", np.zeros(n, dtype=np.int32))
        tb.putcol("FLAG_ROW", np.zeros(n, dtype=bool))
    finally:
        tb.close()
    tb.open(f"{joined}/FEED", nomodify=False)
    try:
        nfeed = tb.nrows()
        rows = {c: tb.getcol(c) for c in tb.colnames()}
        for k in range(1, n):
            tb.addrows(nfeed)
            for c, values in rows.items():
                tb.putcol(c, values, k * nfeed, nfeed)
            tb.putcol("SPECTRAL_WINDOW_ID", np.full(nfeed, k, dtype=np.int32), k * nfeed, nfeed)
    finally:
        tb.close()


def _recreate_columns(tb, columns: list[str]) -> None:
    """Drop and re-add variable-shape tiled columns (same descriptions, fresh storage)."""
    descs = {c: tb.getcoldesc(c) for c in columns}
    groups: dict[str, list[str]] = {}
    for c, d in descs.items():
        groups.setdefault(d["dataManagerGroup"], []).append(c)
    tb.removecols(columns)
    for group, cols in groups.items():
        dminfo = {"TYPE": "TiledShapeStMan", "NAME": group, "SPEC": {}}
        tb.addcols({c: descs[c] for c in cols}, dminfo)


def _join_spectral_window(parts: list[str], joined: Path) -> None:
    """SPW 0 of ``joined`` gets every part's channels in order; totals follow."""
    per_part = []
    for p in parts:
        with casa.table(f"{p}/SPECTRAL_WINDOW") as tb:
            per_part.append({c: tb.getcell(c, 0) for c in CHANNEL_COLUMNS})
    tb = casa.tools().table()
    tb.open(f"{joined}/SPECTRAL_WINDOW", nomodify=False)
    try:
        for c in CHANNEL_COLUMNS:
            tb.putcell(c, 0, np.concatenate([pp[c] for pp in per_part]))
        freqs = tb.getcell("CHAN_FREQ", 0)
        tb.putcell("NUM_CHAN", 0, len(freqs))
        tb.putcell("TOTAL_BANDWIDTH", 0, float(np.sum(tb.getcell("CHAN_WIDTH", 0))))
        tb.putcell("REF_FREQUENCY", 0, float(freqs[0]))  # as pyuvdata writes it: first channel
    finally:
        tb.close()


def check_parts_consistent(parts: list[MsSummary], sources: Mapping[str, str]) -> None:
    """The parts of one group must have the same integrations and channel count; a subband
    that differs is named by its input file (a permanent error: retrying cannot fix it)."""
    ref = parts[0]
    for p in parts[1:]:
        for what, a, b in (
            ("number of times", ref.n_times, p.n_times),
            ("number of rows", ref.nrows, p.nrows),
            ("number of channels", len(ref.spw_freqs[0]), len(p.spw_freqs[0])),
            ("time range", (ref.time_min, ref.time_max), (p.time_min, p.time_max)),
        ):
            if a != b:
                raise JoinError(
                    f"{sources.get(p.path, p.path)}: {what} {b} differs from "
                    f"{sources.get(ref.path, ref.path)} ({a}); the group cannot be joined"
                )


def permanent_failure_marker(group_scratch: Path) -> Path:
    return group_scratch / ".permanent_failure"


def join_group(
    group: str,
    parts: Sequence[str | os.PathLike],
    final: str | os.PathLike,
    *,
    instance: str,
    group_scratch: str | os.PathLike,
    sources: Mapping[str, str] | None = None,
    contiguous: bool = True,
    spw_layout: str = "per_subband",
    join_method: str = "direct",
    field_per_integration: bool = False,
    attempt: int = 1,
) -> tuple[MsSummary, bool]:
    """Join ``parts``, validate, publish at ``final``; returns the summary and whether this run
    published it (False: another run already had, see :func:`dsa110ms.publish.publish`).

    Parts are ordered by frequency, lowest first (SPW 0). ``spw_layout``: "per_subband" (one
    SPW per part) or "single" (:func:`join_single_spw`). ``join_method`` for "per_subband":
    "direct" (:func:`join_rows`, one pass) or "concat" (``casatasks.concat``, the reference;
    same content).
    ``field_per_integration``: validate one FIELD per integration (DSA-110 mode).
    ``contiguous``: the parts cover the band without gaps (False for an incomplete group
    converted under ``incomplete_groups: convert``). ``sources``: part path -> input file, to
    name the input in errors.

    Failures are classified by where they happen, not by message: reading and checking the
    parts fails permanently (:class:`JoinError`; a marker in the group's scratch makes later
    attempts of the same run fail at once instead of redoing the work); the join and its
    validation fail transiently (:class:`TransientJoinError`, retried by the rule's
    ``retries:`` from a clean staging path).
    """
    final = Path(final)
    staging = staging_path(final, instance)
    marker = permanent_failure_marker(Path(group_scratch))
    sources = dict(sources or {})
    faults = active_faults()
    if attempt == 1:
        marker.unlink(missing_ok=True)
    elif marker.exists():
        raise JoinError(f"{marker.read_text().strip()} (permanent: attempt {attempt} not tried)")
    if remove_if_present(staging, final.parent):
        log.info("removed staging MS left by an earlier attempt: %s", staging)
    injected = faults.concat_fault(group, attempt)
    try:
        try:
            # SPW order: lowest frequency first, whatever the subband numbering
            summaries = sorted((summarize(p) for p in parts), key=lambda s: s.spw_freqs[0].min())
            if injected in PERMANENT_ERRORS:
                raise ValidationError(f"{summaries[0].path}: part is corrupt (injected fault)")
            check_parts_consistent(summaries, sources)
        except (ValidationError, JoinError) as exc:
            marker.write_text(f"group {group}: {exc}")
            raise JoinError(f"group {group}: {exc}") from exc
        ordered = [s.path for s in summaries]
        log.info(
            "group %s: attempt %d, joining %d parts into %s (%s)",
            group,
            attempt,
            len(ordered),
            staging,
            spw_layout,
        )
        try:
            if faults.concat_delay_s:
                time.sleep(faults.concat_delay_s)
            if injected in LOCK_ERRORS:
                raise LOCK_ERRORS[injected](f"{staging} (injected fault)")
            if spw_layout == "single":
                join_single_spw(ordered, staging)
            elif join_method == "concat":
                concat_parts(ordered, staging)
            else:
                join_rows(ordered, staging)
            summary = validate_joined(
                staging,
                summaries,
                group,
                contiguous=contiguous,
                spw_layout=spw_layout,
                field_per_integration=field_per_integration,
            )
        except (RuntimeError, OSError, ValidationError, JoinError) as exc:
            raise TransientJoinError(
                f"group {group}: attempt {attempt} failed, will be retried from a clean "
                f"staging path if attempts remain: {type(exc).__name__}: {exc}"
            ) from exc
        published = publish(staging, final, summary)
    except BaseException:
        remove_if_present(staging, final.parent)
        raise
    log.info(
        "group %s: %d rows, %d SPWs, %d fields -> %s",
        group,
        summary.nrows,
        summary.n_spws,
        len(summary.field_names),
        final,
    )
    return summary, published
