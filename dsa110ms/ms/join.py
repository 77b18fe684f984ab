"""Assembly: a group's template and parts written as one MS, in one pass over the data
(:func:`assemble`), or by ``casatasks.concat`` of one-SPW MSs (:func:`concat_reference`, the
reference). The flow around it (locks, staging, validation, publication) is
:mod:`dsa110ms.ms.join_group`."""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dsa110ms import casa
from dsa110ms.errors import JoinError, TransientJoinError
from dsa110ms.files import copy_region, open_direct
from dsa110ms.ms.layout import (
    EMPTY_COLUMNS,
    IMAGING_COLUMN_COMMENTS,
    REPLACED_COLUMNS,
    ROW_ARRAYS,
    fixed_array_columns,
    number_spectral_windows,
    row_scalar_storage,
    weights_from_spectrum,
    write_spectral_windows,
)
from dsa110ms.ms.part import Part, open_part

log = logging.getLogger(__name__)


def concat_parts(parts: Sequence[str | os.PathLike], joined: Path) -> None:
    """The reference join: ``casatasks.concat`` of the parts, in the given (SPW) order."""
    try:
        casa.tasks().concat(vis=[str(p) for p in parts], concatvis=str(joined))
    except Exception as exc:  # CASA raises bare RuntimeError/AssertionError for everything
        raise TransientJoinError(f"{joined}: casatasks.concat failed: {exc}") from exc
    if not joined.is_dir():
        raise TransientJoinError(f"{joined}: casatasks.concat returned without writing the MS")
    if len(parts) > 1:
        number_spectral_windows(joined)


#: Rows joined at a time by the single-SPW join: ~50 MB of DATA at 768 channels, so the
#: job stays well under 1 GB with every column of the chunk in memory.
ROWS_PER_CHUNK = 4096


def assemble(
    template: str | os.PathLike,
    parts: Sequence[str | os.PathLike],
    joined: str | os.PathLike,
    *,
    spw_layout: str = "per_subband",
    imaging_columns: str = "none",
    finish_later: bool = False,
) -> Callable[[], None]:
    """Write the MS of a group at ``joined`` from its template and its parts (lowest frequency
    first), in one pass over the data. Returns the function that completes it: with
    ``finish_later`` the copy of the bulk columns may still be running (the caller checks the
    rest of the MS meanwhile) and the MS is complete, its copy read back, only once that function
    has returned; else it is complete already and the function does nothing.

    ``spw_layout="per_subband"``: the template's rows repeated once per part, part k's spectral
    columns in the k-th block with DATA_DESC_ID = k; one SPECTRAL_WINDOW and DATA_DESCRIPTION row
    per part and the FEED rows repeated for every SPW. This is exactly what ``casatasks.concat``
    makes of the parts written as MSs by pyuvdata (tested; only HISTORY differs). casacore
    writes the row columns and FLAG and lays the table out; the bulk of the bytes (DATA,
    WEIGHT_SPECTRUM, WEIGHT, SIGMA, CORRECTED_DATA) is then copied by the kernel from the parts'
    arrays into the columns' tile files (:data:`BYTE_COPIED`): ~1.1 GB/s on a full group.
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
    spectral = spectral_columns(imaging_columns)
    copied = {c: a for c, a in BYTE_COPIED.items() if c in spectral or c in ROW_ARRAYS}
    copier = ThreadPoolExecutor(max_workers=1)
    copying = None
    try:
        with tables.table(joined, readonly=False, ack=False) as out:
            nrow = out.nrows()
            _replace_array_columns(out, spectral, (nchan, npol), npol)
            _restore_in_large_buckets(out)
            if single:
                _fill_single_spw(out, parts, spectral)
            else:
                files = _storage_files(joined, out, copied)
                if _discard_initial_tiles(files.values()):
                    # casacore writes nothing of these columns before it closes, and then to
                    # /dev/null: their copy (mostly waiting on the disk) runs beside the filling
                    copying = copier.submit(_copy_into_storage, files, parts, copied)
                _fill_per_subband(out, parts, spectral)
        if not single and copying is None:
            _copy_into_storage(files, parts, copied)
        write_spectral_windows(template, joined, chan_freqs, chan_widths, single=single)
    except BaseException:
        copier.shutdown(wait=True)
        raise
    log.info("assembled %s from %d parts: %d x %d rows", joined, len(parts), nrow, len(parts))

    def finish() -> None:
        try:
            if copying is not None:
                copying.result()
        finally:
            copier.shutdown(wait=True)
        if not single:
            _check_storage(joined, parts, copied)

    if not finish_later:
        finish()
        return lambda: None
    return finish


def spectral_columns(imaging_columns: str) -> list[str]:
    """The main table's columns with a value per channel and polarization."""
    spectral = ["DATA", "FLAG", "WEIGHT_SPECTRUM"]
    if imaging_columns == "model_corrected":
        spectral += ["MODEL_DATA", "CORRECTED_DATA"]
    return spectral


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


#: Columns of a per_subband join whose values are copied byte for byte from the parts' arrays
#: (MS column -> part array) into their storage files, after casacore has laid the table out
#: (:func:`_copy_into_storage`). MODEL_DATA is left as casacore allocates it: zeros.
BYTE_COPIED = {
    "DATA": "DATA",
    "WEIGHT_SPECTRUM": "WEIGHT_SPECTRUM",
    "WEIGHT": "WEIGHT",
    "SIGMA": "SIGMA",
    "CORRECTED_DATA": "DATA",
}


def _columns_stored_by(table, manager: str) -> list[str]:
    """The columns of ``table`` whose data manager is of type ``manager``."""
    return [
        str(c) for dm in table.getdminfo().values() if dm["TYPE"] == manager for c in dm["COLUMNS"]
    ]


def _restore_in_large_buckets(out) -> None:
    """The template's StandardStMan columns (ANTENNA1/2, DATA_DESC_ID, FLAG_ROW) moved, values
    unchanged, into one StandardStMan of :data:`dsa110ms.ms.layout.ROW_BUCKET_BYTES` buckets:
    pyuvdata's have 128-byte buckets, ~100 MB/s to write or read at 1.8 M rows."""
    from casacore import tables

    names = _columns_stored_by(out, "StandardStMan")
    if not names:
        return
    values = {c: out.getcol(c) for c in names}
    descs = {c: out.getcoldesc(c) for c in names}
    out.removecols(names)
    out.addcols(
        tables.maketabdesc([tables.makecoldesc(c, descs[c]) for c in names]),
        row_scalar_storage(names),
    )
    for c, v in values.items():
        out.putcol(c, v)


def _fill_per_subband(out, parts: list[Part], spectral: list[str]) -> None:
    """Everything casacore writes of a per_subband MS: the template's row columns once per part
    (one call each), DATA_DESC_ID = the part's SPW, FLAG and FLAG_ROW; the rows are added, so
    casacore allocates the storage of the byte-copied columns."""
    nrow, n = out.nrows(), len(parts)
    filled = (*spectral, *EMPTY_COLUMNS, "WEIGHT", "SIGMA", "FLAG_ROW")
    rows = {c: out.getcol(c) for c in out.colnames() if c not in filled}
    incremental = _columns_stored_by(out, "IncrementalStMan")
    out.addrows(nrow * (n - 1))
    for c, values in rows.items():
        if c in incremental and np.all(values == values[0]):
            continue  # IncrementalStMan gives added rows the last row's value
        out.putcol(c, np.concatenate([values] * n))
    out.putcol("DATA_DESC_ID", np.repeat(np.arange(n, dtype=np.int32), nrow))
    flag = None
    for k, p in enumerate(parts):
        flag = p.read_into("FLAG", flag)
        out.putcol("FLAG", flag, k * nrow, nrow)
        out.putcol("FLAG_ROW", p.read_into("FLAG_ROW"), k * nrow, nrow)


def _tile_file(joined: str, dm: dict) -> Path:
    """The file holding the tiles of a TiledColumnStMan (``dm``: its entry of getdminfo())."""
    return Path(joined) / f"table.f{dm['SPEC']['SEQNR']}_TSM0"


def _storage_files(joined: str, out, columns) -> dict[str, str]:
    """The tile file of each of ``columns`` (each has its own TiledColumnStMan,
    :func:`dsa110ms.ms.layout.fixed_array_columns`), as casacore has opened it."""
    return {
        str(dm["COLUMNS"][0]): os.path.realpath(_tile_file(joined, dm))
        for dm in out.getdminfo().values()
        if dm["COLUMNS"][0] in columns
    }


def casacore_tsm_option(environ=os.environ) -> str:
    """How casacore writes tile files (``table.tsm.option`` of its resource files, lowercase;
    "cache", its default, writes through a file descriptor; "mmap" and others map the file). The
    files in the order casacore's ``Aipsrc`` reads them: ``$CASARCFILES`` if set, else
    ``~/.casarc``, ``~/.casa/rc``, ``~/.aipsrc`` and ``$AIPSPATH``'s root's ``.aipsrc``
    (python-casacore sets AIPSPATH to its package); the first keyword that matches (``*`` a
    wildcard) gives the value. An AIPSPATH of more than a root (site files): "unknown"."""
    if files := environ.get("CASARCFILES"):
        paths = [Path(f) for f in files.split(":") if f]
    else:
        home = Path(environ.get("HOME", "~")).expanduser()
        paths = [home / ".casarc", home / ".casa" / "rc", home / ".aipsrc"]
        match environ.get("AIPSPATH", "").split():
            case []:
                pass
            case [root]:
                paths.append(Path(root) / ".aipsrc")
            case _:
                return "unknown"
    for path in paths:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            keyword, colon, value = line.partition(":")
            if colon and fnmatch.fnmatchcase("table.tsm.option", keyword.strip()):
                return value.strip().lower()
    return "cache"


def _discard_initial_tiles(files) -> bool:
    """Send to /dev/null what casacore writes of ``files`` (the byte-copied columns' tile files)
    when the table closes; True if done.

    Their rows are added, never written, so casacore fills their tile files with zeros as it
    closes (``BucketCache::flush``): ~2 GB a full group, through the page cache, only to be
    overwritten by the copy. Its file descriptors of those files are pointed at /dev/null; the
    files stay as the copy writes them. Done only when each file is open exactly once in this
    process (else casacore's zeros are written first and then overwritten: the same MS, slower);
    either way :func:`_check_storage` reads the copy back through casacore."""
    if (option := casacore_tsm_option()) != "cache":
        log.info("casacore's table.tsm.option is %r: its zeros are written", option)
        return False
    targets, found = set(files), {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{name}")
            if target in targets:
                found.setdefault(target, []).append(int(name))
    if set(found) != targets or any(len(fds) != 1 for fds in found.values()):
        log.info("casacore's tile files %s not open once each: its zeros are written", targets)
        return False
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for (fd,) in found.values():
            os.dup2(null, fd)
    finally:
        os.close(null)
    return True


def _tiled_storage_files(joined: str, columns) -> dict[str, tuple[Path, int]]:
    """The storage file of each of ``columns`` and its size in bytes, as casacore lays it out.

    Each column has its own TiledColumnStMan (:func:`dsa110ms.ms.layout.fixed_array_columns`)
    whose tiles hold whole cells: tile t holds rows [t R, (t + 1) R) in C order, so the file is
    the column's rows one after another, padded to whole tiles, in the table's byte order."""
    from casacore import tables

    with tables.table(joined, ack=False) as t:
        if t.endianformat() != sys.byteorder:
            raise JoinError(f"{joined}: a {t.endianformat()}-endian table on this machine")
        nrow, dminfo = t.nrows(), t.getdminfo()
    files = {}
    for dm in dminfo.values():
        (column, *others) = dm["COLUMNS"]
        if column in columns:
            cube = dm["SPEC"]["HYPERCUBES"]["*1"]
            tile, cell = [int(n) for n in cube["TileShape"]], [int(n) for n in cube["CellShape"]]
            tile_rows = tile[-1]
            if dm["TYPE"] != "TiledColumnStMan" or others or tile[:-1] != cell:
                raise JoinError(f"{joined}: {column} is not stored as whole-cell tiles")
            path = _tile_file(joined, dm)
            files[column] = (path, -(-nrow // tile_rows) * tile_rows)
    return files


def _copy_into_storage(files: dict[str, str], parts: list[Part], columns: dict[str, str]) -> None:
    """Copy each part's arrays into the tile ``files`` of ``columns`` (MS column -> part array),
    part k at rows [k nrow, (k + 1) nrow): by O_DIRECT where aligned, else by the kernel's copy
    (:func:`dsa110ms.files.copy_region`). An error names the part's file and the tile file, its
    errno kept (ENOSPC: the output file system is full)."""
    direct_refused = False
    for column, name in columns.items():
        path = files[column]
        fd, direct = os.open(path, os.O_WRONLY), None if direct_refused else open_direct(path)
        try:
            offset = 0
            for p in parts:
                source, start, shape, dtype = p.data_region(name)
                if dtype.byteorder not in ("=", "|", "<" if sys.byteorder == "little" else ">"):
                    raise JoinError(f"{source}: byte order {dtype.str} is not this machine's")
                count = dtype.itemsize * int(np.prod(shape))
                try:
                    usable = copy_region(source, start, fd, direct, offset, count)
                except OSError as exc:
                    what = f"copying {source} into {path}: {exc.strerror or exc}"
                    raise (OSError(exc.errno, what) if exc.errno else OSError(what)) from exc
                if not usable:
                    log.info("%s: O_DIRECT refused; the kernel's copy from now on", path)
                    os.close(direct)
                    direct, direct_refused = None, True
                offset += count
        finally:
            os.close(fd)
            if direct is not None:
                os.close(direct)


def _check_storage(joined: str, parts: list[Part], columns: dict[str, str]) -> None:
    """The copied tile files padded to whole tiles, as casacore lays them out, then read back
    (:func:`_check_copied`)."""
    for column, (path, rows_allocated) in _tiled_storage_files(joined, columns).items():
        _, _, shape, dtype = parts[0].data_region(columns[column])
        row_bytes = dtype.itemsize * int(np.prod(shape[1:]))
        with open(path, "r+b") as f:
            os.ftruncate(f.fileno(), max(os.fstat(f.fileno()).st_size, rows_allocated * row_bytes))
    _check_copied(joined, parts, columns)


def _check_copied(joined: str, parts: list[Part], columns: dict[str, str]) -> None:
    """casacore reads each part's first and last row back as the part holds them: the layout
    :func:`_tiled_storage_files` relies on holds (were casacore to store the tiles otherwise,
    the join stops here, naming the column, instead of publishing scrambled data)."""
    from casacore import tables

    with tables.table(joined, ack=False) as t:
        start = 0
        for p in parts:
            for column, name in columns.items():
                try:
                    values = p.array(name)
                except ValueError as exc:  # changed since the copy: mapped beyond its end
                    raise JoinError(f"{p.path}/{name}.npy: {exc}") from exc
                for row in (0, len(values) - 1):
                    if not np.array_equal(t.getcell(column, start + row), values[row]):
                        raise JoinError(
                            f"{joined}: {column} row {start + row} differs from {p.path}/{name} "
                            f"row {row} after the byte copy: casacore's tile layout is not the "
                            "one expected"
                        )
            start += len(values)


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
