"""Opt-in fault injection, a test facility (config key ``faults``; empty by default)."""

from __future__ import annotations

from collections.abc import Collection

#: What casatasks.concat says when another process holds a table lock (seen in production).
LOCK_ERROR = "Table cannot be opened for read/write"


def concat_fault(attempt: int, fail_attempts: Collection[int]) -> str | None:
    """The error message to raise on this concat attempt (1-based), or None."""
    return LOCK_ERROR if attempt in fail_attempts else None
