"""Gradients of a 1000-step rollout with respect to every parameter, against finite differences."""

from diffmsm_ros.identify import excitation, params
from diffmsm_ros.model import integrators, sensitivity
from diffmsm_ros.model.dynamics import Inputs, State
from diffmsm_ros.session import synth
import jax
import jax.numpy as jnp
import numpy as np
import pytest

DIRECTIONS = 3    # random directions of the JVP check
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


def test_motion_rollout_derivatives_equal_the_plain_rollouts(arm):
    """The hand-written JVP of the identifier's rollout against JAX's own, both modes."""
    model = arm.model
    space = params.make_space(model, arm.bounds, SELECTION)
    steps, h = 60, model.timestep
    t = np.arange(steps) * h
    rng = np.random.default_rng(3)
    u = jnp.asarray(synth.excitations(model, t, rng))
    tau = jnp.asarray(np.stack([np.sin(3 * t), np.cos(2 * t)], 1))
    q0, qd0 = jnp.array([0.8, 1.2]), jnp.array([0.3, -0.5])

    def plain(z, off):
        m = params.apply(model, space, space.from_z(z))
        s = integrators.rollout(m, State(q0 + off[:2], qd0 + off[2:4], u[0]),
                                Inputs(u * (1 + off[4]), tau), h)
        return jnp.concatenate([s.q, s.qd], 1)

    def ours(z, off):
        m = params.apply(model, space, space.from_z(z))
        a = excitation.activations(m, u * (1 + off[4]), h, 'euler', a0=u[0])
        x0 = jnp.concatenate([q0 + off[:2], qd0 + off[2:4]])
        return sensitivity.motion_rollout(m, x0, a, tau, h)

    z = jnp.asarray(0.05 * rng.normal(size=space.size))
    off = jnp.asarray([1e-3, -2e-3, 0.01, 0.02, 0.05])
    # random directions in (z, off), then as many in z alone: one compiled JVP per rollout
    # checks the values and the derivatives along each (a wrong derivative of any
    # coordinate shows in a random direction; the full Jacobians took minutes to compile)
    dz = jnp.asarray(rng.normal(size=(2 * DIRECTIONS, space.size)))
    doff = jnp.asarray(np.concatenate([rng.normal(size=(DIRECTIONS, 5)) * [
        1e-3, 1e-3, 1e-2, 1e-2, 1e-2], np.zeros((DIRECTIONS, 5))]))

    def along(f):
        return jax.jit(jax.vmap(lambda a, b: jax.jvp(f, (z, off), (a, b))))(dz, doff)

    (x_ours, t_ours), (x_plain, t_plain) = along(ours), along(plain)
    np.testing.assert_allclose(x_ours[0], x_plain[0], rtol=0, atol=1e-12)
    for a, b in zip(t_ours, t_plain):
        assert np.max(np.abs(b)) > 1e-3   # not vacuous
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9 * np.max(np.abs(b)))
    # reverse mode (the Adam baseline) through the hand-written JVP: the derivative of
    # sum(x^2) along a z direction is 2 <x, dx> of the plain rollout
    g_ours = jax.jit(jax.grad(lambda zz: jnp.sum(ours(zz, off) ** 2)))(z)
    want = 2 * np.einsum('ti,dti->d', np.asarray(x_plain[0]),
                         np.asarray(t_plain[DIRECTIONS:]))
    np.testing.assert_allclose(np.asarray(dz[DIRECTIONS:]) @ np.asarray(g_ours), want,
                               rtol=1e-9)
