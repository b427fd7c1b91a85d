"""
One CPU core per cohort task: claimed with a lock file, the task's process pinned to it.

XLA's CPU client sizes its thread pool by the cores the process may use when JAX starts;
its flags do not shrink it.  A task of one Ray CPU that starts JAX free to run on every
core therefore runs several XLA threads that compete with the other tasks (measured on
2 cores: 21 CPU-s per 60 s session unpinned, 14.6 pinned, for about the same wall time
alone).  ``one_core`` claims a core no other task on this machine holds (an exclusive
``flock`` on ``diffmsm-cpu-<uid>-<core>.lock`` in the temporary folder; the kernel drops it
when the process dies, so a killed worker frees its core) and pins every thread of the
process to it for the block, so JAX, started inside it, runs one XLA thread there.

Without a free core (more tasks than cores) or without ``os.sched_setaffinity`` (not
Linux) the block runs unpinned.
"""

import contextlib
import fcntl
import os
import tempfile


def _threads():
    try:
        return [int(tid) for tid in os.listdir('/proc/self/task')]
    except OSError:
        return [0]


def _pin(cpus):
    """Set the cores every thread of this process may use (threads ending meanwhile skipped)."""
    for tid in _threads():
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass


def _claim(folder, cpus):
    """Return (core, open lock file) for the first core no one holds, or (None, None)."""
    for cpu in cpus:
        path = os.path.join(folder, f'diffmsm-cpu-{os.getuid()}-{cpu}.lock')
        fh = open(path, 'a')
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        return cpu, fh
    return None, None


@contextlib.contextmanager
def one_core(folder=None):
    """Run the block pinned to one claimed core; yield the core, or None if unpinned."""
    if not hasattr(os, 'sched_setaffinity'):
        yield None
        return
    allowed = os.sched_getaffinity(0)
    cpu, lock = _claim(folder or tempfile.gettempdir(), sorted(allowed))
    if cpu is None:
        yield None
        return
    try:
        _pin({cpu})
        yield cpu
    finally:
        _pin(allowed)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
