"""pyuvdata monolithic, for comparison: read all 16 subbands into one object (joined in
frequency), fix phase centres/UVW once, one ``write_ms`` (a single 768-channel SPW).

    python -m bench.monolithic INPUT_DIR OUTPUT_DIR SCRATCH_DIR

Prints one JSON line of stage times (seconds): ``parts_s`` = read and prepare, ``join_s`` =
``write_ms``.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

from dsa110ms.groups import discover
from dsa110ms.uvh5 import prepare, read_subband


def main(input_dir: str, output_dir: str, _scratch: str) -> None:
    (group,) = list(discover(input_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        # float32 UVW must become float64 before pyuvdata can combine: read_subband does it
        uvs = [read_subband(group.files[sb]) for sb in group.subbands_ascending_frequency()]
        uv = uvs[0].fast_concat(uvs[1:], axis="freq", inplace=False)
        del uvs
        prepare(uv, group.files[15], telescope="dsa110", keep_autocorrelations=True)
        t1 = time.perf_counter()
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        uv.write_ms(str(Path(output_dir) / f"{group.id}.ms"))
        t2 = time.perf_counter()
    print(json.dumps({"parts_s": round(t1 - t0, 1), "join_s": round(t2 - t1, 1)}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
