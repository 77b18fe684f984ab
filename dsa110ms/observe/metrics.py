"""Run metrics: job events as JSON lines, one summary per run as JSON lines and Prometheus text.

Files in ``metrics_dir`` (config key, default ``logs/metrics``):

- ``events.jsonl``: one line per event, appended by the jobs and hooks (``part``, ``join``,
  ``cleanup``), each with ``ts`` (Unix seconds) and ``pid``;
- ``runs.jsonl``: one line per finished run (the summary below);
- ``dsa110ms.prom``: the last run's summary for node_exporter's textfile collector (replaced
  atomically).

A line is written with one ``write`` on a file opened with ``O_APPEND``, so lines from
concurrent jobs do not interleave.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from dsa110ms.errors import Dsa110msError
from dsa110ms.files import write_text_atomically
from dsa110ms.run.cluster import cluster_job_id

log = logging.getLogger(__name__)

EVENTS = "events.jsonl"
RUNS = "runs.jsonl"
PROMETHEUS = "dsa110ms.prom"

_metrics_dir: Path | None = None


def configure(metrics_dir: str | os.PathLike | None) -> None:
    """Where this process writes events (None: nowhere)."""
    global _metrics_dir
    _metrics_dir = Path(metrics_dir) if metrics_dir else None


def emit(kind: str, **fields) -> None:
    """Append one event; never fails the caller (metrics must not break a conversion)."""
    if _metrics_dir is None:
        return
    where = {"pid": os.getpid()}
    if job := cluster_job_id():
        where["cluster_job"] = job
    line = json.dumps({"ts": time.time(), **where, "kind": kind, **fields}) + "\n"
    try:
        _metrics_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(_metrics_dir / EVENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("metrics event not written (%s): %s", exc, line.strip())


def first_line(exc: BaseException) -> str:
    """An exception's first line (its reason), at most 600 characters; an exception that is not
    one of ours (a bug, or a library's failure we did not foresee) is named by its type."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if not isinstance(exc, Dsa110msError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:600]


@contextlib.contextmanager
def timed(kind: str, **fields):
    """Emit one ``kind`` event when the block ends: ``ok``, ``seconds``, on failure ``error``
    (the exception's first line, for the run summary), and ``warnings``: the package's warnings
    logged meanwhile (e.g. data beyond the time tables), so that a converted group's summary
    row says them too, not only its job log. The block may add fields to the yielded dict."""
    started, extra = time.time(), dict(fields)
    warnings = _WarningsKept()
    package_log = logging.getLogger("dsa110ms")
    package_log.addHandler(warnings)
    try:
        yield extra
    except BaseException as exc:
        extra.update(ok=False, error=first_line(exc))
        if isinstance(signum := getattr(exc, "signum", None), int):  # a stop, not a failure
            extra["stopped"] = signal.Signals(signum).name
        raise
    else:
        extra["ok"] = True
    finally:
        package_log.removeHandler(warnings)
        if warnings.lines:
            extra["warnings"] = warnings.lines
        emit(kind, **extra, seconds=round(time.time() - started, 3))


class _WarningsKept(logging.Handler):
    """The first lines of the WARNING records (not errors: the event's ``error`` has those)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.WARNING and len(self.lines) < 10:
            self.lines.append(record.getMessage().splitlines()[0])


#: Processes append events concurrently, each stamping ``ts`` just before its write: the file is
#: in time order to within this (s), which bounds where the events of a window can start.
APPEND_SKEW_S = 60.0
#: Below this many bytes the start of a window is found by reading, not by bisection.
SCAN_BYTES = 1 << 16


def _ts(line: bytes) -> float | None:
    try:
        return float(json.loads(line)["ts"])
    except (ValueError, KeyError, TypeError):
        return None


def _window_start(f, size: int, since: float) -> int:
    """An offset at or before the first event stamped ``since`` or later: the events file grows
    for as long as the pipeline runs, and a job reads only the last run's window of it."""
    lo, hi = 0, size
    while hi - lo > SCAN_BYTES:
        mid = (lo + hi) // 2
        f.seek(mid)
        f.readline()  # to the start of the next whole line
        ts = _ts(f.readline())
        if ts is None or ts >= since - APPEND_SKEW_S:
            hi = mid
        else:
            lo = mid
    return lo


def read_events(metrics_dir: str | os.PathLike, since: float) -> list[dict]:
    """The events stamped ``since`` (Unix s) or later, in file order."""
    path = Path(metrics_dir) / EVENTS
    if not path.exists():
        return []
    events = []
    with open(path, "rb") as f:
        start = _window_start(f, os.fstat(f.fileno()).st_size, since)
        f.seek(start)
        if start:
            f.readline()  # a line begun before the window's start
        for line in f:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("ts", 0) >= since:
                events.append(event)
    return events


def du_bytes(path: str | os.PathLike) -> int:
    """Bytes in the files under ``path`` (an MS directory)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def summarize_run(
    events: list[dict],
    *,
    started: float,
    success: bool,
    failed_groups: list[str],
    changed_inputs: Mapping | None = None,
    rows: Iterable[Mapping] = (),
) -> dict:
    """The run's record: groups converted/failed, join attempts and retries by error class,
    cleanup retries and failures, bytes written, durations (seconds), and the published MSs
    whose input files changed since and still do at the end of the run (``changed_inputs``:
    group -> :class:`dsa110ms.ms.publish.ChangedInputs` found at the start; those the run
    published again are no longer counted). ``rows``: the run summary's rows
    (:func:`dsa110ms.run.hooks.summary_rows`), kept as ``groups``: label (a group id, or a
    skipped file's name) -> its status and reason, which the streaming mode and the archive
    driver read (:meth:`dsa110ms.batch.WorkflowRun.outcomes`)."""
    joins = [e for e in events if e["kind"] == "join"]
    published = {e["group"] for e in joins if e["outcome"] == "published"}
    changed = {g: c.what for g, c in (changed_inputs or {}).items() if g not in published}
    parts = [e for e in events if e["kind"] == "part"]
    templates = [e for e in events if e["kind"] == "template"]
    cleanups = [e for e in events if e["kind"] == "cleanup"]
    failures = Counter(
        e["error_class"] for e in joins if e["outcome"] in ("transient", "permanent")
    )
    return {
        "started": started,
        "finished": time.time(),
        "duration_s": round(time.time() - started, 3),
        "success": success,
        "groups_converted": sum(e["outcome"] == "published" for e in joins),
        "groups_failed": len(failed_groups),
        "failed_groups": failed_groups,
        "groups_changed_inputs": len(changed),
        "changed_inputs": changed,
        "parts_written": sum(e["ok"] for e in parts),
        "parts_failed": sum(not e["ok"] for e in parts),
        "join_attempts": len(joins),
        "join_retries": sum(e["attempt"] > 1 for e in joins),
        "join_failures_by_class": dict(failures),
        "cleanup_retries": sum(e.get("retries", 0) for e in cleanups),
        "cleanup_failures": sum(not e["ok"] for e in cleanups),
        "bytes_written": sum(e.get("bytes", 0) for e in joins if e["outcome"] == "published"),
        "groups": {
            r["group"]: [r["status"] if r.get("ran", True) else "not run", r.get("reason", "")]
            for r in rows
        },
        "part_seconds": round(sum(e.get("seconds", 0) for e in parts), 3),
        "template_seconds": round(sum(e.get("seconds", 0) for e in templates), 3),
        "join_seconds": round(sum(e.get("seconds", 0) for e in joins), 3),
    }


def group_facts(events: Iterable[Mapping], group: str, instance: str = "") -> dict:
    """From the job events of one group: conversion time (first plan/template/part start to the
    last join end, s), concat attempts, whether its scratch (``<instance>/<group>`` of the
    scratch layout; any instance if not given) was removed, the last failure's reason, the
    warnings its jobs logged (each once), and the signal that stopped one of its jobs, if any
    (the run was stopped: not the input's fault)."""
    group_scratch_suffix = f"{instance}/{group}"
    starts, ends, attempts, cleanups, error, warnings = [], [], 0, [], None, []
    stopped, failed_files = None, []
    for e in events:
        if e.get("group") == group and e["kind"] in ("phase_plan", "template", "part", "join"):
            starts.append(e["ts"] - e.get("seconds", 0.0))
            ends.append(e["ts"])
            attempts += e["kind"] == "join"
            warnings += [w for w in e.get("warnings", ()) if w not in warnings]
            stopped = e.get("stopped") or stopped
            if e.get("error"):
                error = f"{e['kind']}: {e['error']}"
                if e.get("file") and e["file"] not in e["error"]:  # name the file it failed on
                    error = f"{e['kind']} of {e['file']}: {e['error']}"
                if e.get("file") and e["file"] not in failed_files:
                    failed_files.append(e["file"])
        elif e["kind"] == "cleanup" and e.get("path", "").endswith(group_scratch_suffix):
            cleanups.append(e["ok"])
    others = [os.path.basename(f) for f in failed_files if f not in (error or "")]
    if error and others:  # every bad file of the group is named, not only the last
        error += f"; also failed: {', '.join(others)} (see their logs)"
    return {
        "conversion_s": round(max(ends) - min(starts), 1) if starts else None,
        "concat_attempts": attempts,
        "cleanup": "removed" if cleanups and all(cleanups) else ("FAILED" if cleanups else "-"),
        "error": error,
        "warnings": warnings,
        "stopped": stopped,
    }


def prometheus_text(summary: dict) -> str:
    """The summary in Prometheus exposition format (gauges of the last run)."""
    gauges = {
        "groups_converted": "Groups published by the last run",
        "groups_failed": "Groups of the last run without a published MS",
        "groups_changed_inputs": (
            "Published MSs whose input files changed since, not converted again (last run)"
        ),
        "parts_written": "MS parts written by the last run",
        "parts_failed": "Part jobs that failed in the last run",
        "join_attempts": "Join (concat) attempts in the last run",
        "join_retries": "Join attempts after the first, last run",
        "cleanup_retries": "Scratch removals that needed a retry, last run",
        "cleanup_failures": "Scratch removals that failed, last run",
        "bytes_written": "Bytes of MS published by the last run",
        "duration_s": "Wall time of the last run in seconds",
    }
    lines = []
    for key, help_text in gauges.items():
        name = f"dsa110ms_last_run_{key}"
        lines += [f"# HELP {name} {help_text}.", f"# TYPE {name} gauge", f"{name} {summary[key]}"]
    name = "dsa110ms_last_run_join_failures"
    lines += [f"# HELP {name} Failed join attempts by error class.", f"# TYPE {name} gauge"]
    for error_class, count in sorted(summary["join_failures_by_class"].items()):
        lines.append(f'{name}{{error_class="{error_class}"}} {count}')
    lines += [
        "# HELP dsa110ms_last_run_success 1 if the last run succeeded.",
        "# TYPE dsa110ms_last_run_success gauge",
        f"dsa110ms_last_run_success {int(summary['success'])}",
        "# HELP dsa110ms_last_run_finished_timestamp_seconds When the last run finished.",
        "# TYPE dsa110ms_last_run_finished_timestamp_seconds gauge",
        f"dsa110ms_last_run_finished_timestamp_seconds {summary['finished']:.3f}",
    ]
    return "\n".join(lines) + "\n"


def last_run(metrics_dir: str | os.PathLike, since: float) -> dict | None:
    """The last run record of a run that started at ``since`` (Unix s) or later, if any."""
    try:
        with open(Path(metrics_dir) / RUNS, "rb") as f:
            f.seek(max(os.fstat(f.fileno()).st_size - LAST_RUN_BYTES, 0))
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # the first line read may be cut
        if record.get("started", 0.0) >= since:
            return record
    return None


#: How far from the end of runs.jsonl the last run's record is looked for (bytes).
LAST_RUN_BYTES = 4_000_000


def write_run(metrics_dir: str | os.PathLike, summary: dict) -> None:
    """Append the run record and replace the Prometheus file atomically."""
    d = Path(metrics_dir)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / RUNS, "a") as f:
        f.write(json.dumps(summary) + "\n")
    write_text_atomically(d / PROMETHEUS, prometheus_text(summary))
