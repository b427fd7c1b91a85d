"""
Identification of whole sessions: MuJoCo-simulated subjects, offline and online.

The hidden subject (``sessions.simulate``) is the elbow template with its muscle and bone
parameters 10 % off, simulated by MuJoCo wearing the exoskeleton.  One 60 s session is
simulated once and shared by the offline tests (their online replay included) and the
online test from a 30 % spread; ``bench/online_thirty.py`` runs that one over the whole
session, at real-time pace, and many seeds.
"""

import dataclasses

from diffmsm_ros import settings
from diffmsm_ros.files import modelfile
from diffmsm_ros.identify import offline, online, params, posterior
from diffmsm_ros.session import record, subjects
import numpy as np
import pytest
from sessions import (envelope_values, head, identify, muscle_errors, MUSCLE_FIELDS, rms,
                      SESSION, simulate, theta_errors)

EXO_OFF_SESSION = 15.0    # s, enough to show that the strength scale is not identifiable
ONLINE_SPAN = 20.0        # s of the session replayed by the online test
ONLINE_SEEDS = range(4)   # its 30 % starts: the first four draws
LET_GO_SPAN = 30.0        # s replayed from a belief sure of the template
RAW_DRAW = 5              # carrier draw of the raw-EMG test (25 % mean muscle error)
FATIGUE_SPAN = 120.0      # s of a fatiguing session replayed online
FATIGUE_COURSE = 600.0    # s: its strengths fall as over the first 2 min of a 10-min course
FATIGUE_DROP = 0.2        # of every strength by the end of that course
FATIGUE_SEEDS = (3, 4)    # the suite's session seed and the next
FATIGUE_MARKS = (60.0, 90.0, 120.0)   # s at which the 1-sigma are checked


@pytest.fixture(scope='module')
def exo_session(elbow, elbow_xml):
    """Run the 60 s exoskeleton session of the hidden subject in MuJoCo."""
    return simulate(elbow, elbow_xml, SESSION)


@pytest.fixture(scope='module')
def exo_identified(elbow, exo_session):
    """Identify the exoskeleton session offline from the unperturbed template."""
    return identify(elbow, exo_session[3])


@pytest.mark.slow
@pytest.mark.mujoco
def test_offline_mujoco_session_with_exo(elbow, exo_session, exo_identified):
    truth, _, run, _ = exo_session
    sf, history, _, seconds = exo_identified
    start_error = muscle_errors(elbow.model, truth.model).mean()
    err = muscle_errors(sf.model, truth.model)
    model = sf.model
    from diffmsm_ros.session.mujoco_sim import model_along_run
    torque, _ = model_along_run(model, run)
    torque_error = 100 * rms(torque - run.tau_muscle) / rms(run.tau_muscle)
    summary = (f'template error {start_error:.2f} %; muscle error mean {err.mean():.3f} %, '
               f'max {err.max():.3f} %; torque RMSE {torque_error:.3f} % of its RMS; '
               f'{sum(history.accepted)} of {len(history.accepted)} online updates accepted '
               f'({", ".join(sorted(set(history.reason)))}) in {seconds:.1f} s')
    assert start_error > 5.0, summary      # the template really is off
    assert np.all(np.isfinite(err)), summary
    assert err.mean() <= 1.0, summary
    assert torque_error <= 2.0, summary
    # the session is long enough to pin the strength scale: no such warning
    assert not any('strength scale' in w for w in sf.identification['warnings'])


def online_from(start, recording, span):
    """Replay the first ``span`` s through an OnlineIdentifier from ``start`` (30 s window)."""
    values = envelope_values(start.model)
    values.update({'identification.window': 30.0, 'identification.chunk': 10.0})
    ident = online.OnlineIdentifier(start, settings.identify_config(values))
    first = head(recording, span)
    excitations, emg_t = offline.excitations_from_recording(
        first, settings.emg_config(values), start.model.muscle_names)
    return ident, offline.replay(ident, first, excitations, 1.0, emg_t=emg_t)


@pytest.mark.slow
@pytest.mark.mujoco
def test_online_from_thirty_percent_spread_two_of_four_seeds_within_2_percent_by_20_s(
        exo_session):
    """
    Online from starts drawn with a 30 % spread: seeds 0-3 (the first four; all drawable).

    An update per second of data, each one finished before the next (the data time, not
    the machine's speed, decides what each sees).  Measured at 20 s (30 s): seeds 2 and 3
    within 0.4-0.8 % (0.2-0.3 %); seed 1's robust start lands in a wrong basin, 16 %
    (10 %); seed 0 sits on the edge of one: 0.47 % or 8.6-12.5 % (1.0 %) as rounding-level
    changes of the compiled code decide.  Seeds 4 and 5: 1.1 % and 11 % (0.5 %, 10 %).
    At real-time pace over 60 s and twelve seeds: ``bench/online_thirty.py``.
    """
    truth, _, _, recording = exo_session
    errors = []
    for seed in ONLINE_SEEDS:
        start = subjects.perturb(truth, 0.3, np.random.default_rng(seed))
        start_error = muscle_errors(start.model, truth.model).mean()
        ident, history = online_from(start, recording, ONLINE_SPAN)
        trajectory = [theta_errors(ident.problem.space, theta, truth.model).mean()
                      for theta in history.theta]
        assert start_error > 15.0, seed                       # a real 30 % spread
        assert history.time[-1] == pytest.approx(ONLINE_SPAN, abs=0.01), seed
        assert any(history.robust_start) and sum(history.accepted) >= 2, seed
        assert np.all(np.isfinite(trajectory)), seed
        assert trajectory[-1] < start_error, seed             # no seed made worse
        errors.append(trajectory[-1])
    assert sum(e <= 2.0 for e in errors) >= 2, errors


@pytest.mark.slow
@pytest.mark.mujoco
def test_a_belief_sure_of_the_wrong_model_is_let_go_of(elbow, exo_session):
    """
    The identifier starts from a carried belief sure of the template (1-sigma 0.5 %).

    The hidden subject is 10 % off: the first data contradict the belief far beyond its
    1-sigma, and it is widened along what they ask for (``posterior.let_go``).  Measured
    over the first 30 s: 4.6 % at 20 s, 3.2 % at 30 s; the belief kept as it was (checks
    off): 11.1 % and 8.4 %.
    """
    truth, _, _, recording = exo_session
    values = envelope_values(elbow.model)
    ident = online.OnlineIdentifier(elbow, settings.identify_config(values))
    sure = posterior.template(ident.problem.space.size, 0.005)
    ident.arrival = ident.good_arrival = ident.posterior = sure
    first = head(recording, LET_GO_SPAN)
    excitations, emg_t = offline.excitations_from_recording(
        first, settings.emg_config(values), elbow.model.muscle_names)
    history = offline.replay(ident, first, excitations, 1.0, emg_t=emg_t)
    start = muscle_errors(elbow.model, truth.model).mean()
    end = theta_errors(ident.problem.space, history.theta[-1], truth.model).mean()
    summary = f'{start:.2f} % -> {end:.2f} %, {ident.beliefs_let_go} beliefs widened'
    assert start > 5.0 and ident.beliefs_let_go >= 1, summary
    assert end <= 5.0, summary


@pytest.mark.slow
@pytest.mark.mujoco
def test_raw_emg_session_reports_what_the_envelope_leaves(elbow, exo_session):
    # raw EMG cannot pin the muscles to 5 %: the envelope noise's Cramer-Rao bound is a
    # mean 1-sigma of 33 % on this session (bench/raw_emg.py).  The model must say so, from
    # the noise the filter measures, and still predict torque far better than the template
    import jax.numpy as jnp
    from diffmsm_ros.emg.envelope import EnvelopeFilter
    from diffmsm_ros.session import raw_emg
    from diffmsm_ros.session.mujoco_sim import model_along_run
    truth, session, run, recording = exo_session
    raw, t = raw_emg.synthesize(session.t, session.u, record.RAW_RATE,
                                np.random.default_rng(RAW_DRAW), record.RAW_AMPLITUDE)
    values = envelope_values(elbow.model)
    mvc = raw_emg.calibrate_mvc(record.RAW_AMPLITUDE, record.RAW_RATE)
    values.update({'emg.kind': 'raw', 'emg.sample_rate': record.RAW_RATE,
                   'emg.mvc': [mvc] * elbow.model.n_muscles})
    raw_recording = dataclasses.replace(recording, emg_t=t, emg=raw)
    exc, exc_t, density = offline.excitations_from_recording(
        raw_recording, settings.emg_config(values), elbow.model.muscle_names, with_noise=True)
    idx = np.clip(np.searchsorted(session.t, exc_t) - 1, 0, len(session.t) - 1)
    late = slice(int(2 * record.RAW_RATE), None)
    actual = rms(exc[late] / session.u[idx][late] - 1.0)
    width = EnvelopeFilter(record.RAW_RATE, [1.0],
                           lowpass=values['emg.lowpass']).envelope_bandwidth
    measured = np.sqrt(np.mean(density) * width)
    ident = online.OnlineIdentifier(elbow, settings.identify_config(values))
    problem = ident.problem
    win, _ = offline.session_window(raw_recording, exc, exc_t, elbow.model, ident.history,
                                    SESSION)
    wins = offline.split_windows(win, ident.fit_steps, ident.warmup_steps)
    z, _ = problem.solve(np.zeros(problem.space.size), wins, restarts=1, bone_starts=(),
                         escapes=())
    hess, _, half, count, scores = problem.normal(z, wins)
    common = {'external_torque': online.external_torque_rms(wins), 'scores': scores}
    plain = problem.analyse(z, hess, half, count, **common)
    honest = problem.analyse(z, hess, half, count, wins=wins, envelope_noise=density, **common)
    theta = np.asarray(problem.theta_of(jnp.asarray(z)))
    err = theta_errors(problem.space, theta, truth.model)
    mask = problem.space.mask(lambda e: e.section == 'muscles' and e.field in MUSCLE_FIELDS)

    def beyond(analysis):
        sigma = 100 * np.asarray(analysis.std)[mask] / np.abs(theta[mask])
        return int(np.sum(err > 2 * sigma)), float(np.median(sigma))

    def torque_rmse(model):
        torque, _ = model_along_run(model, run)
        return 100 * rms(torque - run.tau_muscle) / rms(run.tau_muscle)

    fitted, template = torque_rmse(problem.model_of(jnp.asarray(z))), torque_rmse(elbow.model)
    summary = (f'envelope error {100 * measured:.2f} % measured, {100 * actual:.2f} % actual; '
               f'muscle error {err.mean():.1f} %; beyond 2 sigma (median 1-sigma): '
               f'{beyond(honest)} with the envelope noise, {beyond(plain)} without; torque '
               f'RMSE {fitted:.1f} % (template {template:.1f} %)')
    assert abs(measured / actual - 1.0) < 0.1, summary
    # without the envelope noise 10 of 18 muscle parameters sat beyond 2 sigma; with it
    # 5, as for most draws of bench/raw_emg.py (1-5): better, not calibrated (README)
    assert beyond(honest)[0] <= 6 and beyond(honest)[0] < beyond(plain)[0], summary
    assert beyond(honest)[1] > beyond(plain)[1], summary
    assert any('random error of the EMG envelope' in w for w in honest.warnings)
    assert any('lower bounds' in w for w in plain.warnings)
    assert fitted < 0.25 * template, summary


@pytest.mark.slow
@pytest.mark.mujoco
def test_offline_mujoco_session_exo_off_flags_strength(elbow, elbow_xml, tmp_path):
    truth, _, run, recording = simulate(elbow, elbow_xml, EXO_OFF_SESSION, exo_on=False)
    assert np.all(run.tau_exo == 0.0)
    sf, _, _, seconds = identify(elbow, recording)
    path = modelfile.save_atomic(sf, tmp_path / 'model.yaml')
    saved = modelfile.load(path)
    ident = saved.identification
    warnings = [w for w in ident['warnings'] if 'strength scale not identifiable' in w]
    forces = np.asarray(saved.model.muscles.max_isometric_force)
    true_forces = np.asarray(truth.model.muscles.max_isometric_force)
    sigma = np.array([saved.std['muscles'][name]['max_isometric_force']
                      for name in saved.model.muscle_names])
    relative = 100 * sigma / forces
    force_error = 100 * np.abs(forces - true_forces) / true_forces
    summary = (f'identified in {seconds:.1f} s: strength scale 1-sigma '
               f'{100 * ident["strength_scale_std"]:.1f} %, max_isometric_force 1-sigma '
               f'{relative.min():.2f}..{relative.max():.2f} %, error {force_error.min():.2f}..'
               f'{force_error.max():.2f} %; warnings {ident["warnings"]}')
    assert len(warnings) == 1, summary
    assert ident['strength_scale_std'] > 0.05, summary
    # honest uncertainty: every strength is reported as uncertain, and the truth is inside
    assert np.all(relative > 1.0), summary
    assert np.all(force_error <= 3 * relative), summary


@pytest.mark.slow
@pytest.mark.mujoco
@pytest.mark.parametrize('seed', FATIGUE_SEEDS)
def test_under_fatigue_the_1_sigma_covers_the_strength_now(elbow, elbow_xml, seed):
    """
    Online with memory, every strength falling (MuJoCo), the declared drift (2 %/sqrt min).

    A fit of constant strengths to data over which they fell estimates their mean over
    the data, a few seconds behind; the reported 1-sigma is about their value at the time
    of the update (``uncertainty.Walk``).  Measured on 10 min of this session (seed 3,
    ``bench/session.py``) before: at 1 and 2 min 8 and 7 of the 18 muscle parameters
    beyond 2 sigma of the truth then (strengths 1-sigma 0.11-0.13 %, errors 0.4 %).
    """
    from diffmsm_ros.session import mujoco_sim
    factor = mujoco_sim.fatigue(FATIGUE_COURSE, np.full(elbow.model.n_muscles, FATIGUE_DROP))
    truth, _, _, recording = simulate(elbow, elbow_xml, FATIGUE_SPAN, seed=seed,
                                      strength=factor)
    values = envelope_values(elbow.model)
    ident = online.OnlineIdentifier(elbow, settings.identify_config(values))
    excitations, emg_t = offline.excitations_from_recording(
        recording, settings.emg_config(values), elbow.model.muscle_names)
    history = offline.replay(ident, recording, excitations, ident.fit_span * ident.h,
                             emg_t=emg_t)
    space = ident.problem.space
    muscles = space.mask(lambda e: e.section == 'muscles' and e.field in MUSCLE_FIELDS)
    strengths = space.mask(lambda e: e.field == 'max_isometric_force')
    base = params.values(truth.model, space)
    times = np.asarray(history.time)
    for mark in FATIGUE_MARKS:
        k = min(int(np.searchsorted(times, mark - 1e-6)), len(times) - 1)
        target = base.copy()
        target[strengths] *= factor(times[k])
        theta, std = np.asarray(history.theta[k]), np.asarray(history.std[k])
        outside = int(np.sum((np.abs(theta - target) > 2 * std)[muscles]))
        error = 100 * np.abs(theta - target)[strengths] / target[strengths]
        sigma = 100 * std[strengths] / np.abs(theta[strengths])
        summary = (f'seed {seed}, {times[k]:.1f} s: {outside} of {int(muscles.sum())} '
                   f'beyond 2 sigma; strengths {error.mean():.2f} % off, median 1-sigma '
                   f'{np.median(sigma):.2f} %')
        assert abs(times[k] - mark) < 10.0, summary
        assert outside <= 1, summary
        # honest, and still informative: the strengths within about a per cent
        assert error.mean() < 1.0 and np.median(sigma) < 2.0, summary
    # the model file says by how much the drift widened the most-widened 1-sigma
    saved = ident.current_file().identification
    assert saved['sigma_drift_widening'] == ident.last_analysis.drift_widening > 2.0
