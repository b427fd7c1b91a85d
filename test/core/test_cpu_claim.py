"""A cohort task's core claim: distinct cores, pinned threads, freed by exit and by death."""

import os
import signal
import subprocess
import sys
import threading

from diffmsm_ros.cli import cpu_claim
import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, 'sched_setaffinity'),
                                reason='core pinning needs os.sched_setaffinity (Linux)')


def _thread_affinity():
    """Return the cores a thread started now may use, and those of every thread."""
    seen = {}
    thread = threading.Thread(target=lambda: seen.update(new=os.sched_getaffinity(0)))
    thread.start()
    thread.join()
    tids = os.listdir('/proc/self/task')
    return seen['new'], {frozenset(os.sched_getaffinity(int(t))) for t in tids}


def test_a_claim_pins_every_thread_and_is_undone(tmp_path):
    """Every thread, and one started inside, runs on the claimed core; then all are free."""
    allowed = os.sched_getaffinity(0)
    with cpu_claim.one_core(str(tmp_path)) as first:
        assert first in allowed
        new, every = _thread_affinity()
        assert new == {first} and every == {frozenset({first})}
        with cpu_claim.one_core(str(tmp_path)) as second:
            # a claim made inside sees only the claimed core, held: it runs unpinned
            assert second is None
            assert os.sched_getaffinity(0) == {first}
    assert os.sched_getaffinity(0) == allowed
    with cpu_claim.one_core(str(tmp_path)) as again:
        assert again == first            # released at the block's end


def test_a_core_held_by_another_process_is_skipped_and_freed_when_it_dies(tmp_path):
    """A second process claims the next core; a SIGKILLed holder's core is free again."""
    allowed = sorted(os.sched_getaffinity(0))
    holder = subprocess.Popen(
        [sys.executable, '-c',
         'import sys; from diffmsm_ros.cli import cpu_claim\n'
         f'with cpu_claim.one_core({str(tmp_path)!r}) as cpu:\n'
         '    print(cpu, flush=True); sys.stdin.read()'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        held = int(holder.stdout.readline())
        assert held == allowed[0]
        with cpu_claim.one_core(str(tmp_path)) as cpu:
            assert cpu == (allowed[1] if len(allowed) > 1 else None)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with cpu_claim.one_core(str(tmp_path)) as cpu:
        assert cpu == allowed[0]         # the kernel dropped the dead holder's lock
