"""
The node's side of the identifier process protocol, without starting the child.

What the node hands over must reach the child unchanged and in order (encoders, then
excitations, then commands), the inbox must never block the torque path (full: counted
as dropped), and what the child sends back must reach the node's callbacks.  Until the
child is started (identification first enabled) nothing is kept for it.
"""

import queue

from diffmsm_ros.identify.config import IdentifyConfig
from diffmsm_ros.nodes import identifier_process
from diffmsm_ros.nodes.identifier_messages import (
    Enable, Encoders, Excitations, Log, Model, Period, Result, Stats)
from diffmsm_ros.nodes.identifier_process import IdentifierProcess
import numpy as np
import pytest


def make_link():
    got = {'results': [], 'models': [], 'logs': []}
    proc = IdentifierProcess('elbow', IdentifyConfig(), got['results'].append,
                             lambda model, text: got['models'].append((model, text)),
                             got['logs'].append)
    return proc, got


@pytest.fixture()
def link():
    """Give the node's side as when the child runs (the test reads the child's inbox)."""
    proc, got = make_link()
    assert drain(proc) == [Enable(True)]      # what the child reads first
    # there is no child: its receiver thread would report it ended (it looks every 0.5 s;
    # under load a test outlasted that once); the tests hand messages to _handle directly
    proc._stopped.set()
    proc._receiver.join()
    proc.started = True
    yield proc, got
    proc.stop(0.0)
    proc.inbox.close()
    proc.outbox.close()


def test_before_the_child_starts_nothing_is_kept_and_pausing_starts_nothing():
    proc, _ = make_link()
    try:
        assert proc.stats['state'] == 'not started'
        proc._last_flush = float('-inf')
        proc.put_encoders(0.0, np.zeros(2), None, np.zeros(2))
        proc.put_excitations(np.zeros(1), np.zeros((1, 3)))
        proc.command(Enable(False))
        assert not proc.started and proc.stats['enabled'] is False
        assert drain(proc) == [Enable(True)]
        assert proc._encoders == proc._excitations == proc._batch == []
        proc.stop()                                    # nothing to stop: returns at once
        assert not proc.process.is_alive()
    finally:
        proc.inbox.close()
        proc.outbox.close()


def drain(proc):
    """Every batch waiting in the inbox, flattened to its items."""
    items = []
    while True:
        try:
            items.extend(proc.inbox.get(timeout=0.5))
        except queue.Empty:
            return items


def test_samples_reach_the_child_unchanged_and_in_order(link):
    proc, _ = link
    proc._last_flush = float('inf')        # no batch leaves until the flush below
    rng = np.random.default_rng(0)
    sent = []
    for k in range(5):
        qd = None if k % 2 else rng.normal(size=2)
        sent.append((0.001 * k, rng.normal(size=2), qd, rng.normal(size=2)))
        proc.put_encoders(*sent[-1])
    t, u, noise = np.arange(4) * 0.002, rng.uniform(size=(4, 3)), np.array([1e-3] * 3)
    proc.put_excitations(t, u, noise)
    proc._last_flush = float('-inf')       # the next sample flushes
    proc.command(Enable(False))
    proc.put_encoders(0.005, np.zeros(2), None, np.zeros(2))
    items = drain(proc)
    kinds = [type(item) for item in items]
    assert items[0] == Enable(False)
    enc = [item for item in items if type(item) is Encoders]
    emg = [item for item in items if type(item) is Excitations]
    rows = [row for item in enc for row in item.samples()]
    assert len(rows) == len(sent) + 1
    for (t0, q0, qd0, tau0), (t1, q1, qd1, tau1) in zip(sent, rows):
        assert t0 == t1
        np.testing.assert_array_equal(q0, q1)
        np.testing.assert_array_equal(tau0, tau1)
        assert (qd0 is None and qd1 is None) or np.array_equal(qd0, qd1)
    assert len(emg) == 1
    np.testing.assert_array_equal(emg[0].times, t)
    np.testing.assert_array_equal(emg[0].values, u)
    np.testing.assert_array_equal(emg[0].noise, noise)
    # within one batch, encoders come before excitations (the child adds them in that order)
    assert kinds.index(Encoders) < kinds.index(Excitations)


def test_a_full_inbox_counts_drops_and_never_blocks(link, monkeypatch):
    proc, _ = link
    small = type(proc.inbox)(2, ctx=identifier_process.multiprocessing.get_context('spawn'))
    monkeypatch.setattr(proc, 'inbox', small)
    for _ in range(5):
        proc.command(Period(1.0))
    assert proc.dropped == 3
    assert [item for batch in (small.get(timeout=1), small.get(timeout=1))
            for item in batch] == [Period(1.0)] * 2
    small.close()


def test_what_the_child_sends_reaches_the_callbacks(link):
    proc, got = link
    proc._handle(Result({'accepted': True, 'reason': 'accepted', 'seconds': 0.25},
                        {'updates': 1, 'accepted': 1}))
    proc._handle(Model({'placeholder': 1}, 'format: diffmsm.subject/1\n', {'updates': 1}))
    proc._handle(Log('hello'))
    proc._handle(Stats({'busy': True}))
    assert [(r.accepted, r.reason, r.seconds) for r in got['results']] == [
        (True, 'accepted', 0.25)]
    assert got['models'] == [({'placeholder': 1}, 'format: diffmsm.subject/1\n')]
    assert proc.model_yaml == 'format: diffmsm.subject/1\n'
    assert got['logs'] == ['hello']
    assert proc.stats['updates'] == 1 and proc.stats['accepted'] == 1 and proc.stats['busy']
