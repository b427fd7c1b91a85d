"""
Raw EMG with fatigue: the strengths tracked after the first session fit, offline.

For each seed a MuJoCo elbow session (``fatigue_live.simulate``: the subject 15 % off the
template, every strength falling 10-30 % over the session, encoder noise 1e-4 rad, raw
EMG at 2 kHz) is replayed through the node's identifier in a plain loop, one second of
data at a time: the first session fit when due (after 120 s of data), checked as the node
checks it once the data that arrive while it runs are in (as many seconds as it took, at
least three chunks), then, with memory, the tracker (``identify/tracking.py``) chunk by
chunk; a later session fit runs only if that one was not adopted.  The same data without
memory keep the session fit's model: the comparison.  Printed per seed and way: the
published model's mean muscle error (strength, optimal fibre length, tendon slack length)
against the fatiguing truth at 3 minutes and at the end, and the RMS strength error over
the second half.

Goal (exit 1 if missed): on every seed the tracked model ends closer to the truth than
the session fit alone, and its strengths over the second half are closer too.

    python bench/raw_fatigue.py [--seeds 0 1 2] [--minutes 8]
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test'))

PERIOD = 1.0        # s of data fed between updates
HELD_OUT = 3        # chunks of data, at least, that arrive while a session fit runs
EARLY = 180.0       # s: the first mark (the session fit is in by then)
CHUNK = 5.5         # s: memory's default chunk, for both ways (the same archive and fit)


def run(elbow, truth, factor, recording, memory):
    """Replay the recording; return [(t, muscle error %, strength RMS error %)]."""
    from diffmsm_ros import settings
    from diffmsm_ros.identify import offline
    from diffmsm_ros.identify.online import OnlineIdentifier
    from fatigue_live import errors, node_params
    rate, node = node_params('raw', elbow.model)          # the live bench's raw settings
    values = dict(settings.defaults(), **node, **{
        'emg.sample_rate': rate, 'identification.memory': memory,
        'identification.chunk': CHUNK})
    emg = settings.emg_config(values, elbow.model.muscle_names)
    exc, emg_t, noise = offline.excitations_from_recording(
        recording, emg, elbow.model.muscle_names, with_noise=True)
    ident = OnlineIdentifier(elbow, settings.identify_config(values), lowpass=emg.lowpass)
    ident.envelope_noise = noise
    rows = []
    jt, t0 = recording.joint_t, recording.joint_t[0]
    i = j = 0
    job, span = None, ident.fit_span * ident.h
    for end in np.arange(t0 + PERIOD, jt[-1] + 1e-9, PERIOD):
        k = np.searchsorted(jt, end, side='right')
        for n in range(i, k):
            ident.add_encoders(jt[n], recording.position[n], recording.velocity[n],
                               recording.effort[n])
        i, m = k, np.searchsorted(emg_t, end, side='right')
        if m > j:
            ident.add_excitations(emg_t[j:m], exc[j:m])
            j = m
        if job is None and not ident.session_fits:
            job = ident.session_job()
            if job is not None:
                started = time.monotonic()
                fitted = ident.run_session_job(job)
                # as in the node, data go on arriving while the fit runs
                adopt_at = end + max(time.monotonic() - started, HELD_OUT * span)
        if job is not None and end >= adopt_at:
            result = ident.adopt_session(job, fitted)
            if not result.accepted:
                print(f'      session fit of {job.seconds:.0f} s not adopted: '
                      f'{result.reason}')
            job = None
        ident.update()
        if ident.session_fits:
            mean, strengths = errors(ident.current_file().model, truth, factor, end - t0)
            rows.append((end - t0, mean, float(np.sqrt(np.mean(strengths ** 2)))))
    return np.array(rows).reshape(-1, 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--minutes', type=float, default=8.0)
    args = parser.parse_args()
    from diffmsm_ros.jax_setup import configure
    configure()
    from diffmsm_ros.files import bags
    from diffmsm_ros.session import record
    from fatigue_live import simulate
    duration = 60.0 * args.minutes
    print(f'{args.minutes:g} min raw-EMG MuJoCo elbow sessions with fatigue, first session '
          'fit then (with memory) the tracker')
    print('seed  way                 muscle err % at 3 min  at the end  strengths RMS % '
          '(2nd half)  compute s')
    failed = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as root:
            elbow, truth, session, factor = simulate(root, duration, 0.15, seed, emg='raw')
            recording = bags.load_recording(os.path.join(root, 'bag'),
                                            elbow.model.joint_names, record.RAW_RATE,
                                            elbow.model.muscle_names)
        ends = {}
        for memory, way in ((False, 'session fit alone'), (True, 'tracked')):
            started = time.monotonic()
            rows = run(elbow, truth, factor, recording, memory)
            if not len(rows):
                print(f'{seed:4d}  {way:18s}  no session fit adopted')
                ends[way] = (np.inf, np.inf)
                continue
            early = rows[min(np.searchsorted(rows[:, 0], EARLY), len(rows) - 1), 1]
            half = rows[rows[:, 0] >= duration / 2, 2]
            ends[way] = (rows[-1, 1], float(np.sqrt(np.mean(half ** 2))))
            print(f'{seed:4d}  {way:18s}  {early:21.2f}  {rows[-1, 1]:10.2f}  '
                  f'{ends[way][1]:26.2f}  {time.monotonic() - started:9.0f}', flush=True)
        if not all(t < s for t, s in zip(ends['tracked'], ends['session fit alone'])):
            failed.append(seed)
    if failed:
        print(f'GOAL MISSED: on seeds {failed} the tracked model is not closer than the '
              'session fit alone')
        return 1
    print('GOAL MET: on every seed the tracker ends closer, its strengths too')
    return 0


if __name__ == '__main__':
    sys.exit(main())
