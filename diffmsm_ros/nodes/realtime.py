"""
Process and thread settings that keep the torque path steady.

Each was measured with ``bench/latency.py`` on a 2-core machine (figures in the README):

- the executor: the SingleThreadedExecutor.  rclpy's EventsExecutor (Kilted wheels,
  rclpy 9.1.2) does not work here: its timers never fired, and a subscription whose
  callback takes MessageInfo made it spin at 100 % CPU holding the GIL.
  ``DIFFMSM_EXECUTOR=events`` still selects it, for rclpy releases where it works;
- JAX runs the torque path's small call (where numba is missing) on the calling thread
  (no async dispatch);
- a short Python thread-switch interval, so the identifier's receiver thread hands the
  GIL back quickly;
- after start-up everything allocated so far is frozen out of the garbage collector
  (``gc.freeze``): collections then scan only what the hot path allocates;
- the executor thread asks for real-time scheduling (SCHED_FIFO at
  ``realtime_priority``) where the OS allows it, and carries on silently where not;
- the identifier process runs niced (``IdentifierProcess``), and off the first CPU on
  machines with ``PIN_FROM`` or more.
"""

import gc
import os
import sys

GIL_SWITCH = 2e-4        # s, Python thread switch interval in the node process
PIN_FROM = 4             # CPUs from which the identifier is kept off the first one


def prepare_process():
    """Set up the whole node process, before rclpy and JAX start working."""
    sys.setswitchinterval(GIL_SWITCH)
    import jax
    if 'jax_cpu_enable_async_dispatch' in jax.config.values:
        jax.config.update('jax_cpu_enable_async_dispatch', False)


def executor(context=None):
    """Return the SingleThreadedExecutor (``DIFFMSM_EXECUTOR=events``: the EventsExecutor)."""
    from rclpy.executors import SingleThreadedExecutor
    if os.environ.get('DIFFMSM_EXECUTOR') == 'events':
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:
            pass
        else:
            return EventsExecutor(context=context)
    return SingleThreadedExecutor(context=context)


def freeze_garbage():
    """Move everything allocated so far out of the garbage collector's reach."""
    gc.collect()
    gc.freeze()


def raise_priority(priority, thread=0):
    """SCHED_FIFO at ``priority`` for a thread (0: the calling one); False if not allowed."""
    if priority <= 0 or not hasattr(os, 'SCHED_FIFO'):
        return False
    try:
        os.sched_setscheduler(thread, os.SCHED_FIFO, os.sched_param(int(priority)))
    except (OSError, PermissionError):
        return False
    return True


def raise_process(priority):
    """
    SCHED_FIFO at ``priority`` for every thread of this process; False if not allowed.

    A thread of ordinary priority that holds the GIL can be preempted by any busy process
    on its core, and the torque path then waits for the GIL: every thread that can hold it
    (executor, identifier receiver, queue feeder, middleware) runs real-time too.
    """
    try:
        threads = [int(t) for t in os.listdir('/proc/self/task')]
    except OSError:
        return raise_priority(priority)
    raised = [raise_priority(priority, tid) for tid in threads]    # every one, not the first
    return all(raised)


def background(niceness, min_cpus=PIN_FROM):
    """
    For a helper process: lower priority, and off the first CPU on machines of ``min_cpus``.

    On 2 cores pinning starved the identifier whenever another process loaded its core (a
    robust start took 11.4 s instead of about 2 s), while the node's real-time threads
    already keep the torque path ahead of it: there it only runs niced.
    """
    try:
        os.nice(niceness)
    except OSError:
        pass
    if not hasattr(os, 'sched_setaffinity'):
        return
    available = sorted(os.sched_getaffinity(0))
    if len(available) >= min_cpus:
        try:
            os.sched_setaffinity(0, available[1:])
        except OSError:
            pass
