"""The seed's design, written efficiently, for comparison: a pool of 2 spawned worker processes
writes one MS part per subband on /dev/shm (pyuvdata read -> DSA-110 phase centres and UVW ->
``write_ms``), then ``casatasks.concat(copypointing=False)`` joins them.

    python -m bench.seed_design INPUT_DIR OUTPUT_DIR SCRATCH_DIR

Prints one JSON line of stage times (seconds). The parts are pyuvdata's own, without this
package's completions (WEIGHT/SIGMA, FLAG_ROW, STATE, POINTING): only the work the seed does.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
import warnings
from pathlib import Path

from dsa110ms.groups import discover
from dsa110ms.owned import make_owned_dir, remove_owned


def write_one(args: tuple[str, str]) -> str:
    """One subband as an MS, in a worker: pyuvdata read, fix-ups, ``write_ms``."""
    from dsa110ms.uvh5 import prepare, read_subband

    uvh5, ms = args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv = read_subband(uvh5)
        prepare(uv, uvh5, telescope="dsa110", keep_autocorrelations=True)
        uv.write_ms(ms)
    return ms


def main(input_dir: str, output_dir: str, scratch: str) -> None:
    from dsa110ms import casa

    (group,) = list(discover(input_dir))
    scratch_dir = Path(scratch)  # inside the benchmark's marked scratch (bench/run.py)
    remove_owned(scratch_dir, scratch_dir.parent)
    make_owned_dir(scratch_dir, "benchmark")
    jobs = [
        (str(group.files[sb]), str(scratch_dir / f"sb{sb:02d}.ms"))
        for sb in group.subbands_ascending_frequency()
    ]
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        parts = pool.map(write_one, jobs, chunksize=1)
    t1 = time.perf_counter()
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    casa.tasks().concat(
        vis=parts, concatvis=str(Path(output_dir) / f"{group.id}.ms"), copypointing=False
    )
    t2 = time.perf_counter()
    remove_owned(scratch_dir, scratch_dir.parent)
    print(json.dumps({"parts_s": round(t1 - t0, 1), "join_s": round(t2 - t1, 1)}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
