"""
The identifier's worker thread runs raw EMG's session fits on a thread of their own.

While a session fit runs, data keep coming in (nothing dropped); no online update runs
with raw EMG; its result is reported and published like an update's; a reset while it runs drops
its result (it fitted data from before the reset).
"""

import threading
import time

from diffmsm_ros import settings
from diffmsm_ros.files import modelfile
from diffmsm_ros.identify import offline, session_fit
from diffmsm_ros.nodes.identifier_messages import Reset
from diffmsm_ros.nodes.identifier_worker import IdentifierWorker
from diffmsm_ros.session import raw_emg, record
import numpy as np
import pytest
from sessions import raw_session

FIRST = 20.0         # s of data before the first session fit
DUE = 28.0           # s of data by which FIRST s are archived (whole chunks, after warm-up)
DURATION = 60.0      # s of session: more comes while the fit runs than the buffers hold
BLOCK = 0.01         # s of samples handed over at a time (the node sends 20 ms batches)
QUEUE = 2000         # items waiting for the worker before the feeder waits for it
WAIT = 300.0         # s the slowest step may take on a loaded machine


@pytest.fixture(scope='module')
def session(elbow):
    """Return (excitations, their times, noise density, recording, settings, low-pass)."""
    values = dict(settings.defaults(), **{
        'emg.kind': 'raw', 'emg.sample_rate': record.RAW_RATE,
        'emg.mvc': [raw_emg.calibrate_mvc(record.RAW_AMPLITUDE, record.RAW_RATE)] * 6})
    emg = settings.emg_config(values, elbow.model.muscle_names)
    _, recording = raw_session(elbow, 0, DURATION)
    excitations, emg_t, noise = offline.excitations_from_recording(
        recording, emg, elbow.model.muscle_names, with_noise=True)
    return excitations, emg_t, noise, recording, values, emg.lowpass


@pytest.fixture()
def worker(elbow, session, monkeypatch):
    """Give a started worker that reports into lists (and a condition notified on each)."""
    monkeypatch.setattr(session_fit, 'FIRST', FIRST)
    *_, values, lowpass = session
    got = {'results': [], 'models': [], 'logs': []}
    changed = threading.Condition()

    def keep(key):
        def add(item):
            with changed:
                got[key].append(item)
                changed.notify_all()
        return add

    w = IdentifierWorker(elbow, settings.identify_config(values), keep('results'),
                         keep('models'), keep('logs'), lowpass=lowpass)
    w.compile()
    w.start()
    yield w, got, changed
    w.stop(WAIT)


def put(w, session, start, end):
    """Hand over the session's samples in [start, end) s, as the node does, in order."""
    excitations, emg_t, noise, recording, *_ = session
    jt = recording.joint_t
    for lo in np.arange(start, end, BLOCK):
        hi = min(lo + BLOCK, end)
        if w.inbox.qsize() >= QUEUE:
            wait_until(lambda: w.inbox.qsize() < QUEUE // 2)
        for k in np.flatnonzero((jt >= lo) & (jt < hi)):
            w.put_encoders(jt[k], recording.position[k], recording.velocity[k],
                           recording.effort[k])
        now = (emg_t >= lo) & (emg_t < hi)
        if np.any(now):
            w.put_excitations(emg_t[now], excitations[now], noise)


def wait_until(condition, timeout=WAIT):
    """Poll ``condition`` (state of the worker's threads) until true; fail after timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.01)


def session_results(got):
    return [r for r in got['results'] if r.session_seconds > 0]


@pytest.mark.slow
def test_a_session_fit_runs_beside_the_data_and_is_reported(worker, session):
    w, got, changed = worker
    put(w, session, 0.0, DUE)
    wait_until(lambda: w._session is not None)        # due: started on its thread
    before = len(got['results'])
    put(w, session, DUE, DURATION)            # data go on coming meanwhile
    with changed:
        # the result, then its model (reported in that order)
        assert changed.wait_for(lambda: session_results(got) and got['models'], WAIT)
    fit = session_results(got)[0]
    # reported like an update, and published; no online update ran (raw EMG): after the
    # fit only the strength tracker reports, on the chunks that came meanwhile
    assert got['results'][0] is fit and before == 0
    assert all(r.session_seconds == 0 and not r.robust_start and np.isnan(r.fit_cost)
               for r in got['results'][1:])
    assert fit.accepted and fit.session_seconds >= FIRST and len(got['models']) >= 1
    # the model reported is the file published (inside the template's bounds)
    published = got['models'][0]
    modelfile.check_bounds(published)
    assert published.model.name == w.ident.template.model.name
    assert w.ident.session_fits == 1 and w.updates == len(got['results'])
    # what came while it ran was taken in and archived, nothing dropped
    wait_until(lambda: w.inbox.empty() and w.ident.archive.seconds >= DURATION - 6.0, 30.0)
    assert w.ident.archive_lost == 0 and w.dropped == 0 and not got['logs']


@pytest.mark.slow
def test_a_reset_while_a_session_fit_runs_drops_its_result(worker, session):
    w, got, changed = worker
    put(w, session, 0.0, DUE)
    wait_until(lambda: w._session is not None)
    fitting = w._session
    w.take(Reset())
    put(w, session, 0.0, 2.0)            # the session again, from its start
    fitting.join(WAIT)
    wait_until(lambda: w._session is not fitting)
    # nothing reported: raw EMG runs no online updates, the fit's result was dropped
    assert not got['results'] and not got['models']
    assert w.ident.session_fits == 0 and not np.any(w.ident.z)
    assert w.ident.archive.seconds < FIRST
