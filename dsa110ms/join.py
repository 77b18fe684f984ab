"""Joining the parts of a group into one MS, validating it and publishing it.

Each attempt starts from a clean staging path next to the final output
(``<output_dir>/.<group>.ms.<instance>.staging``: same filesystem, so publication is one rename;
the instance name keeps two runs that share an output directory apart). ``casatasks.concat``
appends to an existing output, so a leftover staging MS from an earlier attempt is removed first.
Whatever fails, the staging path is removed before the error propagates: nothing partial is ever
left at, or next to, the final path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Sequence
from pathlib import Path

from . import casa
from .errors import JoinError
from .faults import concat_fault
from .publish import MsSummary, publish, summarize, validate_joined
from .scratch import remove_if_present

log = logging.getLogger(__name__)


def staging_path(final: Path, instance: str) -> Path:
    return final.with_name(f".{final.name}.{instance}.staging")


def concat_parts(parts: Sequence[str | os.PathLike], joined: Path) -> None:
    """The reference join: ``casatasks.concat`` of the parts, in the given (SPW) order."""
    try:
        casa.tasks().concat(vis=[str(p) for p in parts], concatvis=str(joined))
    except Exception as exc:  # CASA raises bare RuntimeError/AssertionError for everything
        raise JoinError(f"{joined}: casatasks.concat failed: {exc}") from exc
    if not joined.is_dir():
        raise JoinError(f"{joined}: casatasks.concat returned without writing the MS")


def join_group(
    group: str,
    parts: Sequence[str | os.PathLike],
    final: str | os.PathLike,
    *,
    instance: str,
    contiguous: bool = True,
    attempt: int = 1,
    fail_attempts: Collection[int] = (),
) -> MsSummary:
    """Join ``parts`` (ascending frequency), validate, publish at ``final``.

    ``contiguous``: the parts cover the band without gaps (False for an incomplete group
    converted under ``incomplete_groups: convert``).

    ``fail_attempts`` (test facility, :mod:`dsa110ms.faults`): on these attempts concat fails
    after the staging path was prepared, as a CASA file-locking failure does.
    """
    final = Path(final)
    staging = staging_path(final, instance)
    if remove_if_present(staging, final.parent):
        log.info("removed staging MS left by an earlier attempt: %s", staging)
    try:
        part_summaries = [summarize(p) for p in parts]
        log.info("group %s: joining %d parts into %s", group, len(parts), staging)
        injected = concat_fault(attempt, fail_attempts)
        if injected:
            raise JoinError(f"{staging}: casatasks.concat failed: {injected} (injected fault)")
        concat_parts(parts, staging)
        summary = validate_joined(staging, part_summaries, group, contiguous=contiguous)
        publish(staging, final)
    except BaseException:
        remove_if_present(staging, final.parent)
        raise
    log.info(
        "group %s: %d rows, %d SPWs, %d fields -> %s",
        group,
        summary.nrows,
        summary.n_spws,
        len(summary.field_names),
        final,
    )
    return summary
