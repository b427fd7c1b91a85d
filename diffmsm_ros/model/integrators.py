"""Discrete-time steps and ``lax.scan`` rollouts.  Inputs are held over a step (s)."""

from diffmsm_ros.model.dynamics import activation_rate, joint_acceleration, motion_terms, State
import jax
import jax.numpy as jnp


def euler_step(model, state, inputs, h):
    """
    Step like MuJoCo's default integrator: semi-implicit Euler, implicit damping.

    (M + h D) qdd = f, qd+ = qd + h qdd, q+ = q + h qd+, a+ = a + h da/dt.
    """
    qdd = jnp.linalg.solve(*motion_terms(model, state, inputs, h))
    qd = state.qd + h * qdd
    return State(state.q + h * qd, qd, state.a + h * activation_rate(model, inputs.u, state.a))


def _derivative(model, state, inputs):
    qdd = joint_acceleration(model, state, inputs)
    return State(state.qd, qdd, activation_rate(model, inputs.u, state.a))


def rk4_step(model, state, inputs, h):
    """Classic fourth-order Runge-Kutta with damping explicit."""
    def shifted(k, scale):
        return jax.tree_util.tree_map(lambda s, d: s + scale * d, state, k)

    k1 = _derivative(model, state, inputs)
    k2 = _derivative(model, shifted(k1, 0.5 * h), inputs)
    k3 = _derivative(model, shifted(k2, 0.5 * h), inputs)
    k4 = _derivative(model, shifted(k3, h), inputs)
    return jax.tree_util.tree_map(
        lambda s, d1, d2, d3, d4: s + h / 6.0 * (d1 + 2 * d2 + 2 * d3 + d4),
        state, k1, k2, k3, k4)


STEPS = {'euler': euler_step, 'rk4': rk4_step}


def rollout(model, state0, inputs, h=None, method='euler'):
    """States after each of the T steps driven by ``inputs`` (leaves [T, ...])."""
    step = STEPS[method]
    h = model.timestep if h is None else h

    def body(state, inp):
        nxt = step(model, state, inp, h)
        return nxt, nxt

    _, states = jax.lax.scan(body, state0, inputs)
    return states
