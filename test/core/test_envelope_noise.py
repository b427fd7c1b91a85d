"""Raw EMG: the envelope filter's noise measurement and the information it leaves."""

import dataclasses

from diffmsm_ros.emg.envelope import EnvelopeFilter
from diffmsm_ros.identify import envelope_information
from diffmsm_ros.identify.problem import IdentifyConfig, Problem
from diffmsm_ros.session import raw_emg, synth
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sessions import balanced_window

RATE = 2000.0


def _envelope_error(band, seed):
    """Measured S0, envelope bandwidth, and the envelope's actual relative error variance."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, 40.0, 0.001)
    u = 0.05 + 0.4 * (0.5 + 0.5 * synth.smooth_noise(t, 3, 0.1, 2.0, rng))
    raw, t_raw = raw_emg.synthesize(t, u, RATE, rng, 1e-3, band=band)
    filt = EnvelopeFilter(RATE, [1e-3] * 3)
    # odd chunks, as a node receives them; the estimate is streamed
    env = np.vstack([filt.process(raw[i:i + 37]) for i in range(0, len(raw), 37)])
    idx = np.clip(np.searchsorted(t, t_raw - filt.delay) - 1, 0, len(t) - 1)
    gain = np.mean(env[4000:], axis=0) / np.mean(u[idx][4000:], axis=0)
    rel = env[4000:] / (gain * u[idx][4000:]) - 1.0
    return filt.noise_density, filt.envelope_bandwidth, rel.var(axis=0)


@pytest.mark.parametrize('band, low, high', [((20.0, 450.0), 0.85, 1.15),
                                             ((20.0, 150.0), 0.7, 1.1)])
def test_envelope_noise_density_predicts_the_envelope_error(band, low, high):
    # a narrower EMG band means fewer independent carrier cycles and a noisier envelope;
    # the filter measures it from the rectified signal, without knowing the band.  A
    # narrow carrier's rectified spectrum already falls inside the measuring band, so its
    # noise variance reads about 20 % low, 10 % in RMS (documented in the README)
    density, width, actual = _envelope_error(band, 3)
    predicted = density * width
    ratio = np.mean(predicted) / np.mean(actual)
    assert low < ratio < high
    assert np.all(predicted < 1.35 * actual) and np.all(predicted > 0.65 * actual)


def test_envelope_noise_is_unknown_without_enough_carrier():
    filt = EnvelopeFilter(RATE, [1e-3, 1e-3])
    rng = np.random.default_rng(0)
    raw = np.column_stack([1e-3 * rng.standard_normal(int(1.5 * RATE)),
                           np.zeros(int(1.5 * RATE))])
    filt.process(raw)
    assert np.all(np.isnan(filt.noise_density))          # 1.5 s: not yet
    filt.process(np.column_stack([1e-3 * rng.standard_normal(int(3 * RATE)),
                                  np.zeros(int(3 * RATE))]))
    density = filt.noise_density
    assert np.isfinite(density[0]) and density[0] > 0
    assert np.isnan(density[1])                          # a silent channel has no carrier


def test_envelope_information_matches_the_spread_of_estimates(elbow):
    # activations with a random relative error of known density: the Fisher information
    # must predict the spread of the best linear estimate of the muscle strengths
    density = 1e-4
    problem = Problem(elbow, IdentifyConfig(
        window=4.0, holdout=0.5, parameters={'muscles': ['max_isometric_force']}))
    model = elbow.model
    h = model.timestep
    rng = np.random.default_rng(4)
    # the exo torque balances the equation exactly without noise
    win, qdd = balanced_window(model, 4.0, rng, 0.2, 0.3)
    emg = np.asarray(win.emg)
    stride = 4
    z0 = jnp.zeros(problem.space.size)
    densities = np.full(model.n_muscles, density)
    info = np.asarray(envelope_information.information(problem.model_at, z0, win, qdd,
                                                       densities, stride))

    def error(zz, e):
        w = dataclasses.replace(win, emg=e)
        return envelope_information.equation_parts(problem.model_at(zz), w, qdd, stride)

    jac, active = jax.jacfwd(lambda zz: error(zz, emg), has_aux=True)(z0)
    jac = np.asarray(jac)[:, 0, :]
    weight = 1.0 / (density * np.sum(np.asarray(active)[:, 0, :] ** 2, axis=1))
    normal = (jac * weight[:, None]).T @ jac
    noisy_error = jax.jit(lambda e: error(z0, e)[0][:, 0])
    estimates = []
    for _ in range(300):
        # white excitation noise of one-sided density S0 at the model rate
        eta = rng.normal(0.0, np.sqrt(density / (2 * h)), emg.shape)
        r = np.asarray(noisy_error(np.clip(emg * (1 + eta), 0, 1)))
        estimates.append(-np.linalg.solve(normal, (jac * weight[:, None]).T @ r))
    spread = np.var(estimates, axis=0)
    bound = np.diag(np.linalg.inv(info))
    np.testing.assert_allclose(spread / bound, 1.0, rtol=0.3)


def test_node_diagnostics_report_the_envelope_error():
    from diffmsm_ros.nodes.diagnostics import _envelope_error_stats
    assert _envelope_error_stats(None) == {}
    filt = EnvelopeFilter(RATE, [1e-3, 1e-3])
    assert np.isnan(_envelope_error_stats(filt)['emg_envelope_error_pct_max'])
    rng = np.random.default_rng(1)
    t = np.arange(0.0, 10.0, 0.001)
    raw, _ = raw_emg.synthesize(t, np.full((len(t), 2), 0.3), RATE, rng, 1e-3)
    filt.process(raw)
    stats = _envelope_error_stats(filt)
    # a 20-450 Hz carrier through the default 6 Hz low-pass: about 9 % (README)
    assert 7.5 < stats['emg_envelope_error_pct_median'] <= stats['emg_envelope_error_pct_max']
    assert stats['emg_envelope_error_pct_max'] < 11.0


@pytest.mark.parametrize('seed', range(3))
def test_four_electrodes_per_muscle_halve_the_envelope_error(seed):
    """emg.channels naming a muscle four times: one excitation, half the random error."""
    from diffmsm_ros import settings
    from diffmsm_ros.emg.intake import EmgIntake
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, 30.0, 0.001)
    u = 0.05 + 0.4 * (0.5 + 0.5 * synth.smooth_noise(t, 1, 0.1, 2.0, rng))
    # the same excitation, carried by four independent carriers
    raws = [raw_emg.synthesize(t, u, RATE, rng, 1e-3)[0] for _ in range(4)]
    t_raw = raw_emg.synthesize(t, u, RATE, rng, 1e-3)[1]
    values = dict(settings.defaults(), **{'emg.kind': 'raw', 'emg.sample_rate': RATE,
                                          'emg.mvc': [1e-3] * 5})
    config = settings.emg_config(values)
    one = EmgIntake(dataclasses.replace(config, channels=('m', 'm', 'm', 'm', 'n')), ['m', 'n'])
    single = EmgIntake(dataclasses.replace(config, channels=('m', 'n'), mvc=(1e-3,) * 2),
                       ['m', 'n'])
    four = np.column_stack(raws + [raws[0][:, :1]])
    both = [(one, four), (single, np.column_stack([raws[0], raws[1]]))]
    errors, densities = [], []
    for intake, raw in both:
        exc = np.vstack([intake.excitations(raw[i:i + 40]) for i in range(0, len(raw), 40)])
        idx = np.clip(np.searchsorted(t, t_raw - intake.lag) - 1, 0, len(t) - 1)
        truth = u[idx, 0]
        gain = np.mean(exc[4000:, 0]) / np.mean(truth[4000:])
        errors.append(np.std(exc[4000:, 0] / (gain * truth[4000:]) - 1.0))
        densities.append(intake.noise_density[0])
    ratio = errors[0] / errors[1]
    assert 0.4 < ratio < 0.6, ratio                        # sqrt(1/4) = 0.5
    assert 0.2 < densities[0] / densities[1] < 0.3         # the reading: a quarter
