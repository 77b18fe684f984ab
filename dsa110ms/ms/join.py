"""Joining the parts of a group into one MS, validating it and publishing it.

Each attempt starts from a clean staging path in the output directory's state directory
(:class:`dsa110ms.ms.publish.OutputArea`: same file system, so publication is one rename; the
instance name keeps two runs that share an output directory apart), under the group's lock.
``casatasks.concat`` appends to an existing output, so a leftover staging MS from an earlier
attempt is removed first. Whatever fails, even a join process aborted by casacore, the staging
path is removed before the error propagates: nothing partial is ever left at the final path.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import multiprocessing
import os
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dsa110ms import casa
from dsa110ms.errors import JoinError, TransientJoinError, ValidationError
from dsa110ms.faults import LOCK_ERRORS, PERMANENT_ERRORS, PROCESS_ERRORS
from dsa110ms.faults import active as active_faults
from dsa110ms.files import write_text_atomically
from dsa110ms.ms.layout import fixed_array_columns
from dsa110ms.ms.metadata import weights_from_spectrum
from dsa110ms.ms.part import ROW_ARRAYS, Part, open_part
from dsa110ms.ms.publish import (
    STAMP_NAME,
    MsSummary,
    OutputArea,
    damage,
    ms_options,
    publish,
    validate_joined,
)
from dsa110ms.ms.template import DIGEST_KEYWORD, SOURCE_KEYWORD
from dsa110ms.observe.metrics import du_bytes
from dsa110ms.owned import remove_owned

log = logging.getLogger(__name__)


def concat_parts(parts: Sequence[str | os.PathLike], joined: Path) -> None:
    """The reference join: ``casatasks.concat`` of the parts, in the given (SPW) order."""
    try:
        casa.tasks().concat(vis=[str(p) for p in parts], concatvis=str(joined))
    except Exception as exc:  # CASA raises bare RuntimeError/AssertionError for everything
        raise TransientJoinError(f"{joined}: casatasks.concat failed: {exc}") from exc
    if not joined.is_dir():
        raise TransientJoinError(f"{joined}: casatasks.concat returned without writing the MS")


#: Per-channel columns of the SPECTRAL_WINDOW table (RESOLUTION and EFFECTIVE_BW are the
#: channel width, as pyuvdata writes them).
WIDTH_COLUMNS = ("CHAN_WIDTH", "EFFECTIVE_BW", "RESOLUTION")
#: Rows joined at a time by the single-SPW join: ~50 MB of DATA at 768 channels, so the
#: job stays well under 1 GB with every column of the chunk in memory.
ROWS_PER_CHUNK = 4096
#: Columns of the template's main table the join replaces with the parts' (fixed-shape) columns.
REPLACED_COLUMNS = ("DATA", "FLAG", "WEIGHT_SPECTRUM", "WEIGHT", "SIGMA")
#: MODEL_DATA and CORRECTED_DATA are described like DATA, with the MS definition's comments.
IMAGING_COLUMN_COMMENTS = {
    "MODEL_DATA": "The model data column",
    "CORRECTED_DATA": "The corrected data column",
}
#: Columns of the template's main table that hold no values (pyuvdata never fills them).
EMPTY_COLUMNS = ("FLAG_CATEGORY",)


def assemble(
    template: str | os.PathLike,
    parts: Sequence[str | os.PathLike],
    joined: str | os.PathLike,
    *,
    spw_layout: str = "per_subband",
    imaging_columns: str = "none",
) -> None:
    """Write the MS of a group at ``joined`` from its template and its parts (lowest frequency
    first), in one pass over the data.

    ``spw_layout="per_subband"``: the template's rows repeated once per part, part k's spectral
    columns in the k-th block with DATA_DESC_ID = k; one SPECTRAL_WINDOW and DATA_DESCRIPTION row
    per part and the FEED rows repeated for every SPW. This is exactly what ``casatasks.concat``
    makes of the parts written as MSs by pyuvdata (tested; only HISTORY differs).
    ``"single"``: the template's rows once, each row's spectra joined along the channel axis,
    one SPW holding every channel; WEIGHT, SIGMA and FLAG_ROW summarize the whole row.
    ``imaging_columns="model_corrected"`` adds MODEL_DATA = 0 and CORRECTED_DATA = DATA.

    The parts must be the template's rows (checked by the caller, :func:`check_parts`).
    """
    from casacore import tables

    parts, joined = [open_part(p) for p in parts], str(joined)
    single = spw_layout == "single"
    # A file copy in this process: casacore's Table.copy(deep=True, valuecopy=False) runs
    # `cp -r '<src>' '<dst>'` through a shell, and paths are never given to a shell.
    shutil.copytree(template, joined, symlinks=True)
    chan_freqs = [p.chan_freq for p in parts]
    chan_widths = [np.asarray(p.array("CHAN_WIDTH")) for p in parts]
    npol = parts[0].manifest["polarizations"]
    nchan = sum(len(f) for f in chan_freqs) if single else len(chan_freqs[0])
    with tables.table(joined, readonly=False, ack=False) as out:
        nrow = out.nrows()
        spectral = ["DATA", "FLAG", "WEIGHT_SPECTRUM"]
        if imaging_columns == "model_corrected":
            spectral += ["MODEL_DATA", "CORRECTED_DATA"]
        _replace_array_columns(out, spectral, (nchan, npol), npol)
        if single:
            _fill_single_spw(out, parts, spectral)
        else:
            _fill_per_subband(out, parts, spectral)
    _write_spectral_windows(template, joined, chan_freqs, chan_widths, single=single)
    log.info("assembled %s from %d parts: %d x %d rows", joined, len(parts), nrow, len(parts))


def _replace_array_columns(out, spectral: list[str], cell: tuple[int, int], npol: int) -> None:
    """Drop the template's variable-shape array columns; add fixed-shape ones
    (:mod:`dsa110ms.ms.layout`), keeping the template's descriptions (comments, units)."""
    from casacore import tables

    descs = {c: out.getcoldesc(c) for c in REPLACED_COLUMNS}
    for c, what in IMAGING_COLUMN_COMMENTS.items():
        if c in spectral:
            descs[c] = dict(descs["DATA"], comment=what, keywords={})
    out.removecols([c for c in REPLACED_COLUMNS if c in out.colnames()])
    shapes = {c: cell for c in spectral} | {"WEIGHT": (npol,), "SIGMA": (npol,)}
    fixed, dminfo = fixed_array_columns(descs, shapes)
    for dm in dminfo:
        name = str(dm["COLUMNS"][0])
        out.addcols(tables.maketabdesc({"name": name, "desc": fixed[name]}), dm)


def _fill_per_subband(out, parts: list[Part], spectral: list[str]) -> None:
    nrow = out.nrows()
    buffers: dict[str, np.ndarray] = {}  # one part's columns at a time, reused
    filled = (*spectral, *EMPTY_COLUMNS, "WEIGHT", "SIGMA", "FLAG_ROW")
    rows = {c: out.getcol(c) for c in out.colnames() if c not in filled}
    out.addrows(nrow * (len(parts) - 1))
    for k, p in enumerate(parts):
        start = k * nrow
        if k:
            for c, values in rows.items():
                out.putcol(c, values, start, nrow)
        out.putcol("DATA_DESC_ID", np.full(nrow, k, dtype=np.int32), start, nrow)
        for c in ROW_ARRAYS:
            buffers[c] = p.read_into(c, buffers.get(c))
            out.putcol(c, buffers[c], start, nrow)
        if "MODEL_DATA" in spectral:
            zeros = buffers.setdefault("MODEL_DATA", np.zeros_like(buffers["DATA"]))
            out.putcol("MODEL_DATA", zeros, start, nrow)
            out.putcol("CORRECTED_DATA", buffers["DATA"], start, nrow)


def _fill_single_spw(out, parts: list[Part], spectral: list[str]) -> None:
    nrow = out.nrows()
    for start in range(0, nrow, ROWS_PER_CHUNK):
        stop = min(start + ROWS_PER_CHUNK, nrow)
        n = stop - start
        cells = {
            c: np.concatenate([p.rows(c, start, stop) for p in parts], axis=1)
            for c in ("DATA", "FLAG", "WEIGHT_SPECTRUM")
        }
        for c, values in cells.items():
            out.putcol(c, values, start, n)
        if "MODEL_DATA" in spectral:
            out.putcol("MODEL_DATA", np.zeros_like(cells["DATA"]), start, n)
            out.putcol("CORRECTED_DATA", cells["DATA"], start, n)
        weight, sigma = weights_from_spectrum(cells["WEIGHT_SPECTRUM"], cells["FLAG"])
        out.putcol("WEIGHT", weight, start, n)
        out.putcol("SIGMA", sigma, start, n)
        out.putcol("FLAG_ROW", cells["FLAG"].all(axis=(1, 2)), start, n)


def _write_spectral_windows(template, joined: str, chan_freqs, chan_widths, *, single: bool):
    """SPECTRAL_WINDOW rows (the template's row with each SPW's channels), one DATA_DESCRIPTION
    row per SPW, and the FEED rows repeated for every SPW beyond the first (as concat does)."""
    from casacore import tables

    if single:
        chan_freqs, chan_widths = [np.concatenate(chan_freqs)], [np.concatenate(chan_widths)]
    n = len(chan_freqs)
    with (
        tables.table(f"{template}/SPECTRAL_WINDOW", ack=False) as src,
        tables.table(f"{joined}/SPECTRAL_WINDOW", readonly=False, ack=False) as spw,
    ):
        for _ in range(n - 1):
            src.copyrows(spw)
        for k, (freqs, widths) in enumerate(zip(chan_freqs, chan_widths, strict=True)):
            spw.putcell("CHAN_FREQ", k, freqs)
            for c in WIDTH_COLUMNS:
                spw.putcell(c, k, widths)
            spw.putcell("NUM_CHAN", k, len(freqs))
            spw.putcell("TOTAL_BANDWIDTH", k, float(np.sum(widths)))
            spw.putcell("REF_FREQUENCY", k, float(freqs[0]))  # as pyuvdata: first channel
    if n == 1:
        return
    with tables.table(f"{joined}/DATA_DESCRIPTION", readonly=False, ack=False) as dd:
        dd.addrows(n - 1)
        dd.putcol("SPECTRAL_WINDOW_ID", np.arange(n, dtype=np.int32))
        dd.putcol("POLARIZATION_ID", np.zeros(n, dtype=np.int32))
        dd.putcol("FLAG_ROW", np.zeros(n, dtype=bool))
    with tables.table(f"{joined}/FEED", readonly=False, ack=False) as feed:
        nfeed = feed.nrows()
        rows = {c: feed.getcol(c) for c in feed.colnames()}
        for k in range(1, n):
            feed.addrows(nfeed)
            for c, values in rows.items():
                feed.putcol(c, values, k * nfeed, nfeed)
            feed.putcol("SPECTRAL_WINDOW_ID", np.full(nfeed, k, dtype=np.int32), k * nfeed, nfeed)


def concat_reference(
    template: str | os.PathLike,
    parts: Sequence[str | os.PathLike],
    joined: Path,
    workdir: Path,
    *,
    imaging_columns: str = "none",
) -> None:
    """The reference join: each part completed into a one-SPW MS (template + part, in
    ``workdir``), then ``casatasks.concat`` of those, in SPW order."""
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    singles = []
    for k, p in enumerate(parts):
        singles.append(workdir / f"spw{k:02d}.ms")
        assemble(template, [p], singles[-1], imaging_columns=imaging_columns)
    concat_parts(singles, joined)


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


def permanent_failure_marker(group_scratch: Path) -> Path:
    return group_scratch / ".permanent_failure"


def output_space_needed(
    template: str | os.PathLike, parts: Sequence[str | os.PathLike], options: JoinOptions
) -> int:
    """Bytes the joined MS will take, from what is on scratch (an estimate with 10 % margin):
    the parts' spectral columns; the template's main-table (row) columns once per part with
    one SPW per part, once with a single SPW; its subtables once; with
    ``imaging_columns="model_corrected"`` two more copies of DATA (~60 % of a part)."""
    part_bytes = sum(du_bytes(p) for p in parts)
    rows = sum(e.stat().st_size for e in os.scandir(template) if e.is_file())
    subtables = du_bytes(template) - rows
    copies = len(parts) if options.spw_layout == "per_subband" else 1
    need = part_bytes + rows * copies + subtables
    if options.imaging_columns == "model_corrected":
        need += int(1.2 * part_bytes)
    return int(need * 1.1)


def free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def out_of_space(directory: Path, need: int, written: int = 0) -> JoinError | None:
    """A permanent JoinError naming ENOSPC and the file system (caused by an ENOSPC OSError,
    which the metrics count) if ``directory`` cannot hold ``need`` bytes, ``written`` of which
    are written already; else None."""
    free = free_bytes(directory) + written
    if free >= need:
        return None
    error = JoinError(
        f"{directory}: no space left on device (ENOSPC): the MS needs ~{need / 1e6:.0f} MB, "
        f"{free / 1e6:.0f} MB available on the file system of {mount_point(directory)}"
    )
    error.__cause__ = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))
    return error


def mount_point(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not os.path.ismount(path):
        path = path.parent
    return path


@dataclass(frozen=True)
class JoinOptions:
    """How a group is joined and what its MS must be.

    ``spw_layout``: "per_subband" (one SPW per part) or "single" (one SPW with every channel),
    see :func:`assemble`. ``join_method`` for "per_subband": "direct" (:func:`assemble`, one
    pass) or "concat" (:func:`concat_reference`, ``casatasks.concat``: the reference; same
    content). ``imaging_columns``: "none" or "model_corrected". ``field_per_integration``:
    validate one FIELD per integration (DSA-110 mode). ``contiguous``: the parts cover the band
    without gaps (False for an incomplete group converted under ``incomplete_groups:
    convert``)."""

    spw_layout: str = "per_subband"
    join_method: str = "direct"
    imaging_columns: str = "none"
    field_per_integration: bool = False
    contiguous: bool = True
    #: the settings the MS is made with, recorded in its stamp (:func:`.publish.ms_options`)
    made_with: Mapping = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Mapping, *, contiguous: bool) -> JoinOptions:
        """The options of a run's settings (validated config), for a group that covers the band
        (``contiguous``) or not."""
        return cls(
            spw_layout=settings["spw_layout"],
            join_method=settings["join_method"],
            imaging_columns=settings["imaging_columns"],
            field_per_integration=settings["telescope"] == "dsa110",
            contiguous=contiguous,
            made_with=ms_options(settings),
        )


def build_group(
    group: str,
    template: str | os.PathLike,
    parts: Sequence[str | os.PathLike],
    staging: Path,
    options: JoinOptions,
    *,
    group_scratch: Path,
    sources: Mapping[str, str],
    attempt: int,
) -> MsSummary:
    """Check the parts, write the MS at ``staging`` and validate it (the work of the join
    process, :func:`join_group`). Failures reading and checking the parts are permanent
    (:class:`JoinError`, recorded in the group's scratch); the join and its validation fail
    transiently (:class:`TransientJoinError`)."""
    faults = active_faults()
    injected = faults.concat_fault(group, attempt)
    marker = permanent_failure_marker(group_scratch)
    try:
        if injected in PERMANENT_ERRORS:
            raise ValidationError(f"{parts[0]}: part is corrupt (injected fault)")
        summaries = check_parts(template, parts, sources)
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
        options.spw_layout,
    )
    try:
        if faults.concat_delay_s:
            time.sleep(faults.concat_delay_s)
        if injected in LOCK_ERRORS:
            raise LOCK_ERRORS[injected](f"{staging} (injected fault)")
        imaging_columns = options.imaging_columns
        if options.join_method == "concat" and options.spw_layout == "per_subband":
            workdir = group_scratch / f"concat_inputs.{attempt}"
            concat_reference(template, ordered, staging, workdir, imaging_columns=imaging_columns)
            remove_owned(workdir, group_scratch.parent)
        else:
            spw_layout = options.spw_layout
            assemble(
                template, ordered, staging, spw_layout=spw_layout, imaging_columns=imaging_columns
            )
            if injected in PROCESS_ERRORS:
                os.abort()
        return validate_joined(
            staging,
            summaries,
            group,
            contiguous=options.contiguous,
            spw_layout=options.spw_layout,
            field_per_integration=options.field_per_integration,
        )
    except (RuntimeError, OSError, ValidationError, JoinError) as exc:
        raise TransientJoinError(
            f"group {group}: attempt {attempt} failed, will be retried from a clean "
            f"staging path if attempts remain: {type(exc).__name__}: {exc}"
        ) from exc


def join_group(
    group: str,
    template: str | os.PathLike,
    parts: Sequence[str | os.PathLike],
    output: OutputArea,
    options: JoinOptions,
    *,
    instance: str,
    group_scratch: str | os.PathLike,
    sources: Mapping[str, str] | None = None,
    attempt: int = 1,
) -> tuple[MsSummary | None, bool]:
    """Join the group's ``template`` and ``parts``, validate, publish at
    ``output.final_ms(group)``; returns the summary (None if the group was found published
    already) and whether this run published it.

    Holds the group's lock in the output directory throughout (:meth:`OutputArea.group_lock`):
    a second run joining the same group waits, then finds it published and intact and keeps it
    without joining. The MS is written at a fresh staging path and validated by a child process
    (:func:`build_group`): if casacore aborts it (a write error in a destructor ends in
    ``std::terminate``), this process still removes the staging MS and reports the failure,
    naming ENOSPC when the output file system is full. Free space for the whole MS is checked
    before anything is written.

    Parts are ordered by frequency, lowest first (SPW 0); ``options``: :class:`JoinOptions`.
    ``sources``: part path -> input file, to name the input in errors.

    Failures are classified by where they happen, not by message: reading and checking the
    parts fails permanently (:class:`JoinError`; a marker in the group's scratch makes later
    attempts of the same run fail at once instead of redoing the work), and so does a full
    output file system; the join and its validation fail transiently
    (:class:`TransientJoinError`, retried by the rule's ``retries:`` from a clean staging path).
    """
    group_scratch = Path(group_scratch)
    marker = permanent_failure_marker(group_scratch)
    if attempt == 1:
        remove_owned(marker, group_scratch.parent)
    elif marker.exists():
        raise JoinError(f"{marker.read_text().strip()} (permanent: attempt {attempt} not tried)")
    with output.group_lock(group):
        final = output.final_ms(group)
        if os.path.lexists(final) and damage(final, group) is None:
            log.info("group %s: %s is published and intact; kept, nothing joined", group, final)
            write_text_atomically(output.stamp(group), (final / STAMP_NAME).read_text())
            return None, False
        need = output_space_needed(template, parts, options)
        if full := out_of_space(output.output_dir, need):
            raise full
        log.info("group %s: the MS needs ~%.1f MB (estimate)", group, need / 1e6)
        staging = output.new_staging(instance, group)
        try:
            summary = in_child_process(
                build_group,
                group,
                template,
                parts,
                staging,
                options,
                group_scratch=group_scratch,
                sources=dict(sources or {}),
                attempt=attempt,
            )
            published = publish(output, staging, group, summary, options.made_with)
        except (ChildDied, OSError) as exc:  # casacore's abort on a write error, publishing
            written = du_bytes(staging) if staging.exists() else 0
            if full := out_of_space(output.output_dir, need, written):
                raise full from full.__cause__  # ENOSPC
            raise TransientJoinError(
                f"group {group}: attempt {attempt} failed: {exc}; "
                f"{free_bytes(output.output_dir) / 1e6:.0f} MB free on the file system of "
                f"{mount_point(output.output_dir)}"
            ) from exc
        finally:
            output.remove_staging(instance, group)
    log.info(
        "group %s: %d rows, %d SPWs, %d fields -> %s",
        group,
        summary.nrows,
        summary.n_spws,
        len(summary.field_names),
        final,
    )
    return summary, published


class ChildDied(Exception):
    """The join's child process ended without a result (killed by a signal, or exited)."""


#: The join's child process while it runs (killed with this process's run, :mod:`runwatch`).
_child: multiprocessing.process.BaseProcess | None = None


def kill_child() -> None:
    if _child is not None and _child.pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(_child.pid, signal.SIGKILL)


def _child_main(conn, func, args, kwargs) -> None:
    try:
        result = ("ok", func(*args, **kwargs), None)
    except BaseException as exc:  # noqa: BLE001 - sent to the parent, which raises it
        # pickling drops __cause__, which metrics classify by (jobs.error_class)
        result = ("error", exc, exc.__cause__)
    try:
        conn.send(result)
    except Exception as exc:  # noqa: BLE001 - an exception that cannot be pickled
        conn.send(("error", TransientJoinError(f"{result[1]!r} ({exc})"), None))
    conn.close()


def in_child_process(func, *args, **kwargs):
    """``func(*args, **kwargs)`` in a forked child; its result, or its exception raised here.
    :class:`ChildDied` if the child ends without either (e.g. SIGABRT from casacore)."""
    global _child
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    _child = context.Process(target=_child_main, args=(send, func, args, kwargs))
    _child.start()
    send.close()
    try:
        try:
            status, value, cause = receive.recv()
        except EOFError:
            _child.join()
            code = _child.exitcode
            how = f"killed by {signal.Signals(-code).name}" if code and code < 0 else f"exit {code}"
            raise ChildDied(f"the join process died ({how})") from None
        _child.join()
    finally:
        receive.close()
        _child = None
    if status == "error":
        raise value from cause
    return value
