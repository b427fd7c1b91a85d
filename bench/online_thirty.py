"""
Issue 3's online goal: from a 30 % initial spread on the MuJoCo exoskeleton session.

The hidden subject's 60 s session is simulated by MuJoCo (myoelbow with exo, envelope
EMG, encoder noise 1e-4 rad) and replayed through the online identifier at real-time pace:
an update that computes for c seconds delays the next one by c seconds of session time.
Prints every update (session time, compute time, outcome, muscle error), the error at
60 s against the goal of 2 %, and with several seeds a table of them.

    python bench/online_thirty.py [--seeds 4 5 7 8] [--unpaced] [--window 30] [--chunk 10]
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
    parser.add_argument('--seeds', type=int, nargs='+', default=[4],
                        help='draws of the 30 %% start (a seed that draws no plausible '
                             'subject is reported and skipped)')
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
    from diffmsm_ros import templates
    import sessions

    elbow = templates.resolve('elbow')
    xml = templates.myo_sim_path(ELBOW_XML[len('myo_sim:'):])
    session = sessions.simulate(elbow, xml, sessions.SESSION)
    rows = [run_seed(seed, elbow, session, args) for seed in args.seeds]
    if len(rows) > 1:
        print('seed  start   at 60 s  accepted/updates  robust starts  slowest robust  '
              'slowest warm')
        for row, _ in rows:
            print(row)
        drawn = [met for _, met in rows if met is not None]
        print(f'{sum(drawn)} of {len(drawn)} drawable seeds met the goal of {GOAL} %')
    drawn = [met for _, met in rows if met is not None]
    sys.exit(0 if drawn and all(drawn) else 1)


def run_seed(seed, elbow, session, args):
    """
    Replay the session from one seed's 30 % start; print its updates.

    Returns (table row, goal met or None when the seed draws no plausible subject).
    """
    from diffmsm_ros import settings
    from diffmsm_ros.identify import offline, online
    from diffmsm_ros.session import subjects
    import numpy as np
    import sessions

    truth, _, _, recording = session
    try:
        start = subjects.perturb(truth, 0.3, np.random.default_rng(seed))
    except ValueError as exc:
        print(f'seed {seed}: {exc}')
        return f'{seed:4d}  not drawable', None
    start_error = sessions.muscle_errors(start.model, truth.model).mean()
    values = sessions.envelope_values(elbow.model)
    values.update({'identification.window': args.window, 'identification.chunk': args.chunk})
    ident = online.OnlineIdentifier(start, settings.identify_config(values))
    started = time.monotonic()
    ident.compile()   # as the node does before going live
    compile_seconds = time.monotonic() - started
    excitations, emg_t = offline.excitations_from_recording(
        recording, settings.emg_config(values), elbow.model.muscle_names)
    history = offline.replay(ident, recording, excitations, 1.0, paced=not args.unpaced,
                             emg_t=emg_t)
    space = ident.problem.space
    print(f'online from a {start_error:.1f} % start (seed {seed}, window {args.window:g} s '
          f'in chunks of {args.chunk or args.window:g} s, compiled in {compile_seconds:.1f} s): '
          'session time, compute time, outcome, fit residual (sigma_q^2), muscle error')
    error = float('nan')
    robust, warm = [], []
    for t, theta, seconds, reason, cost, is_robust in zip(
            history.time, history.theta, history.seconds, history.reason, history.fit_cost,
            history.robust_start):
        error = sessions.theta_errors(space, theta, truth.model).mean()
        if reason != 'not enough data yet':
            (robust if is_robust else warm).append(seconds)
            print(f'  {t:5.1f} s {1e3 * seconds:7.0f} ms{" R" if is_robust else "  "} '
                  f'{reason:34s} {cost:7.3f} {error:7.3f} %')
    met = bool(error <= GOAL)
    verdict = 'met' if met else 'not met'
    print(f'{sum(history.accepted)} accepted of {len(history.accepted)} updates; error at '
          f'{history.time[-1]:.1f} s: {error:.3f} % (goal {GOAL} %: {verdict})', flush=True)
    return (f'{seed:4d} {start_error:5.1f} % {error:8.3f} % {sum(history.accepted):8d}/'
            f'{len(history.accepted):<8d} {len(robust):8d} {max(robust, default=0):14.1f} s '
            f'{max(warm, default=0):11.2f} s  {verdict}'), met


if __name__ == '__main__':
    main()
