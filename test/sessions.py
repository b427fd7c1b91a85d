"""
Shared helpers of the session tests and benchmarks: MuJoCo-simulated hidden subjects.

The hidden subject is the elbow template with its muscle and bone parameters 10 % off;
MuJoCo (not our own model) simulates it wearing the exoskeleton (or not), with encoder
noise and envelope EMG; ``identify`` runs the offline pipeline of ``diffmsm identify``.
"""

import dataclasses
import time

from diffmsm_ros import settings
from diffmsm_ros.identify import offline, params
from diffmsm_ros.session import record, subjects, synth
import numpy as np

MUSCLE_FIELDS = ('max_isometric_force', 'optimal_fiber_length', 'tendon_slack_length')
ENCODER_NOISE = 1e-4      # rad
SESSION = 60.0            # s, the exoskeleton session the tests and benchmarks share


def muscle_errors(model, truth):
    """Absolute % errors of the muscle parameters [field, muscle] against ``truth``."""
    return np.array([100 * np.abs(np.asarray(getattr(model.muscles, f)) - np.asarray(
        getattr(truth.muscles, f))) / np.abs(np.asarray(getattr(truth.muscles, f)))
        for f in MUSCLE_FIELDS])


def within_two_sigma(subject_file, truth):
    """
    (inside, counted): muscle parameters of a model file within 2 of its 1-sigma of ``truth``.

    Counted are those of ``MUSCLE_FIELDS`` that carry a 1-sigma (``SubjectFile.std``).
    """
    inside = counted = 0
    model, std = subject_file.model, subject_file.std.get('muscles', {})
    for m, name in enumerate(model.muscle_names):
        for field in MUSCLE_FIELDS:
            sigma = std.get(name, {}).get(field)
            if sigma is None:
                continue
            got = np.asarray(getattr(model.muscles, field))[m]
            want = np.asarray(getattr(truth.muscles, field))[m]
            counted += 1
            inside += int(abs(got - want) <= 2.0 * float(sigma))
    return inside, counted


def theta_errors(space, theta, truth):
    """Absolute % errors of the muscle entries of ``theta`` (parameter space order)."""
    mask = space.mask(lambda e: e.section == 'muscles' and e.field in MUSCLE_FIELDS)
    truth_theta = params.values(truth, space)
    return 100 * np.abs(np.asarray(theta) - truth_theta)[mask] / np.abs(truth_theta[mask])


def rms(x, axis=None):
    """Root mean square of x, over all of it or along ``axis``."""
    return np.sqrt(np.mean(np.square(x), axis=axis))


def true_torque(session, stamps):
    """Return MuJoCo's muscle torque at the stamps (ns) on its steps (and which those are)."""
    t = (np.asarray(stamps) - record.T0_NS) * 1e-9
    h = session.t[1] - session.t[0]
    k = np.round(t / h).astype(int)
    on = np.abs(t - k * h) < 1e-7
    return np.asarray(session.tau_mus)[k[on], 0], on


def relative_rmse(got, session, skip=0.5):
    """RMSE of torques {stamp ns: torque} against MuJoCo's, % of its RMS, after ``skip`` s."""
    stamps = np.array(sorted(got))
    keep = stamps >= record.T0_NS + skip * 1e9
    true, on = true_torque(session, stamps[keep])
    est = np.array([got[s][0] for s in stamps[keep][on]])
    return 100 * rms(est - true) / rms(np.asarray(session.tau_mus)[:, 0])


def envelope_values(model):
    """Return node settings for envelope EMG at the model rate (the recordings below)."""
    values = settings.defaults()
    values['emg.sample_rate'] = 1.0 / model.timestep
    return values


def simulate(elbow, elbow_xml, duration, exo_on=True, seed=3, strength=None):
    """
    Return the hidden subject, its MuJoCo session and run, and its recording.

    ``seed`` draws the session (its excitations and encoder noise); ``strength(t)``
    (``mujoco_sim.fatigue``) scales the muscles' maximum forces over it.
    """
    from diffmsm_ros.session import mujoco_sim
    truth = subjects.perturb(elbow, 0.1, np.random.default_rng(11))
    session, run = mujoco_sim.simulate_session(
        elbow_xml, elbow, truth, duration, seed, noise=ENCODER_NOISE,
        controller=synth.ExoController(exo_on=exo_on), strength=strength)
    assert np.all(np.isfinite(session.q))
    recording = record.recording_from_session(session, with_velocity=False)
    assert np.all(np.isnan(recording.velocity))
    return truth, session, run, recording


def identify(template, recording):
    started = time.monotonic()
    values = envelope_values(template.model)
    sf, history, info = offline.identify_recording(
        template, recording, settings.identify_config(values), settings.emg_config(values))
    return sf, history, info, time.monotonic() - started


def head(recording, seconds):
    """Return the first ``seconds`` of a recording."""
    j = recording.joint_t <= recording.joint_t[0] + seconds
    e = recording.emg_t <= recording.emg_t[0] + seconds
    return dataclasses.replace(recording, joint_t=recording.joint_t[j],
                               position=recording.position[j], velocity=recording.velocity[j],
                               effort=recording.effort[j], emg_t=recording.emg_t[e],
                               emg=recording.emg[e])


def balanced_window(model, seconds, rng, base, spread, history=100):
    """
    Return (window, qdd): a 0.5 Hz swing whose exo torque balances the equation exactly.

    The EMG is smooth noise in [base, base + spread]; without noise added to it, the
    equation error of ``model`` is zero at every sample.
    """
    import jax.numpy as jnp
    from diffmsm_ros.identify import envelope_information
    from diffmsm_ros.identify.window import from_arrays
    h = model.timestep
    steps = int(seconds / h)
    t = np.arange(steps) * h
    lo, hi = np.asarray(model.skeleton.joint_range)[0]
    mid, amp = 0.5 * (lo + hi), 0.3 * (hi - lo)
    q = (mid + amp * np.sin(2 * np.pi * 0.5 * t))[:, None]
    qd = (amp * np.pi * np.cos(2 * np.pi * 0.5 * t))[:, None]
    qdd = jnp.asarray((-amp * np.pi ** 2 * np.sin(2 * np.pi * 0.5 * t))[:, None])
    t_emg = np.arange(steps + history) * h
    emg = base + spread * (0.5 + 0.5 * synth.smooth_noise(t_emg, model.n_muscles, 0.1, 1.0,
                                                          rng))
    err0, _ = envelope_information.equation_parts(
        model, from_arrays(q, np.zeros_like(q), emg, h, qd=qd, history=history), qdd, 1)
    return from_arrays(q, -np.asarray(err0), emg, h, qd=qd, history=history), qdd


def raw_session(template, seed, duration, perturb=0.15):
    """Return (truth, Recording) of a simulated raw-EMG session, the subject ``perturb`` off."""
    from diffmsm_ros.files import bags
    from diffmsm_ros.session import raw_emg
    rng = np.random.default_rng(seed)
    truth = subjects.perturb(template, perturb, rng)
    session = synth.simulate(truth.model, template.model, duration, seed)
    raw, t = raw_emg.synthesize(session.t, session.u, record.RAW_RATE, rng,
                                record.RAW_AMPLITUDE)
    recording = bags.Recording(joint_t=session.t, position=session.q, velocity=session.qd,
                               effort=session.tau_exo, emg_t=t, emg=raw)
    return truth, recording
