"""Gradients of a 1000-step rollout with respect to every parameter, against finite differences."""

from diffmsm_ros.identify import params
from diffmsm_ros.model import integrators
from diffmsm_ros.model.dynamics import Inputs, State
from diffmsm_ros.session import synth
import jax
import jax.numpy as jnp
import numpy as np
import pytest

SELECTION = {
    'muscles': ['max_isometric_force', 'optimal_fiber_length', 'tendon_slack_length',
                'tau_act', 'tau_deact'],
    'segments': ['mass', 'com', 'inertia'],
    'joints': ['damping', 'armature'],
}


@pytest.mark.parametrize('method', ['euler', 'rk4'])
def test_rollout_gradient_matches_central_differences(elbow, method):
    model = elbow.model
    space = params.make_space(model, elbow.bounds, SELECTION)
    steps = 1000
    t = np.arange(steps) * model.timestep
    rng = np.random.default_rng(7)
    u = jnp.asarray(synth.excitations(model, t, rng))
    tau = jnp.asarray(2.0 * np.sin(2.0 * t)[:, None] + 1.0)
    state0 = State(jnp.array([1.0]), jnp.array([0.0]), u[0])
    weights = jnp.asarray(rng.uniform(0.5, 1.5, steps))

    def loss(z):
        m = params.apply(model, space, space.from_z(z))
        states = integrators.rollout(m, state0, Inputs(u, tau), method=method)
        return jnp.sum(weights * (states.q[:, 0] - 1.0) ** 2) + jnp.sum(states.qd[:, 0] ** 2)

    f = jax.jit(loss)
    z0 = jnp.zeros(space.size)
    grad = np.asarray(jax.jit(jax.grad(loss))(z0))
    eps = 1e-6
    fd = np.array([(f(z0.at[k].set(eps)) - f(z0.at[k].set(-eps))) / (2 * eps)
                   for k in range(space.size)])
    scale = np.max(np.abs(fd))
    err = np.abs(grad - fd)
    assert space.size == 6 * 5 + 10 + 2
    assert np.all(err <= 1e-5 * scale + 1e-6 * np.abs(fd)), dict(zip(space.labels(), err))
    # most parameters matter: the check is not vacuous
    assert np.sum(np.abs(fd) > 1e-6 * scale) >= space.size - 6
