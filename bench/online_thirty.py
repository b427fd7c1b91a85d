"""
Issue 3's online goal: from a 30 % initial spread on the MuJoCo exoskeleton session.

The hidden subject's 60 s session is simulated by MuJoCo (myoelbow with exo, envelope
EMG, encoder noise 1e-4 rad) and replayed through the online identifier at real-time pace:
an update that computes for c seconds delays the next one by c seconds of session time.
Prints every update (session time, compute time, outcome, muscle error) and the error at
60 s against the goal of 2 %.  Not met reliably yet; see the README's known limits.

    python bench/online_thirty.py [--seed 4] [--unpaced] [--window 30] [--chunk 10]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test'))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

GOAL = 2.0   # % mean muscle error at 60 s


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seed', type=int, default=4, help='draw of the 30 %% start')
    parser.add_argument('--unpaced', action='store_true',
                        help='an update every second of data whatever its compute time')
    parser.add_argument('--window', type=float, default=30.0,
                        help='identification.window (s of data per update)')
    parser.add_argument('--chunk', type=float, default=10.0,
                        help='identification.chunk (s per compiled piece; 0: whole window)')
    args = parser.parse_args()
    from diffmsm_ros.jax_setup import configure
    configure()
    from conftest import ELBOW_XML
    from diffmsm_ros import settings, templates
    from diffmsm_ros.identify import offline, online
    from diffmsm_ros.session import subjects
    import numpy as np
    import test_identify_sessions as sessions

    elbow = templates.resolve('elbow')
    xml = templates.myo_sim_path(ELBOW_XML[len('myo_sim:'):])
    truth, _, _, recording = sessions.simulate(elbow, xml, sessions.SESSION)
    start = subjects.perturb(truth, 0.3, np.random.default_rng(args.seed))
    start_error = sessions.muscle_errors(start.model, truth.model).mean()
    values = sessions.envelope_values(elbow.model)
    values.update({'identification.window': args.window, 'identification.chunk': args.chunk})
    ident = online.OnlineIdentifier(start, settings.identify_config(values))
    started = time.monotonic()
    ident.compile()   # as the node does before going live
    compile_seconds = time.monotonic() - started
    excitations, emg_t = offline.excitations_from_recording(recording, values,
                                                            elbow.model.muscle_names)
    history = offline.replay(ident, recording, excitations, 1.0, paced=not args.unpaced,
                             emg_t=emg_t)
    space = ident.problem.space
    print(f'online from a {start_error:.1f} % start (seed {args.seed}, window {args.window:g} s '
          f'in chunks of {args.chunk or args.window:g} s, compiled in {compile_seconds:.1f} s): '
          'session time, compute time, outcome, fit residual (sigma_q^2), muscle error')
    error = float('nan')
    for t, theta, seconds, reason, cost, robust in zip(
            history.time, history.theta, history.seconds, history.reason, history.fit_cost,
            history.robust_start):
        error = sessions.theta_errors(space, theta, truth.model).mean()
        if reason != 'not enough data yet':
            print(f'  {t:5.1f} s {1e3 * seconds:7.0f} ms{" R" if robust else "  "} '
                  f'{reason:34s} {cost:7.3f} {error:7.3f} %')
    print(f'{sum(history.accepted)} accepted of {len(history.accepted)} updates; error at '
          f'{history.time[-1]:.1f} s: {error:.3f} % (goal {GOAL} %: '
          f'{"met" if error <= GOAL else "not met"})')


if __name__ == '__main__':
    main()
