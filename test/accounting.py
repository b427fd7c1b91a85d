"""
The torque path's accounting, as the integration tests check it over a replay.

Under load the node may withhold a sample whose torque would come later than its deadline;
it counts every such sample (``/diagnostics``).  A replay passes when every encoder sample
got a torque or was counted, and at least a stated share got one.
"""

from ros2_tools import wait_until

# beside the test's own Python client on two cores, with raw EMG and 1 kHz encoders or
# with the identifier's robust start running, the node used to fall behind: one compiled
# call per encoder sample (0.75-1 ms of the node's time per sample under this load) left
# 0-20 % of the samples late in clean-clone and CI runs.  It now answers the samples that
# waited together in batches (none late, longest wait 26-46 ms, in the first runs); the
# 99 % goal is bench/torque_values.py's, and here the floor says the node keeps up at all
ANSWERED_UNDER_LOAD = 0.90

COUNTERS = ('encoder_samples', 'published', 'withheld_late', 'encoder_gaps', 'withheld_stale',
            'withheld_no_emg')


def counters(listener, status='diffmsm: torque', fresh=2):
    """Return the node's torque counters from a /diagnostics sent ``fresh`` or more later."""
    seen = listener.diagnostics_count
    assert wait_until(lambda: listener.diagnostics_count >= seen + fresh, 10.0)
    with listener.lock:
        diag = dict(listener.diagnostics or {})
    return {k: int(float(v)) for k, v in diag[status].items() if k in COUNTERS}


def replayed(listener, total, play, stamps=None):
    """
    Run ``play()``, a replay of ``total`` encoder samples; return (torques, counted).

    ``torques``: the (stamp, effort) pairs the listener received meanwhile; ``counted``:
    the node's counters over the replay (with ``total``), read once it saw every sample.
    ``stamps``, the replay's encoder stamps (ns) when known, go into the failure message.
    """
    before = counters(listener, fresh=1)
    with listener.lock:
        start = len(listener.torques)
    play()

    def seen():
        now = counters(listener, fresh=1)
        return now['encoder_samples'] + now['encoder_gaps'] - before['encoder_samples'] - \
            before['encoder_gaps'] >= total

    if not wait_until(seen, 30.0, interval=0.5):
        now = counters(listener, fresh=1)
        with listener.lock:
            got = [s for s, _ in listener.torques[start:]]
        ends = (min(got), max(got)) if got else None
        raise AssertionError(
            f'the node did not see the whole replay of {total} encoder samples: counters '
            f'before {sorted(before.items())}, after {sorted(now.items())}; {len(got)} '
            f'torques received, stamps (ns) from-to {ends}'
            + ('' if stamps is None else f' of the replay from-to {min(stamps)}-{max(stamps)}'))
    after = counters(listener)
    counted = {k: after[k] - before[k] for k in after}
    counted['total'] = total
    assert wait_until(lambda: len(listener.torques) - start >= counted['published'], 10.0)
    with listener.lock:
        return list(listener.torques[start:]), counted


def assert_accounted(got, counted, answered):
    """Every encoder sample got a torque or was counted; at least ``answered`` got one."""
    text = str(sorted(counted.items()))
    assert counted['published'] == len(got), text
    lost = counted['withheld_late'] + counted['encoder_gaps'] + counted['withheld_stale']
    assert len(got) + lost + counted['withheld_no_emg'] == counted['total'], text
    assert len(got) >= answered * counted['total'], text
