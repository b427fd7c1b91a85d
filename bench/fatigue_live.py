"""
Issue 18's live fatigue check: the real node identifying a fatiguing subject over DDS.

MuJoCo simulates the hidden subject (the elbow template ``--perturb`` off, 15 % by default)
wearing the exoskeleton for ``--duration`` s (600 by default), every muscle losing a
strength share drawn from 10-30 % by the end (``mujoco_sim.fatigue``); encoder noise
1e-4 rad; envelope EMG in 10 ms chunks.  The node (``diffmsm run --use-sim-time``, its
own process, the template loaded, identification on with the default memory and drift)
gets the session at real-time pace from this process.

Printed: every published model's mean error against the truth at its time (strength,
optimal fibre length, tendon slack length; the strengths scaled by the fatigue then),
every 10 % of the session; then the goals.  Goals (issue 18): the last published model
within 1.5 % mean error of the end-of-session truth; the published strengths within 3 %
RMS of the fatiguing truth over the second half (the model in force each second); the
torque RMSE over the last 60 s within 3 % of the RMS true muscle torque.  Exits 1 when a
goal is missed.

    python bench/fatigue_live.py [--duration 600] [--seed 0]
"""

import argparse
import dataclasses
import os
import sys
import tempfile
import threading
import time

import numpy as np
from torque_values import live_node, local_dds   # this folder (python bench/...); it puts
#                                                 test/ (sessions: the tests' helpers) on
#                                                 the path, imported after local_dds()

LAST_MODEL_GOAL = 1.5      # % mean muscle error of the last published model
STRENGTH_GOAL = 3.0        # % RMS strength error over the second half
TORQUE_GOAL = 3.0          # % torque RMSE over the last TORQUE_SPAN s
TORQUE_SPAN = 60.0         # s
NOISE = 1e-4               # rad, encoder noise
DROPS = (0.10, 0.30)       # strength lost by the end, drawn per muscle


def simulate(root, duration, perturb, seed):
    """Simulate the session; write the bag; return (truth, session, strength factor)."""
    from diffmsm_ros import templates
    from diffmsm_ros.files import bags, modelfile
    from diffmsm_ros.session import mujoco_sim, record, subjects
    elbow = templates.resolve('elbow')
    rng = np.random.default_rng(seed)
    truth = subjects.perturb(elbow, perturb, rng)
    truth.extra.pop('session', None)
    modelfile.save_atomic(truth, os.path.join(root, 'truth.yaml'))
    factor = mujoco_sim.fatigue(duration, rng.uniform(*DROPS, elbow.model.n_muscles))
    xml = templates.myo_sim_path('models/legacy/elbow/myoelbow_1dof6muscles_1dofexo.xml')
    session, _ = mujoco_sim.simulate_session(xml, elbow, truth, duration, seed, noise=NOISE,
                                             strength=factor)
    msgs, _ = record.session_messages(truth.model, session)
    bags.write_bag(os.path.join(root, 'bag'), msgs)
    return elbow, truth, session, factor


def replay(root, bag):
    """Run the node, replay the bag at real-time pace; return (models, torques, diag)."""
    from diffmsm_ros.nodes.client import write_params
    from diffmsm_ros.nodes.replay import BagReplayer
    pfile = write_params(os.path.join(root, 'params.yaml'), 'elbow',
                         os.path.join(root, 'model.yaml'), 500.0,
                         {'model.save_on_update': False, 'identification.period': 1.0})
    models = []          # (session s at receipt, YAML text)
    with live_node(pfile, os.path.join(root, 'node.log'), 'fatigue_live') as (node, listener):
        with listener.lock:
            seen = len(listener.models)          # the template, latched at start
        player = threading.Thread(target=BagReplayer(node, bag).play)
        started = time.monotonic()
        player.start()
        while player.is_alive():
            player.join(0.2)
            with listener.lock:
                new = listener.models[seen:]
            seen += len(new)
            models += [(time.monotonic() - started, text) for text in new]
        time.sleep(3.0)      # the last torques in flight, one more /diagnostics
        with listener.lock:
            # models of updates still running at the end count from the session's end
            models += [(time.monotonic() - started, text) for text in listener.models[seen:]]
            torques = dict(listener.torques)
            diag = dict(listener.diagnostics or {})
    return models, torques, diag


def errors(model, truth, factor, t):
    """Return (mean % error of the muscle parameters, % errors of the strengths) at t."""
    from sessions import muscle_errors
    mus = truth.model.muscles
    tired = dataclasses.replace(mus, max_isometric_force=np.asarray(
        mus.max_isometric_force) * factor(t))
    err = muscle_errors(model, dataclasses.replace(truth.model, muscles=tired))
    return float(err.mean()), err[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--duration', type=float, default=600.0, help='s of session')
    parser.add_argument('--perturb', type=float, default=0.15, help='hidden subject spread')
    parser.add_argument('--seed', type=int, default=0, help='subject, fatigue and session')
    args = parser.parse_args()
    local_dds()
    from diffmsm_ros.files import modelfile
    from diffmsm_ros.jax_setup import configure
    configure()
    root = tempfile.mkdtemp(prefix='diffmsm-fatigue-')
    print(f'simulating {args.duration:.0f} s with MuJoCo (in {root}) ...', flush=True)
    elbow, truth, session, factor = simulate(root, args.duration, args.perturb, args.seed)
    print(f'strength at the end: {np.round(100 * factor(args.duration), 1)} % of the start',
          flush=True)
    print('starting the node and replaying at real-time pace ...', flush=True)
    models, torques, diag = replay(root, os.path.join(root, 'bag'))
    fitted = [(t, modelfile.loads(text).model) for t, text in models]
    print(f'\n{len(fitted)} models published; encoder samples {len(session.t)}, torques '
          f'{len(torques)}')
    print(f'{"session s":>10s} {"muscle err %":>13s} {"strength RMS err %":>19s}')
    mean, strength = errors(elbow.model, truth, factor, 0.0)
    print(f'{"template":>10s} {mean:13.2f} {np.sqrt(np.mean(strength ** 2)):19.2f}')
    marks = np.linspace(0.1, 1.0, 10) * args.duration
    for mark in marks:
        now = [m for t, m in fitted if t <= mark]
        if now:
            mean, strength = errors(now[-1], truth, factor, mark)
            print(f'{mark:10.0f} {mean:13.2f} {np.sqrt(np.mean(strength ** 2)):19.2f}')
    failures = []
    if not fitted:
        failures.append('no model published')
    else:
        last, _ = errors(fitted[-1][1], truth, factor, args.duration)
        second = []
        for t in np.arange(0.5 * args.duration, args.duration, 1.0):
            now = [m for s, m in fitted if s <= t]
            if now:
                second.append(errors(now[-1], truth, factor, t)[1])
        rms = float(np.sqrt(np.mean(np.square(second)))) if second else float('nan')
        print(f'\nlast published model: {last:.2f} % (goal {LAST_MODEL_GOAL} %); strengths '
              f'over the second half: {rms:.2f} % RMS (goal {STRENGTH_GOAL} %)')
        if not last <= LAST_MODEL_GOAL:
            failures.append(f'last model {last:.2f} %')
        if not rms <= STRENGTH_GOAL:
            failures.append(f'strengths {rms:.2f} % RMS over the second half')
    from sessions import relative_rmse
    torque = relative_rmse(torques, session, session.t[-1] - TORQUE_SPAN)
    ident = diag.get('diffmsm: identifier', {})
    print(f'torque RMSE over the last {TORQUE_SPAN:.0f} s: {torque:.2f} % (goal '
          f'{TORQUE_GOAL} %); identifier updates {ident.get("accepted", "?")} accepted of '
          f'{ident.get("updates", "?")}')
    if not torque <= TORQUE_GOAL:
        failures.append(f'torque RMSE {torque:.2f} %')
    print('\nGOAL ' + ('MET' if not failures else 'MISSED: ' + '; '.join(failures)))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
