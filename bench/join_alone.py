"""The join alone, from the page cache: a full-size group's template and parts on /dev/shm
(written first, not timed), then the concat job's three steps timed on their own:
``check_parts``, ``assemble`` (the MS written) and ``validate_joined``.

Its baseline, in the same run and on the same file system: a plain copy of the parts' files
(``shutil.copyfile``, the kernel's copy) into OUTPUT_DIR, timed, then removed before the join
writes (on this VM, writing into memory the kernel has just freed is faster than into memory
never touched: so the copy, first, is not favoured by the order).

    python -m bench.join_alone INPUT_DIR OUTPUT_DIR SCRATCH_DIR

Prints one JSON line: the steps' seconds and the MS's size; ``join_s`` is their sum.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from dsa110ms.groups import discover
from dsa110ms.ms.join import assemble
from dsa110ms.ms.part import write_part
from dsa110ms.ms.template import write_template
from dsa110ms.ms.validate import check_parts, validate_joined
from dsa110ms.owned import make_owned_dir, remove_owned


def plain_copy(parts: list[str], into: Path) -> tuple[float, int]:
    """Seconds and bytes of copying the parts' files into ``into``, which is then removed."""
    make_owned_dir(into, "benchmark")
    files = [f for p in parts for f in sorted(Path(p).iterdir())]
    os.sync()
    start = time.perf_counter()
    for k, f in enumerate(files):
        shutil.copyfile(f, into / f"{k}.{f.name}")
    seconds = time.perf_counter() - start
    remove_owned(into, into.parent)
    return seconds, sum(f.stat().st_size for f in files)


def main(input_dir: str, output_dir: str, scratch: str) -> None:
    (group,) = list(discover(input_dir))
    work = Path(scratch)  # inside the benchmark's marked scratch (bench/run.py)
    remove_owned(work, work.parent)
    make_owned_dir(work, "benchmark")
    template = write_template(group.files[0], work / "template.ms")
    parts = [
        str(write_part(group.files[sb], work / f"sb{sb:02d}.part"))
        for sb in group.subbands_ascending_frequency()
    ]
    ms = Path(output_dir) / f"{group.id}.ms"
    copy_s, copied = plain_copy(parts, Path(output_dir) / "copy")
    os.sync()  # nothing of the parts' writing in flight
    t0 = time.perf_counter()
    summaries = check_parts(template, parts, {})
    t1 = time.perf_counter()
    assemble(template, parts, ms)
    t2 = time.perf_counter()
    validate_joined(ms, summaries, group.id, field_per_integration=True)
    t3 = time.perf_counter()
    remove_owned(work, work.parent)
    size = sum(f.stat().st_size for f in ms.rglob("*") if f.is_file())
    print(
        json.dumps(
            {
                "check_s": round(t1 - t0, 2),
                "assemble_s": round(t2 - t1, 2),
                "validate_s": round(t3 - t2, 2),
                "join_s": round(t3 - t0, 2),
                "ms_mb": round(size / 1e6, 1),
                "copy_mb_s": round(copied / 1e6 / copy_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
