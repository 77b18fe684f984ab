"""Opt-in fault injection: a test facility, off unless the ``faults`` config key sets it.

It makes the workflow fail the way production did, at chosen places, so tests and the soak can
prove the recovery paths:

- ``concat``: ``{group or "*": {attempt: kind}}`` - the join fails on that attempt (1 = first)
  with a lock-type error seen in production (transient: retried from a clean staging path),
  with ``corrupt`` (an unreadable part: permanent, fails at once without retrying the work), or
  with ``abort`` (the join process aborts after writing the MS, as casacore does on a write
  error: SIGABRT, no Python cleanup in that process);
- ``cleanup_permission_error``: the first attempt at every scratch removal raises
  ``PermissionError`` (the removal must retry and verify);
- ``part_crash``: ``["<group>/sbNN" or "*/sbNN"]`` - that part job dies half-way through
  writing its part (a partial MS is left on scratch, as a crashed process leaves it);
- ``concat_delay_s``: the join sleeps this long first (a window for interrupting a run there).

Process-wide state, set by :func:`activate` at the start of a job or hook.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

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


@dataclass
class Faults:
    concat: dict[str, dict[int, str]] = field(default_factory=dict)
    cleanup_permission_error: bool = False
    part_crash: tuple[str, ...] = ()
    concat_delay_s: float = 0.0

    @classmethod
    def from_config(cls, config: Mapping | None) -> Faults:
        config = config or {}
        concat = {
            str(group): {int(a): kind for a, kind in attempts.items()}
            for group, attempts in (config.get("concat") or {}).items()
        }
        return cls(
            concat=concat,
            cleanup_permission_error=bool(config.get("cleanup_permission_error", False)),
            part_crash=tuple(config.get("part_crash") or ()),
            concat_delay_s=float(config.get("concat_delay_s", 0.0)),
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


_active = Faults()
_failed_once: set[str] = set()


def activate(config: Mapping | None) -> Faults:
    """Set this process's faults from the ``faults`` config section."""
    global _active
    _active = Faults.from_config(config)
    _failed_once.clear()
    return _active


def active() -> Faults:
    return _active


def before_removal(path: str) -> None:
    """Scratch removal calls this first: with ``cleanup_permission_error``, the first attempt at
    each path fails as if a file were not ours."""
    if _active.cleanup_permission_error and path not in _failed_once:
        _failed_once.add(path)
        raise PermissionError(errno.EACCES, "injected fault: permission denied", path)
