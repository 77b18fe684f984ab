"""A group's join, as the concat job runs it: from its template and parts to a published MS.

Under the group's lock in the output directory (:meth:`dsa110ms.ms.publish.OutputArea.group_lock`):
an intact published MS is kept; else free space for the whole MS is checked, the parts are
checked, joined and validated by a child process (:func:`build_group`) at a fresh staging path,
and the MS is published in one rename. If casacore aborts the child (a write error in a
destructor ends in ``std::terminate``), this process still removes the staging MS and reports
the failure, naming ENOSPC when the output file system is full.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import multiprocessing
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dsa110ms import faults
from dsa110ms.errors import JoinError, TransientJoinError, ValidationError
from dsa110ms.ms.join import assemble, concat_reference
from dsa110ms.ms.part import MANIFEST_NAME as PART_MANIFEST
from dsa110ms.ms.publish import (
    OutputArea,
    damage,
    input_changes,
    input_identities,
    input_key,
    is_current,
    ms_options,
    publish,
)
from dsa110ms.ms.validate import MsSummary, check_parts, validate_joined
from dsa110ms.observe.metrics import du_bytes
from dsa110ms.owned import remove_owned
from dsa110ms.run.runwatch import signal_on_parent_death
from dsa110ms.settings import Settings
from dsa110ms.space import free_bytes, mount_point

log = logging.getLogger(__name__)


def permanent_failure_marker(group_scratch: Path) -> Path:
    return group_scratch / ".permanent_failure"


def output_space_needed(
    template: str | os.PathLike, parts: Sequence[str | os.PathLike], options: JoinOptions
) -> int:
    """Bytes the joined MS will take, from what is on scratch (an estimate with 10 % margin):
    the parts' spectral columns; the template's main-table (row) columns once per part with
    one SPW per part, once with a single SPW; its subtables once; with
    ``imaging_columns="model_corrected"`` two more copies of DATA (~60 % of a part)."""
    part_bytes = sum(du_bytes(p) for p in parts)
    rows = sum(e.stat().st_size for e in os.scandir(template) if e.is_file())
    subtables = du_bytes(template) - rows
    copies = len(parts) if options.spw_layout == "per_subband" else 1
    need = part_bytes + rows * copies + subtables
    if options.imaging_columns == "model_corrected":
        need += int(1.2 * part_bytes)
    return int(need * 1.1)


def out_of_space(directory: Path, need: int, written: int = 0) -> JoinError | None:
    """A permanent JoinError naming ENOSPC and the file system (caused by an ENOSPC OSError,
    which the metrics count) if ``directory`` cannot hold ``need`` bytes, ``written`` of which
    are written already; else None."""
    free = free_bytes(directory) + written
    if free >= need:
        return None
    error = JoinError(
        f"{directory}: no space left on device (ENOSPC): the MS needs ~{need / 1e6:.0f} MB, "
        f"{free / 1e6:.0f} MB available on the file system of {mount_point(directory)}"
    )
    error.__cause__ = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))
    return error


@dataclass(frozen=True)
class JoinOptions:
    """How a group is joined and what its MS must be.

    ``spw_layout``: "per_subband" (one SPW per part) or "single" (one SPW with every channel),
    see :func:`assemble`. ``join_method`` for "per_subband": "direct" (:func:`assemble`, one
    pass) or "concat" (:func:`concat_reference`, ``casatasks.concat``: the reference; same
    content). ``imaging_columns``: "none" or "model_corrected". ``field_per_integration``:
    validate one FIELD per integration (DSA-110 mode); ``one_field``: one FIELD
    (config phase_center). ``contiguous``: the parts cover the band
    without gaps (False for an incomplete group converted under ``incomplete_groups:
    convert``)."""

    spw_layout: str = "per_subband"
    join_method: str = "direct"
    imaging_columns: str = "none"
    field_per_integration: bool = False
    one_field: bool = False
    contiguous: bool = True
    #: the settings the MS is made with, recorded in its stamp (:func:`.publish.ms_options`)
    made_with: Mapping = field(default_factory=dict)
    #: ``changed_inputs: reconvert``: a published MS made from other input files is replaced
    #: (else it is kept, whatever this join holds)
    replace_changed: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, *, contiguous: bool) -> JoinOptions:
        """The options of a run's settings (validated config), for a group that covers the band
        (``contiguous``) or not."""
        return cls(
            spw_layout=settings.spw_layout,
            join_method=settings.join_method,
            imaging_columns=settings.imaging_columns,
            field_per_integration=(
                settings.telescope == "dsa110" and settings.phase_center == "per_integration"
            ),
            one_field=settings.phase_center != "per_integration",
            # DSA-110's subbands tile its band; other telescopes' files may leave gaps
            contiguous=contiguous and settings.telescope == "dsa110",
            made_with=ms_options(settings),
            replace_changed=settings.changed_inputs == "reconvert",
        )


def build_group(
    group: str,
    template: str | os.PathLike,
    parts: Sequence[str | os.PathLike],
    staging: Path,
    options: JoinOptions,
    *,
    group_scratch: Path,
    sources: Mapping[str, str],
    attempt: int,
) -> MsSummary:
    """Check the parts, write the MS at ``staging`` and validate it (the work of the join
    process, :func:`join_group`). Failures reading and checking the parts are permanent
    (:class:`JoinError`, recorded in the group's scratch); the join and its validation fail
    transiently (:class:`TransientJoinError`)."""
    marker = permanent_failure_marker(group_scratch)
    try:
        faults.before_check(group, attempt, str(parts[0]))
        summaries = check_parts(template, parts, sources)
    except (ValidationError, JoinError) as exc:
        marker.write_text(f"group {group}: {exc}")
        raise JoinError(f"group {group}: {exc}") from exc
    ordered = [s.path for s in summaries]
    log.info(
        "group %s: attempt %d, joining %d parts into %s (%s)",
        group,
        attempt,
        len(ordered),
        staging,
        options.spw_layout,
    )
    try:
        faults.before_join(group, attempt, str(staging))
        columns = options.imaging_columns
        if options.join_method == "concat" and options.spw_layout == "per_subband":
            workdir = group_scratch / f"concat_inputs.{attempt}"
            concat_reference(template, ordered, staging, workdir, imaging_columns=columns)
            remove_owned(workdir, group_scratch.parent)
            finish = None
        else:
            finish = assemble(
                template,
                ordered,
                staging,
                spw_layout=options.spw_layout,
                imaging_columns=columns,
                finish_later=True,
            )
        try:  # while the bulk columns may still be on their way to the disk
            summary = validate_joined(
                staging,
                summaries,
                group,
                contiguous=options.contiguous,
                spw_layout=options.spw_layout,
                field_per_integration=options.field_per_integration,
                one_field=options.one_field,
            )
        except BaseException:
            if finish is not None:  # the copy ended before the staging MS is removed
                with contextlib.suppress(Exception):
                    finish()
            raise
        if finish is not None:
            finish()  # the copy done and read back: the MS complete
        faults.after_join(group, attempt)
        return summary
    except (RuntimeError, OSError, ValidationError, JoinError) as exc:
        raise TransientJoinError(
            f"group {group}: attempt {attempt} failed, will be retried from a clean "
            f"staging path if attempts remain: {type(exc).__name__}: {exc}"
        ) from exc


def inputs_as_read(sources: Mapping[str, str]) -> dict[str, dict]:
    """Each input file's identity (:func:`dsa110ms.files.input_identity`, by
    :func:`.publish.input_key`) as its part job read it (``part.json``), or as it is now for a
    part that does not record it (written by an earlier version); ``sources``: part -> file."""
    recorded = {}
    for part, source in sources.items():
        with contextlib.suppress(OSError, ValueError):
            recorded[source] = json.loads((Path(part) / PART_MANIFEST).read_text()).get("input")
    identities = input_identities(s for s in sources.values() if not recorded.get(s))
    identities |= {input_key(s): ident for s, ident in recorded.items() if ident}
    return identities


def refuse_stale(group: str, inputs: Mapping[str, dict] | None, sources: Mapping[str, str]):
    """Raise :class:`JoinError` if an input file changed after its part job read it (re-sent,
    removed): the MS would hold data that are no longer the files', and could replace an MS a
    later run made from the files as they are."""
    if not inputs or not sources:
        return
    if changes := input_changes(inputs, input_identities(sources.values())):
        raise JoinError(
            f"group {group}: input files changed while this run converted it "
            f"({'; '.join(changes)}): not published; the next run converts the files as they are"
        )


def join_group(
    group: str,
    template: str | os.PathLike,
    parts: Sequence[str | os.PathLike],
    output: OutputArea,
    options: JoinOptions,
    *,
    instance: str,
    group_scratch: str | os.PathLike,
    sources: Mapping[str, str] | None = None,
    attempt: int = 1,
) -> tuple[MsSummary | None, bool]:
    """Join the group's ``template`` and ``parts``, validate, publish at
    ``output.final_ms(group)``; returns the summary (None if the group was found published
    already) and whether this run published it.

    Holds the group's lock in the output directory throughout (:meth:`OutputArea.group_lock`):
    a second run joining the same group waits, then finds it published and intact and keeps it
    without joining. The MS is written at a fresh staging path and validated by a child process
    (:func:`build_group`): if casacore aborts it (a write error in a destructor ends in
    ``std::terminate``), this process still removes the staging MS and reports the failure,
    naming ENOSPC when the output file system is full. Free space for the whole MS is checked
    before anything is written.

    Parts are ordered by frequency, lowest first (SPW 0); ``options``: :class:`JoinOptions`.
    ``sources``: part path -> input file, to name the input in errors.

    Failures are classified by where they happen, not by message: reading and checking the
    parts fails permanently (:class:`JoinError`; a marker in the group's scratch makes later
    attempts of the same run fail at once instead of redoing the work), and so does a full
    output file system; the join and its validation fail transiently
    (:class:`TransientJoinError`, retried by the rule's ``retries:`` from a clean staging path).
    """
    group_scratch = Path(group_scratch)
    marker = permanent_failure_marker(group_scratch)
    if attempt == 1:
        remove_owned(marker, group_scratch.parent)
    elif marker.exists():
        raise JoinError(f"{marker.read_text().strip()} (permanent: attempt {attempt} not tried)")
    # the input files' identities (name, size, mtime), for the MS's stamp: as the part jobs read
    # them (a file removed or re-sent since is then reported), taken before any wait
    inputs = inputs_as_read(sources) if sources else None
    with output.group_lock(group):
        final = output.final_ms(group)
        if is_current(final, group, inputs) or (
            not options.replace_changed and damage(final, group) is None
        ):  # changed_inputs: report never replaces a published MS (the main process reports it)
            log.info("group %s: %s is published and intact; kept, nothing joined", group, final)
            output.write_published_stamp(group)
            return None, False
        need = output_space_needed(template, parts, options)
        # an earlier attempt's staging MS removed first: its space is this attempt's
        staging = output.new_staging(instance, group)
        try:
            if full := out_of_space(output.output_dir, need):
                raise full
            log.info("group %s: the MS needs ~%.1f MB (estimate)", group, need / 1e6)
            summary = in_child_process(
                build_group,
                group,
                template,
                parts,
                staging,
                options,
                group_scratch=group_scratch,
                sources=dict(sources or {}),
                attempt=attempt,
            )
            refuse_stale(group, inputs, sources)
            published = publish(output, staging, group, summary, options.made_with, inputs)
        # casacore's abort, a write error in the join (ENOSPC, say), publishing
        except (ChildDied, OSError, TransientJoinError) as exc:
            written = du_bytes(staging) if staging.exists() else 0
            if full := out_of_space(output.output_dir, need, written):
                raise full from full.__cause__  # ENOSPC
            if isinstance(exc, TransientJoinError):
                raise
            raise TransientJoinError(
                f"group {group}: attempt {attempt} failed: {exc}; "
                f"{free_bytes(output.output_dir) / 1e6:.0f} MB free on the file system of "
                f"{mount_point(output.output_dir)}"
            ) from exc
        finally:
            output.remove_staging(instance, group)
    log.info(
        "group %s: %d rows, %d SPWs, %d fields -> %s",
        group,
        summary.nrows,
        summary.n_spws,
        len(summary.field_names),
        final,
    )
    return summary, published


class ChildDied(Exception):
    """The join's child process ended without a result (killed by a signal, or exited)."""


#: The join's child process while it runs (killed with this process's run: dsa110ms.run.runwatch).
_child: multiprocessing.process.BaseProcess | None = None


def kill_child() -> None:
    if _child is not None and _child.pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(_child.pid, signal.SIGKILL)


def _child_main(conn, parent, func, args, kwargs) -> None:
    # a stop signal kills the child at once, wherever it is (in casacore's C++ too); the parent
    # sees it, kills it if it lives on, waits for it, then removes the staging MS
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    # the job killed outright (SIGKILL): this child must not write on, holding the group's lock
    signal_on_parent_death(signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)
    try:
        result = ("ok", func(*args, **kwargs), None)
    except BaseException as exc:  # noqa: BLE001 - sent to the parent, which raises it
        # pickling drops __cause__, which metrics classify by (jobs.error_class)
        result = ("error", exc, exc.__cause__)
    try:
        conn.send(result)
    except Exception as exc:  # noqa: BLE001 - an exception that cannot be pickled
        conn.send(("error", TransientJoinError(f"{result[1]!r} ({exc})"), None))
    conn.close()


def in_child_process(func, *args, **kwargs):
    """``func(*args, **kwargs)`` in a forked child; its result, or its exception raised here.
    :class:`ChildDied` if the child ends without either (e.g. SIGABRT from casacore)."""
    global _child
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    _child = context.Process(target=_child_main, args=(send, os.getpid(), func, args, kwargs))
    _child.start()
    send.close()
    try:
        try:
            status, value, cause = receive.recv()
        except EOFError:
            _child.join()
            code = _child.exitcode
            how = f"killed by {signal.Signals(-code).name}" if code and code < 0 else f"exit {code}"
            if code == -signal.SIGKILL:
                how += ", likely out of memory: the kernel's OOM killer sends it"
            raise ChildDied(f"the join process died ({how})") from None
        except BaseException:  # this job is stopping (a stop signal): the child must not outlive it
            kill_child()
            _child.join()
            raise
        _child.join()
    finally:
        receive.close()
        _child = None
    if status == "error":
        raise value from cause
    return value
