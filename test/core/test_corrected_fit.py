"""Raw EMG: the equation-error objective corrected for the envelope's error (corrected.py)."""

import dataclasses

from diffmsm_ros.identify import corrected
from diffmsm_ros.identify.problem import IdentifyConfig, Problem
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal
from sessions import balanced_window

SEEDS = range(3)
DENSITY = 1.3e-3      # 1/Hz: a 20-450 Hz carrier through the 6 Hz low-pass (about 9 % RMS)
LOWPASS = 6.0
DRAWS = 150
STRIDE = 4


@pytest.fixture(scope='module')
def setting(elbow):
    """Build a 6 s movement whose exo torque balances the equation with the clean EMG."""
    problem = Problem(elbow, IdentifyConfig(window=6.0, holdout=0.5))
    win, qdd = balanced_window(elbow.model, 6.0, np.random.default_rng(7), 0.1, 0.3)
    return problem, win, qdd


def _noisy(emg, h, rng):
    """Return the EMG times (1 + eta), eta of DENSITY through the envelope low-pass."""
    sos = signal.butter(2, LOWPASS, fs=1.0 / h, output='sos')
    eta = signal.sosfilt(sos, rng.normal(0.0, np.sqrt(DENSITY / (2 * h)), emg.shape), axis=0)
    return emg * (1.0 + eta)


@pytest.mark.parametrize('seed', SEEDS)
def test_corrected_objective_is_unbiased_where_the_plain_one_is_not(setting, seed):
    # at parameters away from the truth (strengths and lengths off by up to 5 %), the mean
    # over noise draws of the corrected objective is close to the noise-free one; the plain
    # objective is off by the noise's share, which is what biases its minimum
    problem, win, qdd = setting
    rng = np.random.default_rng(seed)
    muscles = problem.space.mask(lambda e: e.section == 'muscles')
    z = jnp.asarray(np.where(muscles, rng.uniform(-0.05, 0.05, problem.space.size), 0.0))
    density = jnp.full(problem.template.n_muscles, DENSITY)
    scale = corrected.whitening(problem.model_at(z), win, qdd, density, STRIDE)
    variance = corrected.activation_variance(problem.model_at(z), [win], density, LOWPASS)
    # the activation's low-pass shrinks the envelope's error, it does not remove it
    envelope = DENSITY * 6.66
    assert np.all((0.3 * envelope < variance) & (variance < envelope))
    c = jnp.asarray(variance / (1.0 + variance))

    @jax.jit
    def both(emg):
        w = dataclasses.replace(win, emg=emg)
        return (corrected.objective(problem.model_at, z, w, qdd, scale, c, STRIDE),
                corrected.objective(problem.model_at, z, w, qdd, scale, 0.0 * c, STRIDE))

    clean = float(both(win.emg)[1])
    emg = np.asarray(win.emg)
    draws = np.array([[float(v) for v in both(jnp.asarray(_noisy(emg, win.h, rng)))]
                      for _ in range(DRAWS)])
    fixed, plain = draws.mean(axis=0)
    spread = draws[:, 0].std() / np.sqrt(DRAWS)
    assert plain - clean > 10 * spread                       # the plain one is biased
    # most of the noise's share is gone: measured -30 %, -3 % and +3 % of it left on these
    # draws.  One variance per muscle leaves out that the activation's relative error varies
    # with its level and direction, and its mean (+1.6 % on a MuJoCo session)
    assert abs(fixed - clean) < 0.5 * (plain - clean) + 4 * spread
