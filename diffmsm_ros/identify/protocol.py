"""
The accuracy protocol of the Diff-MSM paper, and how bone parameters are scored.

Initial guesses are drawn per parameter from N(theta*, (spread theta*)^2) around the truth;
each is identified (robust start on the equation error, then multiple shooting) with the
prior centred on the guess, and the mean absolute percentage error over the
muscle parameters is reported.  Bone parameters are scored as what motion determines: the
joint-space inertia M(q) and the gravity torque over the joint ranges.
"""

import dataclasses
import time

from diffmsm_ros.identify import params
from diffmsm_ros.model import skeleton
import jax
import jax.numpy as jnp
import numpy as np

NOISE_FREE_LEVEL = 1e-4   # mean squared residual (sigma_q units) that ends the multi-start


@dataclasses.dataclass
class Trial:
    seed: int
    muscle_mape: float        # % over muscle parameters
    muscle_max: float         # % worst muscle parameter
    inertia_error: float      # % RMS of M(q) over the range
    gravity_error: float      # % RMS of the gravity torque over the range
    start_mape: float         # % of the initial guess
    seconds: float
    iterations: int


def config_grid(model, count=9):
    """Joint configurations spanning each joint's range, [K, nq]."""
    rng = np.asarray(model.skeleton.joint_range)
    axes = [np.linspace(lo, hi, count) for lo, hi in rng]
    return np.stack(np.meshgrid(*axes, indexing='ij'), -1).reshape(-1, len(axes))


def bone_errors(model, truth):
    """Relative RMS errors (%) of M(q) and of the gravity torque over the joint ranges."""
    qs = jnp.asarray(config_grid(truth))

    def both(m):
        mass = jax.vmap(lambda q: skeleton.mass_matrix(m.skeleton, q))(qs)
        grav = jax.vmap(lambda q: skeleton.gravity_torque(m.skeleton, q))(qs)
        return np.asarray(mass), np.asarray(grav)

    m_est, g_est = both(model)
    m_true, g_true = both(truth)

    def rel(a, b):
        return 100.0 * float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b ** 2)))

    return rel(m_est, m_true), rel(g_est, g_true)


def muscle_errors(space, theta, theta_true):
    """Absolute percentage errors of the muscle entries."""
    mask = space.mask(lambda e: e.section == 'muscles')
    return 100.0 * np.abs(theta[mask] - theta_true[mask]) / np.abs(theta_true[mask])


def run(problem, win, spread, seeds, iterations=None):
    """Identify from ``len(seeds)`` guesses around the problem's template (the truth)."""
    space = problem.space
    truth = problem.template
    theta_true = params.values(truth, space)
    trials = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        theta0 = theta_true * (1.0 + spread * rng.standard_normal(space.size))
        z0 = np.clip(np.asarray(space.to_z(theta0)), space.lower, space.upper)
        started = time.monotonic()
        z, costs = problem.solve(z0, win, prior=z0, iterations=iterations,
                                 noise_level=NOISE_FREE_LEVEL)
        seconds = time.monotonic() - started
        theta = np.asarray(space.from_z(z))
        errs = muscle_errors(space, theta, theta_true)
        start = muscle_errors(space, np.asarray(space.from_z(z0)), theta_true)
        inertia, gravity = bone_errors(problem.model_at(z), truth)
        trials.append(Trial(seed, float(errs.mean()), float(errs.max()), inertia, gravity,
                            float(start.mean()), seconds, len(costs) - 1))
    return trials
