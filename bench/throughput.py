"""Throughput at the limit: what one ``snakemake --cores 2`` run sustains over many full-size
groups, against what this machine's CPUs and disk allow at best, in one invocation:

    .venv/bin/python -m bench.throughput              # N = 4 and N = 8 groups (~10 minutes)
    .venv/bin/python -m bench.throughput --groups 4 --max-wait 60 --attempts 1

For each N: N cached full-size groups (16 files x 144.6 MB each; ``bench.run.full_size_group``,
8 groups simulated once, ~18.5 GB, 2.5 minutes); a wait (at most ``--max-wait`` s) until the
machine's CPUs are < 10 % busy over 5 s, since it may be shared and a run competing for 2 cores
says little; the inputs read into the page cache, ``sync``; one ``snakemake --cores 2`` run of
this workflow (``bench.run.snakemake_command``: outputs under ``bench/cache/``, the inputs'
file system; scratch on /dev/shm); then a timed ``sync`` of what the run left dirty. A run is
repeated (at most ``--attempts`` times, the least disturbed kept) while other work took more
than 5 % of the machine's core-seconds meanwhile (its busy time less the run's CPU and the
kernel threads'); so is the copy below. On a machine others keep busy, ``--nice -10`` gives
the benchmark and its runs the larger share of the CPUs (root only; in a session of its own,
its autogroup at that niceness, since autogroups share the CPUs whatever processes' niceness).
**s/group** = (run + that sync) / N, to disk like the disk floor (**wall/grp**: the run alone).
Against two floors, per group:

- **CPU floor**: the CPU seconds (user + system) of the template, phase plan (if any) and part
  jobs of the run, / 2 cores. Measured by the kernel's accounting, not estimated (the workflow's
  metrics events and job records hold work seconds, no CPU time): every job is a child process
  the Snakemake process waits for, with all it forks and waits for, so its whole CPU time is
  added to Snakemake's reaped-children time (``cutime``, ``cstime`` of /proc/PID/stat) when it
  ends. That total is sampled every 0.05 s with Snakemake's children (/proc/PID/task/*/children;
  a job's kind from its command line), and each increase is given to the jobs that ended
  meanwhile (split by the CPU last seen of their processes, when several did).
- **disk floor**: right after the run and the removal of its MSs, a plain copy (``sendfile``) of
  as many bytes as the run's MSs hold, from the run's input files (read into the page cache
  first, not timed) into a directory beside the outputs, then ``sync``: both timed.

**ratio** = s/group / max(CPU floor, disk floor) (issue 21's goal: <= 1.25). The copy costs CPU
too (the kernel's copy and writeback): **CPU+copy** = (the floor jobs' CPU + the copy's) / 2
cores, per group, is what both need of the 2 cores together.

Also, from the same run: where each group's core-seconds (2 x s/group) went: template and
parts, join, Snakemake itself, the report, this sampling, kernel threads, idle and iowait; each
job's process interval matched to its metrics events (group, work seconds) by pid; the seconds
0, 1, 2 jobs ran; for each join, the seconds it ran alone and beside the next group's jobs; the
**cadence** (median seconds between successive joins' ends: a group's time once the pipeline
is full); the system part of each kind's CPU; the machine's idle, iowait and steal core-seconds
and the CPU spent outside the run (other work, the kernel's writeback), with the busiest
processes outside it. Each run's
Snakemake log is kept as ``bench/cache/throughput-N.snakemake.log``; results are printed and
written to ``bench/cache/throughput.json``. The runs' outputs and the copies are removed after
measuring (``dsa110ms.owned.remove_owned``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.run import CACHE, SHM, ThreadSampler, fresh, full_size_group, snakemake_command
from dsa110ms.owned import remove_owned

CORES = 2
#: A run (or copy) is taken as the machine's alone when other work took at most this fraction
#: of the machine's core-seconds meanwhile; else it is repeated (``--attempts``).
MAX_OTHERS = 0.05
INTERVAL_S = 0.05
TICK_S = 1 / os.sysconf("SC_CLK_TCK")
#: A job's kind, from a word of its command line (shell: or script: of its rule).
KINDS = {
    "dsa110ms.run.partjob": "part",
    "write_template": "template",
    "write_phase_plan": "phase_plan",
    "join_group": "join",
    "run_report": "report",
}
#: The jobs whose CPU the CPU floor counts (the join's is I/O bound: the disk floor's).
CPU_FLOOR_KINDS = ("template", "phase_plan", "part")


# --- the run's job processes and their CPU ------------------------------------------------------


def _stat(pid: int) -> list[bytes] | None:
    """/proc/PID/stat after the command's name: [0] state, [11] utime, [12] stime, [13] cutime,
    [14] cstime (clock ticks)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].split()


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.update(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _kind(cmd: str) -> str:
    return next((kind for word, kind in KINDS.items() if word in cmd), "other")


@dataclass
class Job:
    """One child process of Snakemake (a job) and what it forked."""

    pid: int
    first: float
    last: float
    cmd: str = ""
    kind: str = "other"
    end: float | None = None
    pids: set[int] = field(default_factory=set)
    seen_cpu: dict[int, float] = field(default_factory=dict)  # pid -> own CPU last seen (s)
    cpu_s: float = 0.0  # from Snakemake's reaped-children time (user + system)
    sys_s: float = 0.0  # of which system
    group: str | None = None
    work_s: float = 0.0  # the metrics events' seconds


class JobSampler(ThreadSampler):
    """Snakemake's jobs (its child processes), their intervals and their CPU, sampled in a
    thread (see the module's docstring)."""

    def __init__(self, root_pid: int, interval: float = INTERVAL_S):
        super().__init__(interval)
        self.root = root_pid
        self.jobs: dict[int, Job] = {}
        self.pending: list[Job] = []  # ended, their CPU not yet seen in the reaped total
        self.reaped = (0.0, 0.0)  # Snakemake's cutime, cstime (s), last seen
        self.own_s = 0.0  # Snakemake's utime + stime, last seen
        self.unattributed_s = 0.0

    def _tick(self) -> None:
        stat = _stat(self.root)  # the reaped total first: a job reaped after it still shows
        if stat is None:
            return
        now = time.time()
        self.own_s = (int(stat[11]) + int(stat[12])) * TICK_S
        reaped = (int(stat[13]) * TICK_S, int(stat[14]) * TICK_S)
        alive = _children(self.root)
        for pid in alive:
            job = self.jobs.get(pid)
            if job is None or job.end is not None:  # a new job (or a pid reused)
                job = self.jobs[pid] = Job(pid, now, now)
            job.last = now
            if job.kind == "other":  # until the fork has become the job's command
                job.cmd = _cmdline(pid)
                job.kind = _kind(job.cmd)
            todo = [pid]
            while todo:
                p = todo.pop()
                job.pids.add(p)
                if (s := _stat(p)) is not None:
                    job.seen_cpu[p] = (int(s[11]) + int(s[12])) * TICK_S
                todo += _children(p)
        for job in self.jobs.values():
            if job.end is None and job.pid not in alive:
                job.end = now
                self.pending.append(job)
        user, system = (a - b for a, b in zip(reaped, self.reaped, strict=True))
        self.reaped = reaped
        if user + system > 0:
            if self.pending:
                weights = [max(sum(j.seen_cpu.values()), 1e-3) for j in self.pending]
                for job, w in zip(self.pending, weights, strict=True):
                    job.cpu_s += (user + system) * w / sum(weights)
                    job.sys_s += system * w / sum(weights)
                self.pending = []
            else:  # a process that lived less than a sample
                self.unattributed_s += user + system

    def __exit__(self, *exc):
        super().__exit__(*exc)
        for job in self.jobs.values():
            job.end = job.end or job.last


# --- one run and its floors ---------------------------------------------------------------------


def _warm(files: list[Path]) -> None:
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def _cpu_core_seconds(before, after, digits: int = 1) -> dict:
    d = {k: getattr(after, k) - getattr(before, k) for k in before._fields}
    busy = sum(d.values()) - d["idle"] - d.get("iowait", 0.0) - d.get("steal", 0.0)
    out = {"busy": busy, "idle": d["idle"], "iowait": d.get("iowait", 0.0)}
    out["steal"] = d.get("steal", 0.0)
    return {k: round(v, digits) for k, v in out.items()}


def wait_for_quiet(max_wait_s: float, busy_below: float = 0.1, window_s: float = 5.0) -> dict:
    """Wait (at most ``max_wait_s``) until the machine's CPUs are less than ``busy_below`` busy
    over ``window_s``: the machine may be shared, and a run competing for 2 cores says little.
    Returns the busy fraction of the last window and the seconds waited."""
    start = time.time()
    while True:
        before = psutil.cpu_times()
        time.sleep(window_s)
        d = _cpu_core_seconds(before, psutil.cpu_times(), digits=3)
        busy = d["busy"] / max(sum(d.values()), 1e-9)
        if busy < busy_below or time.time() - start > max_wait_s:
            return {"busy_before": round(busy, 3), "waited_s": round(time.time() - start, 1)}


def cpu_by_process() -> dict[tuple[int, float], tuple[str, float]]:
    """Every process's own CPU (s; not its reaped children's, which may predate a window) and
    command."""
    out = {}
    for p in psutil.process_iter(["pid", "create_time", "cmdline", "name", "cpu_times"]):
        t = p.info["cpu_times"]
        if t is None:
            continue
        cmd = " ".join(p.info["cmdline"] or []) or f"[{p.info['name']}]"
        out[p.info["pid"], p.info["create_time"]] = (cmd, t.user + t.system)
    return out


def outside(before: dict, after: dict, exclude: set[int], top: int = 4) -> dict:
    """Between two :func:`cpu_by_process` snapshots: the kernel threads' CPU (writeback,
    reclaim: part of writing the bytes) and the processes but ``exclude`` that used the most
    (those alive at both; CPU s, command)."""
    used = [
        (round(cpu - before[key][1], 1), cmd[:120])
        for key, (cmd, cpu) in after.items()
        if key in before and key[0] not in exclude
    ]
    kernel = sum(cpu for cpu, cmd in used if cmd.startswith("["))
    return {"kernel_s": round(kernel, 1), "busiest": sorted(used, reverse=True)[:top]}


def _others_fraction(busy: float, mine: float, kernel: float, seconds: float) -> float:
    """The fraction of the machine's core-seconds that other work took meanwhile."""
    return round(max(busy - mine - kernel, 0.0) / (CORES * seconds), 3)


def _ms_bytes(out: Path) -> int:
    return sum(f.stat().st_size for ms in out.glob("*.ms") for f in ms.rglob("*") if f.is_file())


def convert(
    n_groups: int, inputs: Path, snakefile: Path | None = None, max_wait_s: float = 900.0
) -> dict:
    """One ``snakemake --cores 2`` run over ``inputs`` (``n_groups`` groups), timed to disk;
    its MSs' bytes, jobs and events; its outputs removed afterwards."""
    work = fresh(CACHE / f"work-throughput-{n_groups}")
    cmd = snakemake_command(work, inputs)
    if snakefile is not None:  # a variant of the workflow (an experiment)
        cmd[cmd.index("--snakefile") + 1] = str(snakefile)
    fresh(SHM, SHM.parent)
    quiet = wait_for_quiet(max_wait_s)
    _warm(sorted(inputs.glob("*.hdf5")))  # again: waiting may have let others evict them
    os.sync()  # no dirty pages in flight
    processes = cpu_by_process()
    cpu0, me0 = psutil.cpu_times(), psutil.Process().cpu_times()
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with JobSampler(proc.pid) as sampler:
        output, _ = proc.communicate()
    ended = time.time()
    cpu1, me1 = psutil.cpu_times(), psutil.Process().cpu_times()
    others = outside(processes, cpu_by_process(), {os.getpid(), proc.pid})
    sampler_s = me1.user + me1.system - me0.user - me0.system
    os.sync()  # what the run left dirty, to disk
    flush_s = time.time() - ended
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{output.decode()[-3000:]}")
    metrics = work / "logs" / "metrics"
    events = [json.loads(line) for line in (metrics / "events.jsonl").read_text().splitlines()]
    ms_bytes = _ms_bytes(work / "out")
    n_ms = len(list((work / "out").glob("*.ms")))
    for log in sorted((work / ".snakemake" / "log").glob("*.snakemake.log"))[-1:]:
        shutil.copyfile(log, CACHE / f"throughput-{n_groups}.snakemake.log")
    remove_owned(work, CACHE)
    remove_owned(SHM, SHM.parent)
    jobs = list(sampler.jobs.values())
    attach_events(jobs, events)
    cpu, sys_cpu = {}, {}
    for job in jobs:
        cpu[job.kind] = cpu.get(job.kind, 0.0) + job.cpu_s
        sys_cpu[job.kind] = sys_cpu.get(job.kind, 0.0) + job.sys_s
    jobs_cpu = sum(cpu.values()) + sampler.unattributed_s
    system = _cpu_core_seconds(cpu0, cpu1)
    wall = ended - started
    return {
        "groups": n_groups,
        "ms_written": n_ms,
        "wall_s": round(wall, 2),
        "flush_s": round(flush_s, 2),
        "ms_bytes": ms_bytes,
        "cpu_s_by_kind": {k: round(v, 2) for k, v in sorted(cpu.items())},
        "sys_cpu_s_by_kind": {k: round(v, 2) for k, v in sorted(sys_cpu.items())},
        "cpu_unattributed_s": round(sampler.unattributed_s, 2),
        "snakemake_own_cpu_s": round(sampler.own_s, 2),
        "sampler_cpu_s": round(sampler_s, 2),  # this process meanwhile: the sampling's cost
        "system_core_s": system,
        # busy core-seconds of the machine not spent by the run's processes nor the sampling
        "outside_run_cpu_s": round(system["busy"] - jobs_cpu - sampler.own_s - sampler_s, 1),
        "kernel_threads_cpu_s": others["kernel_s"],
        "busiest_outside": others["busiest"],
        "others_fraction": _others_fraction(
            system["busy"], jobs_cpu + sampler.own_s + sampler_s, others["kernel_s"], wall
        ),
        **quiet,
        **timeline(jobs, started, ended),
    }


def attach_events(jobs: list[Job], events: list[dict]) -> None:
    """Each job's group and work seconds, from the metrics events its processes wrote."""
    by_pid = {p: job for job in jobs for p in job.pids}
    for e in events:
        job = by_pid.get(e.get("pid"))
        if job is not None and e["kind"] in ("template", "phase_plan", "part", "join"):
            job.group = e.get("group")
            job.work_s += e.get("seconds", 0.0)
    for job in jobs:  # a part job's command names its group
        if job.group is None and job.kind == "part":
            job.group = job.cmd.split("partjob", 1)[1].split()[0]


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _covered(intervals: list[tuple[float, float]], t0: float, t1: float) -> float:
    """Seconds of [t0, t1] covered by the union of ``intervals``."""
    total, reach = 0.0, t0
    for a, b in sorted(intervals):
        a, b = max(a, reach), min(b, t1)
        if b > a:
            total += b - a
            reach = b
    return total


def timeline(jobs: list[Job], started: float, ended: float) -> dict:
    """Where the run's time went: seconds with 0, 1, 2+ jobs running; per kind, the jobs'
    count, process and work seconds; per join, the seconds it ran alone and beside the next
    group's jobs; the cadence of the joins' ends."""
    work_jobs = [j for j in jobs if j.kind in ("template", "phase_plan", "part", "join")]
    edges = sorted([(j.first, 1) for j in jobs] + [(j.end, -1) for j in jobs])
    running, t, by_count = 0, started, {}
    for when, step in edges:
        by_count[min(running, 3)] = by_count.get(min(running, 3), 0.0) + max(0.0, when - t)
        running, t = running + step, max(t, when)
    by_count[0] = by_count.get(0, 0.0) + max(0.0, ended - t)
    kinds = {}
    for j in jobs:
        k = kinds.setdefault(j.kind, {"jobs": 0, "process_s": 0.0, "work_s": 0.0, "cpu_s": 0.0})
        k["jobs"] += 1
        k["process_s"] += j.end - j.first
        k["work_s"] += j.work_s
        k["cpu_s"] += j.cpu_s
    groups = sorted({j.group for j in work_jobs if j.group})
    joins = []
    for k, g in enumerate(groups):
        mine = [j for j in work_jobs if j.group == g]
        join = max((j for j in mine if j.kind == "join"), key=lambda j: j.end, default=None)
        if join is None:
            continue
        others = [(j.first, j.end) for j in jobs if j is not join]
        beside = _covered(others, join.first, join.end)
        nxt = [j for j in work_jobs if k + 1 < len(groups) and j.group == groups[k + 1]]
        last_part = max(j.end for j in mine if j.kind != "join")
        joins.append(
            {
                "group": g,
                "start_s": round(join.first - started, 2),
                "end_s": round(join.end - started, 2),
                "seconds": round(join.end - join.first, 2),
                "after_last_part_s": round(join.first - last_part, 2),
                "alone_s": round(join.end - join.first - beside, 2),
                "beside_next_group_s": round(
                    _covered([(j.first, j.end) for j in nxt], join.first, join.end), 2
                ),
                "cpu_s": round(join.cpu_s, 2),
            }
        )
    ends = [j["end_s"] for j in joins]
    steps = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    cadence = statistics.median(steps) if steps else None
    first_job = min(j.first for j in jobs)
    return {
        "start_s": round(first_job - started, 2),
        "end_s": round(ended - max(j.end for j in work_jobs), 2),
        "jobs_running_s": {str(k): round(v, 1) for k, v in sorted(by_count.items())},
        "by_kind": {
            k: {m: round(v, 2) if isinstance(v, float) else v for m, v in d.items()}
            for k, d in sorted(kinds.items())
        },
        "joins": joins,
        "cadence_s": round(cadence, 2) if cadence else None,
        "jobs": [
            [
                j.kind,
                j.group,
                round(j.first - started, 2),
                round(j.end - started, 2),
                round(j.work_s, 2),
                round(j.cpu_s, 2),
            ]
            for j in sorted(jobs, key=lambda j: j.first)
        ],  # fmt: skip
    }


def plain_copy(sources: list[Path], nbytes: int, max_wait_s: float = 900.0) -> dict:
    """Seconds of copying ``nbytes`` of ``sources`` (in the page cache) with ``sendfile`` into
    a directory beside the runs' outputs, and of the ``sync`` after it; the copy removed."""
    into = fresh(CACHE / "throughput-copy")
    quiet = wait_for_quiet(max_wait_s)
    _warm(sources)
    os.sync()
    processes = cpu_by_process()
    cpu0, me0 = psutil.cpu_times(), psutil.Process().cpu_times()
    start = time.perf_counter()
    left, k = nbytes, 0
    while left > 0:
        src = sources[k % len(sources)]
        with open(src, "rb") as fin, open(into / f"{k}.{src.name}", "wb") as fout:
            count, offset = min(left, os.fstat(fin.fileno()).st_size), 0
            while offset < count:
                offset += os.sendfile(fout.fileno(), fin.fileno(), offset, count - offset)
        left -= count
        k += 1
    copied = time.perf_counter()
    os.sync()
    synced = time.perf_counter()
    cpu1, me1 = psutil.cpu_times(), psutil.Process().cpu_times()
    kernel = outside(processes, cpu_by_process(), {os.getpid()})["kernel_s"]
    remove_owned(into, CACHE)
    os.sync()
    return {
        "copy_s": round(copied - start, 2),
        "sync_s": round(synced - copied, 2),
        "seconds": round(synced - start, 2),
        "mb_s": round(nbytes / 1e6 / (synced - start), 1),
        "cpu_s": round(me1.user + me1.system - me0.user - me0.system, 2),  # sendfile's, sync's
        "machine_busy_s": _cpu_core_seconds(cpu0, cpu1)["busy"],  # with the kernel's writeback
        "others_fraction": _others_fraction(
            _cpu_core_seconds(cpu0, cpu1)["busy"],
            me1.user + me1.system - me0.user - me0.system,
            kernel,
            synced - start,
        ),
        **quiet,
    }


def least_disturbed(measure_once, attempts: int) -> tuple[dict, list[float]]:
    """``measure_once()`` until other work took at most :data:`MAX_OTHERS` of the machine
    meanwhile, at most ``attempts`` times; the least disturbed measurement and every one's
    fraction."""
    tries = []
    for _ in range(attempts):
        tries.append(measure_once())
        if tries[-1]["others_fraction"] <= MAX_OTHERS:
            break
    return min(tries, key=lambda t: t["others_fraction"]), [t["others_fraction"] for t in tries]


def measure(
    n_groups: int, snakefile: Path | None = None, max_wait_s: float = 900.0, attempts: int = 3
) -> dict:
    """N groups converted in one run, and the floors of the same bytes and CPU."""
    inputs = full_size_group(n_groups)  # simulated once
    run, run["others_by_attempt"] = least_disturbed(
        lambda: convert(n_groups, inputs, snakefile, max_wait_s), attempts
    )
    sources = sorted(inputs.glob("*.hdf5"))
    run["copy"], run["copy_others_by_attempt"] = least_disturbed(
        lambda: plain_copy(sources, run["ms_bytes"], max_wait_s), attempts
    )
    n = n_groups
    cpu = sum(run["cpu_s_by_kind"].get(k, 0.0) for k in CPU_FLOOR_KINDS)
    run["s_per_group"] = round((run["wall_s"] + run["flush_s"]) / n, 2)
    run["wall_per_group_s"] = round(run["wall_s"] / n, 2)
    run["cpu_floor_s"] = round(cpu / CORES / n, 2)
    run["disk_floor_s"] = round(run["copy"]["seconds"] / n, 2)
    # the copy is CPU too (the kernel's): both floors' CPU on the 2 cores, for comparison
    run["cpu_and_copy_floor_s"] = round((cpu + run["copy"]["cpu_s"]) / CORES / n, 2)
    floor = max(run["cpu_floor_s"], run["disk_floor_s"])
    run["ratio"] = round(run["s_per_group"] / floor, 3)
    run["ratio_wall"] = round(run["wall_per_group_s"] / floor, 3)
    by_kind, system = run["cpu_s_by_kind"], run["system_core_s"]
    per_group = {
        "floor_jobs": cpu,
        "join": by_kind.get("join", 0.0),
        "snakemake": run["snakemake_own_cpu_s"],
        "report": by_kind.get("report", 0.0) + by_kind.get("other", 0.0),
        "sampling": run["sampler_cpu_s"],
        "kernel_threads": run["kernel_threads_cpu_s"],
        "idle": system["idle"] + system["iowait"],
    }
    run["core_s_per_group"] = {k: round(v / n, 2) for k, v in per_group.items()}
    return run


def table(results: list[dict]) -> str:
    head = (
        f"{'N':>3} {'wall s':>7} {'sync s':>6} {'s/group':>7} {'wall/grp':>8} {'CPU floor':>9} "
        f"{'disk floor':>10} {'ratio':>6} {'ratio wall':>10} {'cadence':>7} {'MS GB':>6} "
        f"{'CPU+copy':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r['groups']:>3} {r['wall_s']:>7.1f} {r['flush_s']:>6.2f} {r['s_per_group']:>7.2f} "
            f"{r['wall_per_group_s']:>8.2f} {r['cpu_floor_s']:>9.2f} {r['disk_floor_s']:>10.2f} "
            f"{r['ratio']:>6.3f} {r['ratio_wall']:>10.3f} {r['cadence_s'] or 0:>7.2f} "
            f"{r['ms_bytes'] / 1e9:>6.2f} {r['cpu_and_copy_floor_s']:>8.2f}"
        )
    for r in results:
        c, n, b = r["copy"], r["groups"], r["core_s_per_group"]
        lines += [
            f"N={n}: core-s per group (2 x s/group = {2 * r['s_per_group']:.1f}): template + "
            f"parts {b['floor_jobs']}, join {b['join']}, Snakemake {b['snakemake']}, report "
            f"{b['report']}, sampling {b['sampling']}, kernel threads {b['kernel_threads']}, "
            f"idle + iowait {b['idle']}",
            f"    CPU s by job kind {r['cpu_s_by_kind']} (unattributed "
            f"{r['cpu_unattributed_s']}, Snakemake itself {r['snakemake_own_cpu_s']}, sampling "
            f"{r['sampler_cpu_s']}); machine "
            f"core-s {r['system_core_s']}, outside the run {r['outside_run_cpu_s']} (kernel "
            f"threads {r['kernel_threads_cpu_s']}; other work's fraction by attempt "
            f"{r['others_by_attempt']}, copy {r['copy_others_by_attempt']}); "
            f"{r['busy_before']:.0%} busy before (waited {r['waited_s']} s)",
            f"    CPU s of it system {r['sys_cpu_s_by_kind']}; busiest outside the run "
            f"{r['busiest_outside']}",
            f"    copy {c['copy_s']} s + sync {c['sync_s']} s ({c['mb_s']} MB/s, CPU "
            f"{c['cpu_s']} s, "
            f"machine busy {c['machine_busy_s']} core-s, {c['busy_before']:.0%} busy before); "
            f"first job at "
            f"{r['start_s']} s, last join to exit {r['end_s']} s; seconds with 0/1/2/3+ jobs "
            f"running {r['jobs_running_s']}",
        ]
        for j in r["joins"]:
            lines.append(
                f"    join {j['group']}: {j['start_s']:7.1f}-{j['end_s']:7.1f} s "
                f"({j['seconds']:5.1f} s, CPU {j['cpu_s']:4.1f}), "
                f"{j['after_last_part_s']:5.2f} s after its last part; alone "
                f"{j['alone_s']:5.1f} s, beside the next group's jobs "
                f"{j['beside_next_group_s']:5.1f} s"
            )
    return "\n".join(lines)


def prioritize(nice: int) -> None:
    """This process and all it starts at ``nice``. With the kernel's autogroups (each session a
    group, sharing the CPUs as equals whatever its processes' niceness), in a session of its own
    and with that group at ``nice``."""
    os.setpriority(os.PRIO_PROCESS, 0, nice)
    autogroup = Path("/proc/self/autogroup")
    if autogroup.exists():
        with contextlib.suppress(OSError):  # a process group leader keeps its session
            os.setsid()
        autogroup.write_text(str(nice))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", type=int, nargs="+", default=[4, 8])
    p.add_argument(
        "--max-wait", type=float, default=900.0, help="s to wait for a quiet machine before each"
    )
    p.add_argument(
        "--attempts", type=int, default=3, help="runs at most, while other work disturbs them"
    )
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the benchmark and its runs (e.g. -10 on a shared machine; < 0: root)",
    )
    a = p.parse_args(argv)
    if a.nice:
        prioritize(a.nice)
    results = []
    for n in a.groups:
        results.append(measure(n, max_wait_s=a.max_wait, attempts=a.attempts))
        results[-1]["nice"] = a.nice
        summary = {k: v for k, v in results[-1].items() if k not in ("jobs", "joins")}
        print(json.dumps(summary), flush=True)
    (CACHE / "throughput.json").write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
