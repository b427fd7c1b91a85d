"""
Whole-session identification: what the identifier with memory learns over a session.

The hidden subject is the elbow template with every parameter 10 % off; it wears the
exoskeleton in MuJoCo for ``--minutes``.  With fatigue every muscle loses ``--fatigue`` of
its strength by the end (a saturating course, ``mujoco_sim.fatigue``).  EMG is the
envelope, or raw EMG at 2 kHz synthesised from the excitations and filtered as the node
filters it.  The recording is replayed through the node's identifier (memory on, the
declared drift; none in the ``+nodrift`` cases) as fast as the machine allows, one update
per chunk, from the template; with raw EMG the session fits (``identify/session_fit.py``)
run when due, as in the node.

At 1, 2, 5, 10 and 15 min (those within the session) the table gives, against the truth
at that time: the mean error of the six strengths, their median reported 1-sigma, the
Cramer-Rao 1-sigma of the data up to then (median over the strengths), the share of
strengths within 2 sigma, the mean error of all 18 muscle parameters, the share of them
within 2 sigma, their error in units of the bound (RMS over the 18: about 1 for an
efficient estimator), and the muscle torque RMSE over the minute before the mark along the
MuJoCo run (its true activations; % of the true torque's RMS) of the model then and of the
template.  The bound is the inverse of the Fisher information at the hidden
subject's (unfatigued) parameters, prior left out: the encoders' (noise 1e-4 rad, the
residual scale) for envelope EMG, the envelope error's (``envelope_information``) for raw
EMG.  With fatigue it is the bound for parameters that stand still, a reference only.

Goals (exit 1 if one is missed): with envelope EMG the strengths end within 2 % on average,
fatigued or not; in every case at most one of the 18 muscle parameters ends beyond 2
sigma of the truth (about 95 % within: the reported 1-sigma is honest); where nothing
drifts and no drift is declared (``+nodrift``) the muscle parameters' RMS error ends within
1.3 bounds, RMS over at least three sessions (seeds 3, 4, 5; one session's 18 parameters
scatter by about 0.17 around 1 for an efficient estimator).  With a drift declared the
belief forgets on purpose, so its error in bounds of parameters that stand still is
printed, not judged.

    python bench/session.py [--minutes 15] [--fatigue 0.2] [--seeds 1]
                            [--cases envelope envelope+fatigue envelope+nodrift raw
                                     raw+fatigue]
                            [--set PARAMETER=VALUE ...]
"""

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test'))

MARKS = (1.0, 2.0, 5.0, 10.0, 15.0)   # min
ENVELOPE_GOAL = 2.0                   # % mean strength error at the end, envelope EMG
OUTSIDE_GOAL = 1                      # most muscle parameters beyond 2 sigma at the end
EFFICIENCY_GOAL = 1.3                 # RMS muscle error in Cramer-Rao 1-sigma, at the end
FIRST_SEED = 3                        # the sessions' seeds: 3, 4, ... (``--seeds``)
EFFICIENCY_SEEDS = 3                  # sessions at least where efficiency is judged


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--minutes', type=float, default=15.0)
    parser.add_argument('--fatigue', type=float, default=0.2,
                        help='share of strength lost by the end in the fatigue cases')
    parser.add_argument('--cases', nargs='+',
                        default=['envelope', 'envelope+fatigue', 'envelope+nodrift', 'raw',
                                 'raw+fatigue'])
    parser.add_argument('--seeds', type=int, default=1,
                        help='sessions per case, seeds 3, 4, ... (at least 3 where '
                        'efficiency is judged, on their RMS)')
    parser.add_argument('--set', nargs='*', default=[], metavar='PARAMETER=VALUE',
                        help='node parameters for the identifier, e.g. '
                        'identification.memory=false identification.drift.strength=0')
    args = parser.parse_args()
    import yaml
    overrides = {}
    for item in args.set:
        key, sep, text = item.partition('=')
        if not sep:
            parser.error(f'--set {item}: expected PARAMETER=VALUE')
        overrides[key] = yaml.safe_load(text)
    from diffmsm_ros.jax_setup import configure
    configure()
    from conftest import ELBOW_XML
    from diffmsm_ros import settings, templates
    from diffmsm_ros.identify import offline, params
    from diffmsm_ros.identify.online import OnlineIdentifier
    from diffmsm_ros.session import mujoco_sim, raw_emg, record, subjects, synth
    import numpy as np

    elbow = templates.resolve('elbow')
    xml = templates.myo_sim_path(ELBOW_XML[len('myo_sim:'):])
    truth = subjects.perturb(elbow, 0.1, np.random.default_rng(11))
    duration = 60.0 * args.minutes
    failed = []
    changed = ', '.join(f'{k}={v}' for k, v in overrides.items()) or 'default settings'
    print(f'{args.minutes:.0f} min MuJoCo elbow sessions, identified from the template '
          f'({changed})')
    print('case             seed  min  strength err %  median 1-sigma %  bound %  '
          'within 2 sigma  muscle err %  within 2 sigma  err/bound  torque % (template)  '
          'updates  compute s')
    for case in args.cases:
        kind, *modifiers = case.split('+')
        tired, still = 'fatigue' in modifiers, 'nodrift' in modifiers
        drifts, ratios = [], []
        count = max(args.seeds, EFFICIENCY_SEEDS) if still and not tired else args.seeds
        for seed in range(FIRST_SEED, FIRST_SEED + count):
            drops = np.full(elbow.model.n_muscles, args.fatigue if tired else 0.0)
            factor = mujoco_sim.fatigue(duration, drops)
            session, run = mujoco_sim.simulate_session(
                xml, elbow, truth, duration, seed, noise=1e-4, controller=synth.ExoController(),
                strength=factor if tired else None)
            recording = record.recording_from_session(session, with_velocity=False)
            values = settings.defaults()
            values['emg.sample_rate'] = 1.0 / elbow.model.timestep
            unknown = set(overrides) - set(values)
            if unknown:
                sys.exit(f'--set: unknown parameters {sorted(unknown)}')
            values.update(overrides)
            if still:
                values.update({k: 0.0 for k in values if k.startswith('identification.drift.')})
            drifts.append(max(v for k, v in values.items()
                              if k.startswith('identification.drift.')))
            if kind == 'raw':
                mvc = raw_emg.calibrate_mvc(record.RAW_AMPLITUDE, record.RAW_RATE)
                values.update({'emg.kind': 'raw', 'emg.sample_rate': record.RAW_RATE,
                               'emg.mvc': [mvc] * elbow.model.n_muscles})
                raw, t = raw_emg.synthesize(session.t, session.u, record.RAW_RATE,
                                            np.random.default_rng(5), record.RAW_AMPLITUDE)
                recording = dataclasses.replace(recording, emg_t=t, emg=raw)
            exc, emg_t, density = offline.excitations_from_recording(
                recording, settings.emg_config(values), elbow.model.muscle_names, with_noise=True)
            emg = settings.emg_config(values)
            # raw EMG: the node's session fits too, each run when due (the live node runs
            # them beside the data; here the replay waits for them)
            ident = OnlineIdentifier(elbow, settings.identify_config(values), lowpass=emg.lowpass)
            ident.envelope_noise = density
            ident.compile()
            started = time.monotonic()
            history = offline.replay(ident, recording, exc, ident.fit_span * ident.h,
                                     emg_t=emg_t, on_update=lambda result, i: i.session_fit())
            seconds = time.monotonic() - started
            space = ident.problem.space
            muscles = space.mask(lambda e: e.section == 'muscles' and e.field in (
                'max_isometric_force', 'optimal_fiber_length', 'tendon_slack_length'))
            strengths = space.mask(lambda e: e.field == 'max_isometric_force')
            base = params.values(truth.model, space)
            bounds = cramer_rao(ident, recording, exc, emg_t, base, duration,
                                density if kind == 'raw' else None)
            times = np.asarray(history.time)
            err = None
            for mark in [m for m in MARKS if m * 60.0 <= duration + 1e-9]:
                k = int(np.searchsorted(times, mark * 60.0 - 1e-6))
                k = min(k, len(times) - 1)
                theta, std = history.theta[k], history.std[k]
                if std is None:
                    # no model yet (raw EMG: before the first session fit): the template
                    print(f'{case:17s} {seed:4d} {mark:4.0f}  the template (no fit yet)',
                          flush=True)
                    continue
                target = base.copy()
                target[strengths] = base[strengths] * factor(times[k])
                err = 100 * np.abs(theta - target) / np.abs(target)
                inside = np.abs(theta - target) <= 2 * np.asarray(std)
                sigma = 100 * np.asarray(std)[strengths] / np.abs(theta[strengths])
                bound = bounds(times[k])
                ratio = np.sqrt(np.mean((err[muscles] / bound[muscles]) ** 2))
                model = params.apply(elbow.model, space, np.asarray(theta))
                torque = (torque_error(model, run, session.t, times[k]),
                          torque_error(elbow.model, run, session.t, times[k]))
                print(f'{case:17s} {seed:4d} {mark:4.0f} {err[strengths].mean():15.2f} '
                      f'{np.median(sigma):17.2f} {np.median(bound[strengths]):8.2f} '
                      f'{inside[strengths].mean():15.2f} '
                      f'{err[muscles].mean():13.2f} {inside[muscles].mean():15.2f} '
                      f'{ratio:10.2f} {torque[0]:10.1f} ({torque[1]:5.1f}) '
                      f'{sum(history.accepted):8d} {seconds:10.0f}', flush=True)
            if err is None:
                failed.append(f'{case} seed {seed}: no model at the last mark')
                continue
            end_err = err[strengths].mean()
            if kind == 'envelope' and not end_err <= ENVELOPE_GOAL:
                failed.append(f'{case} seed {seed}: strengths {end_err:.2f} % off at the end')
            outside = int(np.sum(~inside[muscles]))
            if outside > OUTSIDE_GOAL:
                failed.append(f'{case} seed {seed}: {outside} of {int(np.sum(muscles))} muscle '
                              'parameters beyond 2 sigma at the end')
            ratios.append(ratio)
        pooled = float(np.sqrt(np.mean(np.square(ratios)))) if ratios else float('nan')
        if count > 1:
            print(f'{case:17s} muscle error at the end, RMS over {len(ratios)} sessions: '
                  f'{pooled:.2f} Cramer-Rao 1-sigma', flush=True)
        # efficiency is a goal where nothing drifts and none is declared: with a drift the
        # belief forgets on purpose (it tracks instead of converging to the batch fit)
        if not tired and max(drifts, default=0.0) == 0.0 and not pooled <= EFFICIENCY_GOAL:
            failed.append(f'{case}: muscle error {pooled:.2f} Cramer-Rao 1-sigma at the end '
                          f'(goal {EFFICIENCY_GOAL})')
    for line in failed:
        print('FAIL', line)
    return 1 if failed else 0


def torque_error(model, run, t, end):
    """Muscle torque RMSE (% of RMS) of ``model`` along the MuJoCo run's minute before ``end``."""
    import dataclasses
    from diffmsm_ros.session import mujoco_sim
    import sessions

    pick = (t > end - 60.0) & (t <= end)
    fields = {f.name: getattr(run, f.name)[pick] for f in dataclasses.fields(run)}
    part = dataclasses.replace(run, **fields)
    torque, _ = mujoco_sim.model_along_run(model, part)
    return 100 * sessions.rms(torque - part.tau_muscle) / sessions.rms(part.tau_muscle)


def cramer_rao(ident, recording, exc, emg_t, truth_theta, duration, density):
    """
    Return ``bound(t)``: the Cramer-Rao 1-sigma (% of the truth) [P] of the data up to t.

    The session is cut into the identifier's windows; each one's Fisher information at the
    truth (see the module text) is added up in time.
    """
    import jax.numpy as jnp
    from diffmsm_ros.identify import offline
    import numpy as np

    problem = ident.problem
    win, grid = offline.session_window(recording, exc, emg_t, problem.template,
                                       ident.history, duration)
    wins = offline.split_windows(win, ident.fit_steps, ident.warmup_steps)
    z = np.asarray(problem.space.to_z(jnp.asarray(truth_theta)))
    ends, infos, total = [], [], 0.0
    for k, w in enumerate(wins):
        info = (problem.normal(z, [w])[0] if density is None
                else problem.envelope_information(z, [w], density))
        total = total + info
        infos.append(total)
        ends.append(grid[0] + (k + 1) * (ident.fit_steps - ident.warmup_steps) * ident.h
                    if k + 1 < len(wins) else grid[-1])
    ends = np.asarray(ends) - recording.joint_t[0]
    jac = np.asarray(problem._theta_jacobian(jnp.asarray(z)))

    def bound(t):
        k = max(0, min(int(np.searchsorted(ends, t + 1e-6)) - 1, len(infos) - 1))
        cov = np.linalg.pinv(infos[k], hermitian=True)
        std = np.sqrt(np.clip(np.diag(jac @ cov @ jac.T), 0, None))
        return 100 * std / np.abs(truth_theta)

    return bound


if __name__ == '__main__':
    sys.exit(main())
