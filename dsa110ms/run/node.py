"""A cluster (SLURM) job's scratch on its node: the groups it owns, removed when it ends.

On a cluster node the run's main process is elsewhere, so each cluster job (up to 12 timestamp
groups, one after another) owns its groups on the node instead: the Snakemake process running
the job holds a flock on ``<instance>/.cluster-job-<id>.lock`` for its whole life, its template
and part jobs mark their group directory with ``.cluster-job-<id>`` (:func:`claim_group`), and
when it exits it removes its groups (:class:`NodeJob`). One killed outright is cleaned by the
next cluster job of the instance on that node, whose lock it can then take.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from dsa110ms.owned import remove_owned
from dsa110ms.run.cluster import cluster_job_id
from dsa110ms.run.scratch import (
    JOB_LOCK_PREFIX,
    OwnerLock,
    ScratchLayout,
    make_group_dir,
    make_instance_dir,
)

log = logging.getLogger(__name__)


def claim_group(group_dir: Path, environ=os.environ) -> None:
    """Inside a cluster job: mark ``group_dir`` as this job's (created 0700 if needed), so that
    the job's :class:`NodeJob` removes it when the job ends. Nothing outside a cluster job."""
    job = cluster_job_id(environ)
    if job:
        make_group_dir(group_dir)
        _job_mark(group_dir, job).touch()


def _job_mark(group_dir: Path, job: str) -> Path:
    """The file marking ``group_dir`` as cluster job ``job``'s."""
    return group_dir / f"{JOB_LOCK_PREFIX}{job}"


def _job_lock(instance_dir: Path, job: str) -> Path:
    return instance_dir / f"{JOB_LOCK_PREFIX}{job}.lock"


def _remove_groups_of_job(instance_dir: Path, job: str) -> list[str]:
    """Remove every group directory marked by cluster job ``job``; the paths removed."""
    removed = []
    for group_dir in sorted(instance_dir.iterdir()):
        if _job_mark(group_dir, job).exists():
            remove_owned(group_dir, instance_dir.parent)
            removed.append(str(group_dir))
    return removed


@dataclass
class NodeJob:
    """The Snakemake process that runs one cluster job on a node: it owns, for its life, the
    scratch its jobs claim (:func:`claim_group`), and removes it when it exits.

    Retries run inside the cluster job (the submitting process never resubmits one, see
    :func:`dsa110ms.run.internals.retry_inside_cluster_jobs`), so nothing on the node is worth
    keeping after it: :meth:`finish` removes the job's groups whatever the outcome, including
    groups whose part job was killed outright (SIGKILL, OOM killer). A job killed outright
    itself is cleaned by the next :meth:`start` in the same instance on that node."""

    layout: ScratchLayout
    job: str
    lock: OwnerLock

    @classmethod
    def start(cls, layout: ScratchLayout, job: str) -> NodeJob | None:
        """Own the job's scratch on this node; None if a process of the same cluster job owns
        it already (the plugin runs each rule of a group job through a nested Snakemake, under
        the group's own: the outermost one, which lives longest, is the owner)."""
        make_instance_dir(layout)
        lock = OwnerLock.try_acquire(_job_lock(layout.instance_dir, job), create=True)
        if lock is None:
            return None
        lock.describe_owner()
        node_job = cls(layout, job, lock)
        node_job.sweep_dead_jobs()
        return node_job

    def sweep_dead_jobs(self) -> list[str]:
        """Remove the groups of this instance's cluster jobs on this node that died without
        cleaning up (their lock is free); the paths removed."""
        removed = []
        prefix, suffix = JOB_LOCK_PREFIX, ".lock"
        for lock_path in sorted(self.layout.instance_dir.glob(f"{prefix}*{suffix}")):
            job = lock_path.name[len(prefix) : -len(suffix)]
            if job == self.job:
                continue
            dead = OwnerLock.try_acquire(lock_path, create=False)
            if dead is None:
                continue
            try:
                removed += _remove_groups_of_job(self.layout.instance_dir, job)
                remove_owned(lock_path, self.layout.root)
            finally:
                dead.release()
        for path in removed:
            log.info("removed scratch of a cluster job that died on this node: %s", path)
        return removed

    def finish(self) -> None:
        """Remove this job's groups (verified) and its lock."""
        try:
            _remove_groups_of_job(self.layout.instance_dir, self.job)
        finally:
            remove_owned(self.lock.path, self.layout.root)
            self.lock.release()
