"""Writing one subband as an MS part on scratch: its rows of the main table's spectral columns.

A part is a directory holding, as NumPy ``.npy`` arrays, the columns of the main table that differ
between subbands, one row per MS row in the template's row order (:mod:`dsa110ms.rawuvh5`):
DATA, FLAG, WEIGHT_SPECTRUM and their per-row summaries WEIGHT, SIGMA, FLAG_ROW
(:mod:`dsa110ms.ms.layout`); ANTENNA1/ANTENNA2 for checking; CHAN_FREQ and CHAN_WIDTH (Hz,
ascending) for its SPECTRAL_WINDOW row. ``part.json`` (the input file, row and time counts, the
file's geometry digest, whole and per item) is written last: a part without it is incomplete.
Everything the subbands share lives once in the group's template (:mod:`dsa110ms.ms.template`);
the join combines the two into the MS.

Why NumPy files rather than a casacore table: on this class of machine casacore reads and writes
tiled columns at ~400 MB/s, while the join maps ``.npy`` files from tmpfs at no cost and the part
job skips importing python-casacore. A part job imports h5py and NumPy only and starts in ~0.3 s.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsa110ms.errors import InputFileError, ValidationError
from dsa110ms.files import DIRECT_ALIGN, input_identity
from dsa110ms.ms.layout import ROW_ARRAYS, weights_from_spectrum
from dsa110ms.observe.quicklook import subband_quicklook
from dsa110ms.phasecenter import PhasePlan
from dsa110ms.rawuvh5 import file_is_unprojected, read_subband_arrays
from dsa110ms.space import check_room, part_bytes, shape_of

log = logging.getLogger(__name__)

#: The part's description, written last.
MANIFEST_NAME = "part.json"
#: Arrays of a part: the main-table columns of :data:`dsa110ms.ms.layout.ROW_ARRAYS`, the
#: baselines (to check the row order) and the channels.
CHECK_ARRAYS = ("ANTENNA1", "ANTENNA2")
CHANNEL_ARRAYS = ("CHAN_FREQ", "CHAN_WIDTH")


def check_free_space(uvh5_path: str, part_path: Path) -> None:
    """Refuse to start a part that cannot fit on scratch (sized from its data's shape, as the
    run admits groups: :mod:`dsa110ms.space`), in one line with the needed and free sizes."""
    need = part_bytes(uvh5_path, shape_of(uvh5_path))
    check_room(part_path.parent, need, f"the part of {uvh5_path}")


def write_part(
    uvh5_path: str | os.PathLike,
    part_path: str | os.PathLike,
    *,
    telescope: str = "dsa110",
    generic_phasing: str = "refuse",
    keep_autocorrelations: bool = True,
    phase_plan: str | os.PathLike | None = None,
    crash: bool = False,
) -> Path:
    """Write the part of one subband file at ``part_path`` (a new directory); its parent is
    created (mode 0700) if missing. ``phase_plan``: the group's plan
    (:class:`dsa110ms.phasecenter.PhasePlan`), whose rotation is applied to the visibilities
    (the MS's one FIELD).

    ``crash`` (test facility, :mod:`dsa110ms.faults`): die half-way, leaving a partial part.
    """
    uvh5_path, part_path = str(uvh5_path), Path(part_path)
    part_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_free_space(uvh5_path, part_path)
    # the file as read, recorded for the MS's stamp (a file removed or re-sent later is then
    # reported as such); one that changes while it is read is refused
    as_read = input_identity(uvh5_path)
    rotation = None
    if (telescope, generic_phasing) == ("generic", "first_zenith") and file_is_unprojected(
        uvh5_path
    ):
        from dsa110ms.uvh5 import first_zenith_rotation  # pyuvdata: only where it is needed

        rotation = first_zenith_rotation(uvh5_path)
    plan = None
    if phase_plan is not None:
        plan = rotation = PhasePlan.load(phase_plan)
    sb = read_subband_arrays(
        uvh5_path,
        telescope=telescope,
        keep_autocorrelations=keep_autocorrelations,
        rotation=rotation,
    )
    nrow, nchan, npol = sb.data.shape
    log.info(
        "%s: %d rows x %d channels (%.6f-%.6f MHz) x %d pols -> %s",
        uvh5_path,
        nrow,
        nchan,
        sb.chan_freq[0] / 1e6,
        sb.chan_freq[-1] / 1e6,
        npol,
        part_path,
    )
    if (now := input_identity(uvh5_path)) != as_read:
        raise InputFileError(
            f"{uvh5_path}: changed while it was read ({as_read['size']} -> {now['size']} bytes, "
            "modified again): still being written or re-sent? Not converted; the next run "
            "reads it again"
        )
    if plan is not None and not plan.rotates(sb.geometry_digest):
        # not rotated, and so recorded: the join compares the group's files and names the one
        # that differs from the rest (the plan's source, if it is the odd one)
        log.warning(
            "%s: its geometry differs from %s, which the group's phase plan was made from: not "
            "rotated (the join names the file that differs from the rest of the group)",
            uvh5_path,
            plan.source,
        )
        plan = None
    weight, sigma = weights_from_spectrum(sb.weight_spectrum, sb.flag)
    arrays = {
        "DATA": sb.data,
        "FLAG": sb.flag,
        "WEIGHT_SPECTRUM": sb.weight_spectrum,
        "WEIGHT": weight,
        "SIGMA": sigma,
        "FLAG_ROW": sb.flag.all(axis=(1, 2)),
        "ANTENNA1": sb.ant_1,
        "ANTENNA2": sb.ant_2,
        "CHAN_FREQ": sb.chan_freq,
        "CHAN_WIDTH": sb.chan_width,
    }
    part_path.mkdir(mode=0o700, exist_ok=True)
    for name, values in arrays.items():
        save_aligned(part_path / f"{name}.npy", values)
        if crash:
            log.error("%s: injected crash while writing %s", uvh5_path, part_path)
            os._exit(70)  # die like a killed process: no cleanup, no exception handling
    manifest = {
        "source_file": uvh5_path,
        "input": as_read,
        "rows": nrow,
        "channels": nchan,
        "polarizations": npol,
        "times": sb.n_times,
        "geometry_digest": sb.geometry_digest,
        "geometry_items": sb.geometry_items,  # to name the item that differs
        # the one FIELD it was rotated to, which the template's must be (checked at the join)
        "phase_center": None if plan is None else plan.field(),
        # for the run report, while the data are in memory (the MS is not read again)
        "quicklook": subband_quicklook(sb.data, sb.flag, sb.ant_1, sb.ant_2, sb.n_times),
    }
    (part_path / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
    return part_path


def save_aligned(path: Path, values: np.ndarray) -> None:
    """``values`` as a .npy file (format 1.0) whose data start at byte
    :data:`dsa110ms.files.DIRECT_ALIGN`: its header padded with spaces, as the format allows, so
    the join can hand the data to the disk by O_DIRECT (:func:`dsa110ms.files.copy_region`)."""
    values = np.ascontiguousarray(values)
    header = np.lib.format.header_data_from_array_1_0(values)
    text = repr({k: header[k] for k in ("descr", "fortran_order", "shape")})
    preamble = np.lib.format.magic(1, 0) + (DIRECT_ALIGN - 10).to_bytes(2, "little")
    with open(path, "wb") as f:
        f.write(preamble + text.ljust(DIRECT_ALIGN - 11).encode("latin1") + b"\n")
        values.tofile(f)


#: The value type of the arrays the join copies byte for byte into the MS's columns.
ARRAY_TYPES = {
    "DATA": np.dtype(np.complex64),
    "WEIGHT_SPECTRUM": np.dtype(np.float32),
    "WEIGHT": np.dtype(np.float32),
    "SIGMA": np.dtype(np.float32),
}

HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _read_header(f, path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a C-order .npy file; leaves ``f`` at the start of the data."""
    version = np.lib.format.read_magic(f)
    read_header = HEADER_READERS.get(version)
    if read_header is None:
        raise ValidationError(f"{path}: .npy version {version}")
    shape, fortran, dtype = read_header(f)
    if fortran:
        raise ValidationError(f"{path}: not in C order")
    return shape, dtype


@dataclass(frozen=True)
class Part:
    """A part opened for reading: its manifest and memory-mapped arrays."""

    path: Path
    manifest: dict

    def array(self, name: str) -> np.ndarray:
        """A whole array, memory-mapped (its pages count in RSS once read)."""
        return np.load(self.path / f"{name}.npy", mmap_mode="r", allow_pickle=False)

    def read_into(self, name: str, out: np.ndarray | None = None) -> np.ndarray:
        """A whole array read into ``out`` (reused across parts: no fresh pages to fault in,
        unlike a memory map) or a new array."""
        with open(self.path / f"{name}.npy", "rb") as f:
            shape, dtype = _read_header(f, self.path / f"{name}.npy")
            if out is None or out.shape != shape or out.dtype != dtype:
                out = np.empty(shape, dtype)
            f.readinto(memoryview(out).cast("B"))
        return out

    def data_region(self, name: str) -> tuple[Path, int, tuple[int, ...], np.dtype]:
        """Where an array's values are: its file, the offset of its first value (after the .npy
        header), its shape and type; the values follow in C order."""
        path = self.path / f"{name}.npy"
        with open(path, "rb") as f:
            shape, dtype = _read_header(f, path)
            return path, f.tell(), shape, dtype

    def check_arrays(self) -> None:
        """Each main-table array has the manifest's rows, channels and polarizations, all the
        bytes its header says, and the byte-copied ones the MS column's value type (the join
        copies their bytes as they are); else ValidationError naming the file."""
        m = self.manifest
        cell = (m["rows"], m["channels"], m["polarizations"])
        shapes = {"DATA": cell, "FLAG": cell, "WEIGHT_SPECTRUM": cell, "FLAG_ROW": cell[:1]}
        shapes |= {"WEIGHT": (cell[0], cell[2]), "SIGMA": (cell[0], cell[2])}
        for name, want in shapes.items():
            path, start, shape, dtype = self.data_region(name)
            if shape != want:
                raise ValidationError(f"{path}: shape {shape}, its part.json says {want}")
            if (size := path.stat().st_size) < (end := start + dtype.itemsize * np.prod(shape)):
                raise ValidationError(f"{path}: {size} bytes, its header says {end}: cut short")
            if (value_type := ARRAY_TYPES.get(name)) and dtype != value_type:
                raise ValidationError(f"{path}: values of type {dtype}, the MS's are {value_type}")

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of an array, read into memory (bounded RSS for a reader that
        walks all parts at once)."""
        with open(self.path / f"{name}.npy", "rb") as f:
            shape, dtype = _read_header(f, self.path / f"{name}.npy")
            per_row = int(np.prod(shape[1:]))
            f.seek(start * per_row * dtype.itemsize, os.SEEK_CUR)
            n = min(stop, shape[0]) - start
            return np.fromfile(f, dtype=dtype, count=n * per_row).reshape(n, *shape[1:])

    @property
    def chan_freq(self) -> np.ndarray:
        return np.asarray(self.array("CHAN_FREQ"))


def open_part(part_path: str | os.PathLike) -> Part:
    """A complete part; a missing or incomplete one raises ValidationError naming it."""
    path = Path(part_path)
    try:
        manifest = json.loads((path / MANIFEST_NAME).read_text())
        missing = [
            n
            for n in ROW_ARRAYS + CHECK_ARRAYS + CHANNEL_ARRAYS
            if not (path / f"{n}.npy").is_file()
        ]
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{path}: incomplete or unreadable part ({exc})") from exc
    if missing:
        raise ValidationError(f"{path}: incomplete part, missing {', '.join(missing)}")
    return Part(path, manifest)
