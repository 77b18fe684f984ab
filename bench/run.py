"""Benchmark full-size DSA-110 groups, every way side by side, in one invocation.

    .venv/bin/python -m bench.run                 # everything below (about 10 minutes)
    .venv/bin/python -m bench.run --only ours --only seed

Methods, each on the same cached full-size group (16 files x 144.6 MB: 96 antennas,
24 integrations, 48 channels, 2 pols) from a warm page cache, after ``sync``:

- **ours**: ``snakemake --cores 2`` of this workflow (template job + 16 part jobs on /dev/shm,
  one join job); also with ``spw_layout: single`` (**ours-single**), with the reference join
  ``join_method: concat`` (**ours-concat**), on **4 groups** (**ours-4groups**), and with
  ``phase_center: group_meridian`` (**ours-group-meridian**: the phase plan job and the parts'
  rotation; ``bench.phase_center`` repeats both kinds alternately for a steadier ratio);
- **seed**: the design of the pipeline we replace: pyuvdata read -> phase centres/UVW ->
  ``write_ms`` per subband in 2 reused worker processes, parts on /dev/shm, then
  ``casatasks.concat``;
- **monolithic**: pyuvdata reads all 16 files joined in frequency, one ``write_ms``;
- **dryrun-1000**: ``snakemake -n`` over 1,000 groups of placeholder files (discovery + DAG).

Peak RSS is sampled (psutil, every 0.1 s) for every process of a method's process tree. Full-size
groups are simulated once into ``bench/cache/``. Results are printed as a table with the ratios
and written to ``bench/cache/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from dsa110ms.owned import make_owned_dir, remove_owned

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / "cache"
SHM = Path("/dev/shm/dsa110ms-bench")
PYTHON = sys.executable


def fresh(path: Path, root: Path = CACHE) -> Path:
    """An empty directory of the benchmark's, marked as the workflow marks its own: what an
    earlier benchmark left there is removed by the workflow's one remover, which refuses
    anything it did not create (dsa110ms.owned)."""
    root.mkdir(parents=True, exist_ok=True)
    remove_owned(path, root)
    return make_owned_dir(path, "benchmark")


def full_size_group(n_groups: int = 1) -> Path:
    """A cached input directory of ``n_groups`` full-size groups (simulated on first use)."""
    from dsa110ms.simulate import FULL_SIZE, SimulationSpec, simulate

    d = CACHE / ("full" if n_groups == 1 else f"full{n_groups}") / "in"
    if len(list(d.glob("*.hdf5"))) != 16 * n_groups:
        simulate(SimulationSpec(**FULL_SIZE, n_groups=n_groups), fresh(d))
    for f in d.glob("*.hdf5"):  # warm the page cache
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass
    return d


class ThreadSampler:
    """Something sampled every ``interval`` seconds (:meth:`_tick`) in a thread, from entering
    the ``with`` block to leaving it."""

    def __init__(self, interval: float):
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tick(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self._tick()
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class RssSampler(ThreadSampler):
    """Peak RSS of every process in a tree, sampled in a thread."""

    def __init__(self, root_pid: int, interval: float = 0.1):
        super().__init__(interval)
        self.root = psutil.Process(root_pid)
        self.peaks: dict[int, tuple[int, str]] = {}

    def _tick(self) -> None:
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

    def peaks_by_job(self) -> dict[str, float]:
        """Peak RSS (MB) of each kind of process: the largest of each command."""
        kinds = {"partjob": "part", "write_template": "template", "join_group": "join",
                 "run_report": "report", "snakemake": "snakemake"}  # fmt: skip
        out: dict[str, float] = {}
        for rss, name in self.peaks.values():
            kind = next((k for word, k in kinds.items() if word in name), "other")
            out[kind] = max(out.get(kind, 0.0), round(rss / 1e6, 1))
        return out

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


def snakemake_command(work: Path, input_dir: Path, *extra: str, **config) -> list[str]:
    settings = {"input_dir": input_dir, "output_dir": work / "out", "scratch_root": SHM, **config}
    return [
        str(Path(PYTHON).parent / "snakemake"),
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(work),
        "--configfile", str(REPO / "config" / "config.yaml"),
        "--cores", "2",
        *extra,
        "--config", *(f"{k}={v}" for k, v in settings.items()),
    ]  # fmt: skip


def stages(events: list[dict], started: float, ended: float, cores: int = 2) -> dict:
    """Where a run's wall time went, from its job events (each stamped with its end ``ts`` and
    its work ``seconds``) and the command's start and end (s, epoch):

    - ``start_s``: command -> first job (Snakefile read, discovery, DAG, onstart);
    - ``parts_s``: first job start -> last part, template (or phase plan) end;
    - ``join_s``: the last join's start -> its end (the join job's work);
    - ``end_s``: last join end -> command exit (onsuccess: cleanup, summary, report);
    - ``part_overhead_s``: what a part job costs beyond its work, on average: the parts phase's
      core-seconds less the plan's, template's and parts' work, per part."""
    jobs = [e for e in events if e["kind"] in ("phase_plan", "template", "part", "join")]
    begin = {id(e): e["ts"] - e.get("seconds", 0.0) for e in jobs}
    first = min(begin.values())
    early = [e for e in jobs if e["kind"] != "join"]
    parts_end = max(e["ts"] for e in early)
    joins = [e for e in jobs if e["kind"] == "join"]
    parts = [e for e in early if e["kind"] == "part"]
    work = sum(e["seconds"] for e in early)
    out = {
        "start_s": round(first - started, 2),
        "parts_s": round(parts_end - first, 2),
        "join_s": round(max(e["seconds"] for e in joins), 2),
        "end_s": round(ended - max(e["ts"] for e in joins), 2),
    }
    if len(joins) == 1:  # with several groups the parts phase overlaps joins
        out["part_overhead_s"] = round(((parts_end - first) * cores - work) / len(parts), 3)
    return out


def bench_ours(input_dir: Path, label: str = "ours", **config) -> dict:
    work = fresh(CACHE / f"work-{label}")
    os.sync()  # every method starts with no dirty pages in flight
    started = time.time()
    wall, sampler, _ = run_timed(snakemake_command(work, input_dir, **config), work)
    ended = time.time()
    metrics = work / "logs/metrics"
    run = json.loads((metrics / "runs.jsonl").read_text().splitlines()[-1])
    events = [json.loads(line) for line in (metrics / "events.jsonl").read_text().splitlines()]
    size = du_bytes(work / "out")
    fresh(work)
    timeline = stages(events, started, ended)
    return {
        "method": f"{label} (snakemake --cores 2)",
        "wall_s": round(wall, 1),
        "parts_s": timeline["parts_s"],  # wall: first job start to the last part's end
        "join_s": round(run["join_seconds"], 1),  # the join jobs' work (all groups)
        "peak_rss_job_mb": sampler.max_rss_mb(exclude_root=True),
        "output_mb": round(size / 1e6, 1),
        "join_mb_s": round(size / 1e6 / run["join_seconds"], 1),
        "groups": run["groups_converted"],
        "peak_rss_by_job_mb": sampler.peaks_by_job(),
        **{f"stage_{k}": v for k, v in timeline.items()},
    }


def bench_dry_run(n_groups: int = 1000) -> dict:
    """``snakemake -n`` over ``n_groups`` groups of 16 placeholder files (discovery reads names
    and permissions only)."""
    import datetime as dt

    from dsa110ms.groups import subband_file_name

    input_dir = CACHE / f"placeholders-{n_groups}"
    if len(list(input_dir.glob("*.hdf5"))) != 16 * n_groups:
        fresh(input_dir)
        start = dt.datetime(2026, 1, 1)
        for g in range(n_groups):
            t = start + dt.timedelta(seconds=309 * g)
            for sb in range(16):
                jitter = dt.timedelta(seconds=sb % 3)
                (input_dir / subband_file_name(t + jitter, sb)).touch()
    work = fresh(CACHE / "work-dryrun")
    wall, sampler, output = run_timed(snakemake_command(work, input_dir, "-n", "-q"), work)
    jobs = 18 * n_groups + 1
    return {
        "method": f"dry run, {n_groups} groups ({jobs} jobs)",
        "wall_s": round(wall, 1),
        "peak_rss_job_mb": sampler.max_rss_mb(),
    }


def bench_script(name: str, label: str, input_dir: Path) -> dict:
    """Run bench/<name>.py in its own process; it prints a JSON line of stage times."""
    out = fresh(CACHE / f"out-{name}")
    os.sync()
    cmd = [PYTHON, "-m", f"bench.{name}", str(input_dir), str(out), str(SHM / name)]
    wall, sampler, output = run_timed(cmd, REPO)
    stages = json.loads(output.strip().splitlines()[-1])
    size = du_bytes(out)
    fresh(out)
    return {
        "method": label,
        "wall_s": round(wall, 1),
        "parts_s": stages.get("parts_s"),
        "join_s": stages.get("join_s"),
        "peak_rss_job_mb": sampler.max_rss_mb(),
        "output_mb": round(size / 1e6, 1),
        "join_mb_s": round(size / 1e6 / stages["join_s"], 1) if stages.get("join_s") else None,
        **{f"stage_{k}": v for k, v in stages.items()},
    }


METHODS = {
    "ours": lambda: bench_ours(full_size_group()),
    "ours-single": lambda: bench_ours(full_size_group(), "ours-single", spw_layout="single"),
    "ours-concat": lambda: bench_ours(full_size_group(), "ours-concat", join_method="concat"),
    "ours-4groups": lambda: bench_ours(full_size_group(4), "ours-4groups"),
    "ours-group-meridian": lambda: bench_ours(
        full_size_group(), "ours-group-meridian", phase_center="group_meridian"
    ),
    "seed": lambda: bench_script(
        "seed_design", "seed design (2 workers + concat)", full_size_group()
    ),
    "monolithic": lambda: bench_script("monolithic", "pyuvdata monolithic", full_size_group()),
    "join-alone": lambda: bench_script(
        "join_alone", "join alone (check+assemble+validate)", full_size_group()
    ),
    "dryrun-1000": bench_dry_run,
}


def ratios(results: list[dict]) -> dict:
    """The goals of issue 5 as measured ratios."""
    by = {r["method"].split(" ")[0]: r for r in results}
    out = {}
    if "ours" in by:
        ours = by["ours"]["wall_s"]
        for key, name in (("seed", "seed_over_ours"), ("pyuvdata", "monolithic_over_ours")):
            if key in by:
                out[name] = round(by[key]["wall_s"] / ours, 2)
        if "ours-single" in by:
            out["single_over_per_subband"] = round(by["ours-single"]["wall_s"] / ours, 2)
        if "ours-4groups" in by:
            out["four_groups_over_one"] = round(by["ours-4groups"]["wall_s"] / ours, 2)
        if "ours-group-meridian" in by:
            gm = by["ours-group-meridian"]["wall_s"]
            out["group_meridian_over_per_integration"] = round(gm / ours, 3)
    return out


COLUMNS = (  # heading, result key, format
    ("wall s", "wall_s", "7.1f"),
    ("start", "stage_start_s", "6.2f"),
    ("parts", "parts_s", "6.1f"),
    ("join", "join_s", "5.1f"),
    ("end", "stage_end_s", "5.2f"),
    ("part ovh", "stage_part_overhead_s", "8.3f"),
    ("peak RSS MB", "peak_rss_job_mb", "11.1f"),
    ("out MB", "output_mb", "7.1f"),
    ("join MB/s", "join_mb_s", "9.1f"),
)


def table(results: list[dict]) -> str:
    """The results as a table; a blank where a method has no such stage."""
    head = f"{'method':40}" + "".join(f" {h:>{f.split('.')[0]}}" for h, _, f in COLUMNS)
    lines = [head, "-" * len(head)]
    for r in results:
        cells = []
        for _, key, f in COLUMNS:
            value = r.get(key)
            width = int(f.split(".")[0])
            cells.append(f" {value:{f}}" if value is not None else " " * (width + 1))
        lines.append(f"{r['method']:40}" + "".join(cells))
        if r.get("peak_rss_by_job_mb"):
            lines.append(f"{'':4}peak RSS by job (MB): {r['peak_rss_by_job_mb']}")
        if r.get("stage_assemble_s"):
            mb_s = r["output_mb"] / r["stage_assemble_s"]
            lines.append(
                f"{'':4}check {r['stage_check_s']} s, assemble {r['stage_assemble_s']} s "
                f"({mb_s:.0f} MB/s), validate {r['stage_validate_s']} s; a plain copy of the "
                f"parts' files to the same file system, same run: {r['stage_copy_mb_s']} MB/s"
            )
    lines += [f"{k}: {v}" for k, v in ratios(results).items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=sorted(METHODS), action="append")
    a = p.parse_args(argv)
    results = []
    for name in a.only or list(METHODS):
        fresh(SHM, SHM.parent)
        results.append(METHODS[name]())
        print(json.dumps(results[-1]), flush=True)
    remove_owned(SHM, SHM.parent)
    record = {"results": results, "ratios": ratios(results)}
    (CACHE / "results.json").write_text(json.dumps(record, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
