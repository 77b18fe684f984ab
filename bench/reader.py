"""The part reader's speed on each UVH5 encoding of a full-size DSA-110 subband file.

    .venv/bin/python -m bench.reader            # about a minute

One file of the cached full-size group (``bench.run.full_size_group``: 96 antennas, 24
integrations, 48 channels, 2 pols, complex64, the correlator's chunking) is re-encoded, and
``write_part`` (the whole work of a part job: read, reorder, weights, write to /dev/shm) is
timed on each, from a warm page cache, best of 3:

- **complex64 chunked**: the correlator's files; the raw-chunk fast path, and the same file read
  by HDF5's own selection (what the fast path saves);
- **complex128 chunked**: the same values in double precision; fast path, twice the bytes;
- **complex64 contiguous**, **complex64 gzip**, **int16 compound gzip**: HDF5's general path.

MB/s is the input file's size over the part's seconds, so encodings of different sizes compare
by what a job has to read.
"""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np

from bench.run import SHM, fresh, full_size_group
from dsa110ms import rawuvh5
from dsa110ms.ms.part import write_part
from dsa110ms.owned import remove_owned

#: name -> (visibility type, h5py storage options); "raw" keeps the source's chunking.
ENCODINGS = {
    "complex64 chunked (fast path)": ("complex64", "raw"),
    "complex64 chunked, HDF5's path": ("complex64", "raw"),
    "complex128 chunked (fast path)": ("complex128", "raw"),
    "complex64 contiguous": ("complex64", {}),
    "complex64 gzip": ("complex64", {"chunks": True, "compression": "gzip"}),
    "int16 compound gzip": ("int16", {"chunks": True, "compression": "gzip"}),
}


def encode(src: Path, dst: Path, vis_type: str, storage) -> Path:
    with h5py.File(src) as f, h5py.File(dst, "w") as g:
        f.copy("Header", g)
        data = g.create_group("Data")
        for name in ("visdata", "flags", "nsamples"):
            ds = f["Data"][name]
            values = ds[()]
            options = {"chunks": ds.chunks} if storage == "raw" else dict(storage)
            if name == "visdata" and vis_type == "int16":
                compound = np.dtype([("r", np.int16), ("i", np.int16)])
                scaled = values * (30000 / np.abs(values).max())
                values = np.empty(values.shape, compound)
                values["r"], values["i"] = np.round(scaled.real), np.round(scaled.imag)
            elif name == "visdata":
                values = values.astype(vis_type)
            data.create_dataset(name, data=values, **options)
    return dst


def best_of(n: int, work) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    src = sorted(full_size_group().glob("*_sb03.hdf5"))[0]
    files = fresh(SHM.parent / "dsa110ms-bench-reader", SHM.parent)
    rows = []
    try:
        for name, (vis_type, storage) in ENCODINGS.items():
            path = encode(src, files / "in.hdf5", vis_type, storage)
            size = path.stat().st_size
            path.read_bytes()  # page cache

            def part(path=path):
                out = files / "part"
                remove_owned(out, files)
                write_part(path, out)

            if "HDF5's path" in name:  # the fast path's alternative: HDF5 reads every chunk
                fast = rawuvh5._read_chunks
                rawuvh5._read_chunks = lambda ds, chunks, channels, path: rawuvh5._in_order(
                    ds[()], channels
                )
                try:
                    seconds = best_of(3, part)
                finally:
                    rawuvh5._read_chunks = fast
            else:
                seconds = best_of(3, part)
            rows.append((name, size / 1e6, seconds, size / 1e6 / seconds))
            remove_owned(path, files)
    finally:
        remove_owned(files, SHM.parent)
    print(f"part job work on {src.name}, best of 3")
    print(f"{'encoding':34} {'file MB':>8} {'seconds':>8} {'MB/s':>8}")
    for name, mb, seconds, rate in rows:
        print(f"{name:34} {mb:8.1f} {seconds:8.3f} {rate:8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
