"""Real UVH5 files from other telescopes (``tests/data/realdata``) made into subband groups.

A file is cut by frequency into subband files named ``TIMESTAMP_sbNN.hdf5`` (sb00 the highest
frequencies, as DSA-110 numbers them) with h5py, so that every cut keeps its source's HDF5
encoding: visibility type, dataset layout, chunking and compression, and every header item but
the per-channel ones. (pyuvdata's ``select`` + ``write_uvh5`` would rewrite them all in its own
current encoding, and the reader would never see the real files' variety.)
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import h5py
import numpy as np

from dsa110ms.groups import data_start, subband_file_name, to_the_second
from dsa110ms.inventory import read_first_integration
from dsa110ms.telescope import N_SUBBANDS

REALDATA = Path(__file__).parent / "data" / "realdata"
FILES = sorted(p.name for p in REALDATA.glob("*.uvh5"))
#: Header items with one value per channel (last axis).
PER_CHANNEL_ITEMS = ("freq_array", "channel_width", "flex_spw_id_array", "eq_coeffs")
SPECTRAL_DATASETS = ("visdata", "flags", "nsamples")


def n_subbands(n_channels: int) -> int:
    """As many equal subbands as fit, at most 16: 16 when the channels divide by 16."""
    return max(n for n in range(1, N_SUBBANDS + 1) if n_channels % n == 0)


def first_time(path: Path) -> dt.datetime:
    """When the file's data start (UTC, to the second) as discovery reads it, for its subband
    files' names: so the cut files' names are their group's id."""
    first, _ = read_first_integration(str(path))
    return to_the_second(data_start(first))


def cut_into_subbands(src: Path, out_dir: Path, n: int | None = None) -> list[Path]:
    """``src`` cut by frequency into ``n`` (default :func:`n_subbands`) subband files in
    ``out_dir``, each encoded as ``src`` (module docstring)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with h5py.File(src) as f:
        header = f["Header"]
        n_channels = int(header["Nfreqs"][()])
        n = n or n_subbands(n_channels)
        per = n_channels // n
        descending = np.argsort(np.asarray(header["freq_array"][()]).reshape(-1))[::-1]
        t0 = first_time(src)
        paths = []
        for sb in range(n):
            chans = np.sort(descending[sb * per : (sb + 1) * per])
            path = out_dir / subband_file_name(t0, sb)
            with h5py.File(path, "w") as g:
                _copy_cut(f, g, chans)
            paths.append(path)
    return paths


def _copy_cut(f: h5py.File, g: h5py.File, chans: np.ndarray) -> None:
    for key, value in f.attrs.items():
        g.attrs[key] = value
    f.copy("Header", g)
    header = g["Header"]
    n_channels = int(f["Header/Nfreqs"][()])
    for name in PER_CHANNEL_ITEMS:
        if name in header and header[name].shape and header[name].shape[-1] == n_channels:
            values = header[name][()][..., chans]
            del header[name]
            header[name] = values
    del header["Nfreqs"]
    header["Nfreqs"] = len(chans)
    data = g.create_group("Data")
    for name in SPECTRAL_DATASETS:
        ds = f["Data"][name]
        values = ds[()][..., chans, :]  # (Nblts, [1,] Nfreqs, Npols): channels second to last
        chunks = (
            tuple(min(c, s) for c, s in zip(ds.chunks, values.shape, strict=True))
            if ds.chunks
            else None
        )
        data.create_dataset(
            name,
            data=values,
            chunks=chunks,
            compression=ds.compression,
            compression_opts=ds.compression_opts,
            shuffle=ds.shuffle,
        )


def pyuvdata_reference_ms(src: Path, ms: Path) -> Path:
    """What pyuvdata makes of the uncut file: ``write_ms(force_phase=True)``, completed as every
    MS pyuvdata writes for us (:func:`dsa110ms.ms.layout.complete_part_metadata`)."""
    import warnings

    from pyuvdata import UVData

    from dsa110ms.ms.layout import complete_part_metadata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv = UVData.from_file(str(src))
        uv.write_ms(str(ms), force_phase=True)
    complete_part_metadata(ms)
    return ms
