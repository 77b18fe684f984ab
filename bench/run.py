"""Benchmark one full-size DSA-110 group three ways, side by side, in one invocation.

    .venv/bin/python -m bench.run                 # ours, the seed's design, monolithic pyuvdata
    .venv/bin/python -m bench.run --only ours     # one of them

- **ours**: ``snakemake --cores 2`` of this workflow (16 part jobs on /dev/shm, one join job);
- **seed**: the design of the pipeline we replace: pyuvdata read -> phase centres/UVW ->
  ``write_ms`` per subband in 2 reused worker processes, parts on /dev/shm, then
  ``casatasks.concat``;
- **monolithic**: pyuvdata reads all 16 files joined in frequency, one ``write_ms``.

The full-size group (16 files x 144.6 MB: 96 antennas, 24 integrations, 48 channels, 2 pols) is
simulated once into ``bench/cache/`` and reused. Each method is timed from a warm page cache;
peak RSS is sampled (psutil, every 0.1 s) for every process of the method's process tree. Results
are printed as a table and written to ``bench/cache/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / "cache"
SHM = Path("/dev/shm/dsa110ms-bench")
PYTHON = sys.executable


def full_size_group() -> Path:
    """The cached full-size input group (simulated on first use)."""
    from dsa110ms.simulate import FULL_SIZE, SimulationSpec, simulate

    d = CACHE / "full" / "in"
    if len(list(d.glob("*.hdf5"))) != 16:
        shutil.rmtree(d, ignore_errors=True)
        simulate(SimulationSpec(**FULL_SIZE), d)
    for f in d.glob("*.hdf5"):  # warm the page cache
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass
    return d


class RssSampler:
    """Peak RSS of every process in a tree, sampled in a thread."""

    def __init__(self, root_pid: int, interval: float = 0.1):
        self.root = psutil.Process(root_pid)
        self.interval = interval
        self.peaks: dict[int, tuple[int, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                procs = []
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    name = " ".join(p.cmdline()[1:3])[-60:]
                except psutil.Error:
                    continue
                if rss > self.peaks.get(p.pid, (0, ""))[0]:
                    self.peaks[p.pid] = (rss, name)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def max_rss_mb(self, exclude_root: bool = False) -> float:
        values = [
            rss
            for pid, (rss, _) in self.peaks.items()
            if not (exclude_root and pid == self.root.pid)
        ]
        return round(max(values, default=0) / 1e6, 1)


def du_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_timed(cmd: list[str], cwd: Path, env=None) -> tuple[float, RssSampler, str]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    with RssSampler(proc.pid) as sampler:
        output, _ = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{output[-3000:]}")
    return wall, sampler, output


def bench_ours(input_dir: Path) -> dict:
    work = CACHE / "work-ours"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = work / "out"
    cmd = [
        str(Path(PYTHON).parent / "snakemake"),
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(work),
        "--configfile", str(REPO / "config" / "config.yaml"),
        "--cores", "2",
        "--config", f"input_dir={input_dir}", f"output_dir={out}", f"scratch_root={SHM}",
    ]  # fmt: skip
    wall, sampler, _ = run_timed(cmd, work)
    run = json.loads((work / "logs/metrics/runs.jsonl").read_text().splitlines()[-1])
    size = du_bytes(out)
    return {
        "method": "ours (snakemake --cores 2)",
        "wall_s": round(wall, 1),
        "parts_s": round(run["part_seconds"] / 2, 1),  # 16 jobs on 2 cores
        "join_s": round(run["join_seconds"], 1),
        "peak_rss_job_mb": sampler.max_rss_mb(exclude_root=True),
        "output_mb": round(size / 1e6, 1),
        "join_mb_s": round(size / 1e6 / run["join_seconds"], 1),
    }


def bench_script(name: str, label: str, input_dir: Path) -> dict:
    """Run bench/<name>.py in its own process; it prints a JSON line of stage times."""
    out = CACHE / f"out-{name}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [PYTHON, "-m", f"bench.{name}", str(input_dir), str(out), str(SHM / name)]
    wall, sampler, output = run_timed(cmd, REPO)
    stages = json.loads(output.strip().splitlines()[-1])
    size = du_bytes(out)
    return {
        "method": label,
        "wall_s": round(wall, 1),
        "parts_s": stages.get("parts_s"),
        "join_s": stages.get("join_s"),
        "peak_rss_job_mb": sampler.max_rss_mb(),
        "output_mb": round(size / 1e6, 1),
        "join_mb_s": round(size / 1e6 / stages["join_s"], 1) if stages.get("join_s") else None,
    }


METHODS = {
    "ours": bench_ours,
    "seed": lambda d: bench_script("seed_design", "seed design (2 workers + concat)", d),
    "monolithic": lambda d: bench_script("monolithic", "pyuvdata monolithic", d),
}


def table(results: list[dict]) -> str:
    ours = next((r for r in results if r["method"].startswith("ours")), None)
    head = f"{'method':36} {'wall s':>7} {'parts s':>8} {'join s':>7} {'peak RSS MB':>12} " \
           f"{'out MB':>8} {'join MB/s':>9} {'vs ours':>8}"  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in results:
        ratio = f"{r['wall_s'] / ours['wall_s']:.2f}x" if ours else ""
        lines.append(
            f"{r['method']:36} {r['wall_s']:7.1f} {r['parts_s'] or 0:8.1f} {r['join_s'] or 0:7.1f} "
            f"{r['peak_rss_job_mb']:12.1f} {r['output_mb']:8.1f} {r['join_mb_s'] or 0:9.1f} "
            f"{ratio:>8}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=sorted(METHODS), action="append")
    a = p.parse_args(argv)
    os.environ.setdefault("PYTHONPATH", str(REPO))
    input_dir = full_size_group()
    results = []
    for name in a.only or list(METHODS):
        shutil.rmtree(SHM, ignore_errors=True)
        results.append(METHODS[name](input_dir))
        print(json.dumps(results[-1]), flush=True)
    shutil.rmtree(SHM, ignore_errors=True)
    (CACHE / "results.json").write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
