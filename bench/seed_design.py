"""The seed's design, for comparison: 2 reused worker processes write one MS part per subband
on /dev/shm (pyuvdata read -> phase centres/UVW -> write_ms), then ``casatasks.concat``.

    python -m bench.seed_design INPUT_DIR OUTPUT_DIR SCRATCH_DIR

Prints one JSON line of stage times (seconds). Uses this package's part writer, so it does the
same (correct) per-part work as ours; what differs is the process layout and the join.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
import warnings
from pathlib import Path

from dsa110ms.groups import discover
from dsa110ms.ms.join import concat_parts
from dsa110ms.owned import make_owned_dir, remove_owned


def write_one(args: tuple[str, str]) -> str:
    from dsa110ms.ms.template import write_pyuvdata_ms as write_part

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(write_part(*args))


def main(input_dir: str, output_dir: str, scratch: str) -> None:
    (group,) = list(discover(input_dir))
    scratch_dir = Path(scratch)  # inside the benchmark's marked scratch (bench/run.py)
    remove_owned(scratch_dir, scratch_dir.parent)
    make_owned_dir(scratch_dir, "benchmark")
    jobs = [
        (group.files[sb], str(scratch_dir / f"sb{sb:02d}.ms"))
        for sb in group.subbands_ascending_frequency()
    ]
    t0 = time.perf_counter()
    with multiprocessing.Pool(2) as pool:
        parts = pool.map(write_one, jobs)
    t1 = time.perf_counter()
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    concat_parts(parts, Path(output_dir) / f"{group.id}.ms")
    t2 = time.perf_counter()
    remove_owned(scratch_dir, scratch_dir.parent)
    print(json.dumps({"parts_s": round(t1 - t0, 1), "join_s": round(t2 - t1, 1)}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
