"""
First-order activation dynamics: excitation u in [0, 1] drives activation a.

Rates are in 1/s; time constants in s.
"""

from diffmsm_ros.model.curves_mujoco import MIN_VAL
import jax.numpy as jnp


def _quintic_sigmoid(x):
    """Smooth step as in MuJoCo: 0 below 0, 1 above 1, 6x^5 - 15x^4 + 10x^3 between."""
    xc = jnp.clip(x, 0.0, 1.0)
    return xc * xc * xc * (xc * (6.0 * xc - 15.0) + 10.0)


def mujoco_activation_rate(u, a, tau_act, tau_deact, smoothing_width=0.0):
    """
    Equivalent of ``mju_muscleDynamics``: da/dt in 1/s.

    The time constant is tau_act*(0.5 + 1.5a) when u > a and tau_deact/(0.5 + 1.5a)
    otherwise (a clipped to [0, 1] inside the scaling); ``smoothing_width`` > 0 blends the
    two with MuJoCo's quintic sigmoid over that width of u - a.
    """
    u_c = jnp.clip(u, 0.0, 1.0)
    a_c = jnp.clip(a, 0.0, 1.0)
    t_act = tau_act * (0.5 + 1.5 * a_c)
    t_deact = tau_deact / (0.5 + 1.5 * a_c)
    du = u_c - a
    hard = jnp.where(du > 0.0, t_act, t_deact)
    width = jnp.maximum(smoothing_width, MIN_VAL)
    blended = t_deact + (t_act - t_deact) * _quintic_sigmoid(du / width + 0.5)
    tau = jnp.where(smoothing_width < MIN_VAL, hard, blended)
    return du / jnp.maximum(MIN_VAL, tau)


def degroote_activation_rate(u, a, tau_act, tau_deact, smoothness=10.0):
    """De Groote et al. (2016) smooth first-order activation dynamics, da/dt in 1/s."""
    f = 0.5 * jnp.tanh(smoothness * (u - a)) + 0.5
    scale = 0.5 + 1.5 * a
    return (f / (tau_act * scale) + (1.0 - f) * scale / tau_deact) * (u - a)
