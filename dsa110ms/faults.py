"""Fault injection: a test hook, outside the production configuration.

Tests and the soak set :data:`FAULTS_ENV` (JSON) in the environment of the Snakemake run they
start; every process of the run reads it (:func:`activate`). Unset, nothing is injected. It makes
the workflow fail the way production did, at the few points production code names
(:func:`before_check`, :func:`before_join`, :func:`after_join`, :func:`before_removal`,
:meth:`Faults.part_crashes`), so the recovery paths are proven:

- ``concat``: ``{group or "*": {attempt: kind}}`` - the join fails on that attempt (1 = first)
  with a lock-type error seen in production (transient: retried from a clean staging path),
  with ``corrupt`` (an unreadable part: permanent, fails at once without retrying the work), or
  with ``abort`` (the join process aborts after writing the MS, as casacore does on a write
  error: SIGABRT, no Python cleanup in that process);
- ``cleanup_permission_error``: the first attempt at every removal raises ``PermissionError``
  (the removal must retry and verify);
- ``part_crash``: ``["<group>/sbNN" or "*/sbNN"]`` - that part job dies half-way through
  writing its part (a partial part is left on scratch, as a crashed process leaves it);
- ``concat_delay_s``: the join sleeps this long first (a window for interrupting a run there);
- ``part_killed``: ``["<group>/sbNN" or "*/sbNN"]`` - that part job is killed by SIGKILL once
  its part is written, as the kernel's out-of-memory killer kills;
- ``template_abort``: ``["<group>" or "*"]`` - that template job aborts (SIGABRT) while writing,
  as casacore does on a write error such as a full scratch;
- ``part_delay_s``: ``{"<group>/sbNN" or "*/sbNN": seconds}`` - that part job waits this long
  after writing its part, before it ends (a window for removing its input file mid-run, or
  stopping the run, while the job still runs).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from dsa110ms.errors import ValidationError

#: The lock-type failures of casatasks.concat seen in production, as CASA raises them.
LOCK_ERRORS = {
    "read_write": lambda where: RuntimeError(f"Table {where} cannot be opened for read/write"),
    "bytes_read": lambda where: RuntimeError(f"{where}: incorrect number of bytes read"),
    "errno18": lambda where: OSError(errno.EXDEV, os.strerror(errno.EXDEV), where),
    "errno39": lambda where: OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), where),
}
PERMANENT_ERRORS = ("corrupt",)
#: The join process dies as casacore makes it die on a write error (std::terminate: SIGABRT).
PROCESS_ERRORS = ("abort",)


#: The environment variable holding the faults of a run (JSON), set by tests only.
FAULTS_ENV = "DSA110MS_TEST_FAULTS"
KINDS = (*LOCK_ERRORS, *PERMANENT_ERRORS, *PROCESS_ERRORS)
KEYS = (
    "concat",
    "cleanup_permission_error",
    "part_crash",
    "concat_delay_s",
    "part_delay_s",
    "part_killed",
    "template_abort",
)


@dataclass
class Faults:
    concat: dict[str, dict[int, str]] = field(default_factory=dict)
    cleanup_permission_error: bool = False
    part_crash: tuple[str, ...] = ()
    concat_delay_s: float = 0.0
    part_delay_s: dict[str, float] = field(default_factory=dict)
    part_killed: tuple[str, ...] = ()
    template_abort: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Mapping | None) -> Faults:
        """Faults from their JSON form; a key or kind this module does not know is an error
        (a test asking for a fault that would never happen must not pass silently)."""
        config = config or {}
        unknown = set(config) - set(KEYS) or {
            kind
            for attempts in (config.get("concat") or {}).values()
            for kind in attempts.values()
            if kind not in KINDS
        }
        if unknown:
            raise ValueError(f"{FAULTS_ENV}: unknown {sorted(unknown)}; known: {KEYS}, {KINDS}")
        concat = {
            str(group): {int(a): kind for a, kind in attempts.items()}
            for group, attempts in (config.get("concat") or {}).items()
        }
        return cls(
            concat=concat,
            cleanup_permission_error=bool(config.get("cleanup_permission_error", False)),
            part_crash=tuple(config.get("part_crash") or ()),
            concat_delay_s=float(config.get("concat_delay_s", 0.0)),
            part_delay_s={k: float(v) for k, v in (config.get("part_delay_s") or {}).items()},
            part_killed=tuple(config.get("part_killed") or ()),
            template_abort=tuple(config.get("template_abort") or ()),
        )

    def concat_fault(self, group: str, attempt: int) -> str | None:
        """The kind of failure to inject on this attempt of this group's join, or None."""
        for key in (group, "*"):
            kind = self.concat.get(key, {}).get(attempt)
            if kind:
                return kind
        return None

    def part_crashes(self, group: str, subband: int) -> bool:
        return (
            f"{group}/sb{subband:02d}" in self.part_crash or f"*/sb{subband:02d}" in self.part_crash
        )

    def part_delay(self, group: str, subband: int) -> float:
        """Seconds this part job waits after writing its part (0: none)."""
        for key in (f"{group}/sb{subband:02d}", f"*/sb{subband:02d}"):
            if key in self.part_delay_s:
                return self.part_delay_s[key]
        return 0.0


_active = Faults()
_failed_once: set[str] = set()


def activate(config: Mapping | None = None, environ=os.environ) -> Faults:
    """Set this process's faults: ``config``, or else the run's :data:`FAULTS_ENV` (none if
    unset)."""
    global _active
    if config is None and environ.get(FAULTS_ENV):
        config = json.loads(environ[FAULTS_ENV])
    _active = Faults.from_config(config)
    _failed_once.clear()
    return _active


def while_writing_template(group: str) -> None:
    """A template job calls this as it writes the template: ``template_abort``."""
    if {group, "*"} & set(_active.template_abort):
        os.abort()


def after_part(group: str, subband: int) -> None:
    """A part job calls this once its part is written: ``part_delay_s``, ``part_killed``."""
    time.sleep(_active.part_delay(group, subband))
    if {f"{group}/sb{subband:02d}", f"*/sb{subband:02d}"} & set(_active.part_killed):
        os.kill(os.getpid(), signal.SIGKILL)


def before_removal(path: str) -> None:
    """Scratch removal calls this first: with ``cleanup_permission_error``, the first attempt at
    each path fails as if a file were not ours."""
    if _active.cleanup_permission_error and path not in _failed_once:
        _failed_once.add(path)
        raise PermissionError(errno.EACCES, "injected fault: permission denied", path)


def before_check(group: str, attempt: int, part: str) -> None:
    """The join calls this before checking the parts: ``corrupt`` fails as an unreadable part."""
    if _active.concat_fault(group, attempt) in PERMANENT_ERRORS:
        raise ValidationError(f"{part}: part is corrupt (injected fault)")


def before_join(group: str, attempt: int, staging: str) -> None:
    """The join calls this before writing the MS: the delay, then a lock-type error."""
    if _active.concat_delay_s:
        time.sleep(_active.concat_delay_s)
    kind = _active.concat_fault(group, attempt)
    if kind in LOCK_ERRORS:
        raise LOCK_ERRORS[kind](f"{staging} (injected fault)")


def after_join(group: str, attempt: int) -> None:
    """The join process calls this once the MS is written: ``abort`` kills it as casacore does."""
    if _active.concat_fault(group, attempt) in PROCESS_ERRORS:
        os.abort()
