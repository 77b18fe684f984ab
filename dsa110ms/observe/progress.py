"""What a person following a run sees: one line per finished group, and a summary table at the
end of the run (converted / up to date / skipped / failed, with the reason)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping

log = logging.getLogger("dsa110ms")

PREFIX = "[dsa110ms]"


def say(line: str) -> None:
    """Print a progress line on stderr (Snakemake's terminal, or the SLURM job's log)."""
    print(f"{PREFIX} {line}", file=sys.stderr, flush=True)


def group_finished(group: str, record: Mapping, facts: Mapping) -> None:
    """The line for a published group: id, subbands, size, conversion time, MB/s, retries."""
    megabytes = record["bytes"] / 1e6
    seconds = facts.get("conversion_s") or 0.0
    rate = f"{megabytes / seconds:.1f} MB/s" if seconds else "- MB/s"
    retries = max(facts.get("concat_attempts", 1) - 1, 0)
    say(
        f"{group} converted: {len(record['subbands'])} subbands, {megabytes:.1f} MB in "
        f"{seconds:.1f} s ({rate}), {retries} concat retr{'y' if retries == 1 else 'ies'}, "
        f"scratch {facts.get('cleanup', '-')}"
    )


def summary_table(rows: Iterable[Mapping]) -> str:
    """The end-of-run table; ``rows``: group, status, seconds, retries, reason."""
    rows = list(rows)
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    head = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no groups"
    lines = [f"{PREFIX} run summary: {head}"]
    if rows:
        lines.append(f"  {'group':<19}  {'status':<10} {'seconds':>8} {'retries':>7}  reason")
    for r in rows:
        seconds = "-" if r.get("seconds") is None else f"{r['seconds']:.1f}"
        lines.append(
            f"  {r['group']:<19}  {r['status']:<10} {seconds:>8} {r.get('retries', 0):>7}"
            f"  {r.get('reason') or ''}".rstrip()
        )
    return "\n".join(lines)
