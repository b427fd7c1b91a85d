"""
Issue 3's raw-EMG goal (5 %), and what 60 s of raw EMG can determine.

The 60 s MuJoCo exoskeleton session of the suite, with raw EMG at 2 kHz synthesised from
its excitations (a 20-450 Hz carrier) and filtered as the node filters it.  For each draw
of the carrier: the envelope noise the filter measures (S0 x its bandwidth) against the
envelope's actual error, a multi-start solve from the template on all 60 s, its mean muscle
error, how many muscle parameters lie beyond 2 reported sigma, and the muscle torque RMSE
of the fitted model along the MuJoCo run (its true activations) against the template's.
Then, per muscle parameter, the Cramer-Rao 1-sigma at the truth (the envelope noise's
information, prior left out) against the RMS error over the draws, and the session the
bound needs for a mean 1-sigma of 5 %.

    python bench/raw_emg.py [--draws 5 6 7 8 9 10]
"""

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test'))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

GOAL = 5.0   # % mean muscle error


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--draws', type=int, nargs='+', default=[5, 6, 7, 8, 9, 10],
                        help='seeds of the raw-EMG carrier')
    args = parser.parse_args()
    from diffmsm_ros.jax_setup import configure
    configure()
    from conftest import ELBOW_XML
    from diffmsm_ros import settings, templates
    from diffmsm_ros.identify import offline, params
    from diffmsm_ros.identify.online import external_torque_rms, OnlineIdentifier
    from diffmsm_ros.session import raw_emg, record
    import jax.numpy as jnp
    import numpy as np
    import sessions

    elbow = templates.resolve('elbow')
    xml = templates.myo_sim_path(ELBOW_XML[len('myo_sim:'):])
    from diffmsm_ros.session.mujoco_sim import model_along_run
    truth, session, run, recording = sessions.simulate(elbow, xml, sessions.SESSION)

    def torque_rmse(model):
        torque, _ = model_along_run(model, run)
        return 100 * sessions.rms(torque - run.tau_muscle) / sessions.rms(run.tau_muscle)

    values = sessions.envelope_values(elbow.model)
    mvc = raw_emg.calibrate_mvc(record.RAW_AMPLITUDE, record.RAW_RATE)
    values.update({'emg.kind': 'raw', 'emg.sample_rate': record.RAW_RATE,
                   'emg.mvc': [mvc] * elbow.model.n_muscles})
    ident = OnlineIdentifier(elbow, settings.identify_config(values))
    problem = ident.problem
    space = problem.space
    muscles = space.mask(lambda e: e.section == 'muscles' and e.field in sessions.MUSCLE_FIELDS)
    truth_theta = params.values(truth.model, space)
    z_truth = np.asarray(space.to_z(jnp.asarray(truth_theta)))
    labels = [label for label, m in zip(space.labels(), muscles) if m]

    print(f'muscle torque RMSE of the template along the run: {torque_rmse(elbow.model):.2f} %')
    print('draw  envelope error rms (measured / actual)  solve s  mean error  '
          'median 1-sigma  beyond 2 sigma  torque RMSE')
    errors, bounds = [], None
    for draw in args.draws:
        raw, t = raw_emg.synthesize(session.t, session.u, record.RAW_RATE,
                                    np.random.default_rng(draw), record.RAW_AMPLITUDE)
        rec = dataclasses.replace(recording, emg_t=t, emg=raw)
        exc, et, density = offline.excitations_from_recording(
            rec, settings.emg_config(values), elbow.model.muscle_names, with_noise=True)
        idx = np.clip(np.searchsorted(session.t, et) - 1, 0, len(session.t) - 1)
        late = slice(int(2 * record.RAW_RATE), None)
        actual = np.sqrt(np.mean((exc[late] / session.u[idx][late] - 1.0) ** 2))
        bandwidth = ident_bandwidth(values)
        measured = np.sqrt(np.mean(density) * bandwidth)
        win, _ = offline.session_window(rec, exc, et, elbow.model, ident.history,
                                        sessions.SESSION)
        wins = offline.split_windows(win, ident.fit_steps, ident.warmup_steps)
        started = time.monotonic()
        z, _ = problem.solve(np.zeros(space.size), wins, restarts=1, bone_starts=(),
                             escapes=())
        seconds = time.monotonic() - started
        hess, _, half, count, scores = problem.normal(z, wins)
        analysis = problem.analyse(z, hess, half, count,
                                   external_torque=external_torque_rms(wins), scores=scores,
                                   wins=wins, envelope_noise=density)
        theta = np.asarray(problem.theta_of(jnp.asarray(z)))
        err = 100 * (theta - truth_theta)[muscles] / np.abs(truth_theta[muscles])
        sigma = 100 * np.asarray(analysis.std)[muscles] / np.abs(theta[muscles])
        errors.append(err)
        if bounds is None:
            info = problem.envelope_information(z_truth, wins, density)
            cov = np.linalg.pinv(info, hermitian=True)
            jac = np.asarray(problem._theta_jacobian(jnp.asarray(z_truth)))
            std = np.sqrt(np.clip(np.diag(jac @ cov @ jac.T), 0, None))
            bounds = 100 * std[muscles] / np.abs(truth_theta[muscles])
        print(f'{draw:4d}  {100 * measured:6.2f} % / {100 * actual:6.2f} %'
              f'{"":22s}{seconds:6.0f}  {np.mean(np.abs(err)):8.2f} %  '
              f'{np.median(sigma):10.2f} %  {int(np.sum(np.abs(err) > 2 * sigma)):6d} of '
              f'{len(err)}  {torque_rmse(problem.model_of(jnp.asarray(z))):9.2f} %',
              flush=True)
    errors = np.asarray(errors)
    rms = np.sqrt(np.mean(errors ** 2, axis=0))
    print('\nparameter                            Cramer-Rao 1-sigma   RMS error over draws')
    for label, b, r in zip(labels, bounds, rms):
        print(f'{label:36s} {b:12.1f} %       {r:12.1f} %')
    print(f'{"mean":36s} {np.mean(bounds):12.1f} %       {np.mean(rms):12.1f} %')
    need = (np.mean(bounds) / GOAL) ** 2
    print(f'\nmean error over draws {np.mean(np.abs(errors)):.1f} % against the goal of '
          f'{GOAL} %; the bound reaches a mean 1-sigma of {GOAL} % after about '
          f'{need * sessions.SESSION / 60:.0f} min of such a session ({need:.0f} x 60 s)')
    # the goal cannot be met from 60 s (README): the exit code says so rather than hiding it
    sys.exit(0 if np.mean(np.abs(errors)) <= GOAL else 1)


def ident_bandwidth(values):
    """Noise bandwidth (Hz) of the node's envelope low-pass for these settings."""
    from diffmsm_ros.emg.envelope import EnvelopeFilter
    return EnvelopeFilter(values['emg.sample_rate'], [1.0], lowpass=values['emg.lowpass'],
                          band=(values['emg.band_low'],
                                values['emg.band_high'])).envelope_bandwidth


if __name__ == '__main__':
    main()
