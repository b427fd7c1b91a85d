"""
De Groote et al. (2016) smooth Hill-type curves (the ones OpenSim Moco uses).

Constants are the published ones.  Lengths are normalised by the optimal fibre length
(fibre) or the tendon slack length (tendon); velocities by the maximal fibre velocity.
"""

import jax.numpy as jnp

TENDON = (0.2, 0.995, 0.25, 33.93669377311689)
PASSIVE = (0.6, 4.0)
ACTIVE = (0.814, 1.06, 0.162, 0.0633, 0.433, 0.717, -0.0299, 0.2, 0.1, 1.0, 0.354, 0.0)
VELOCITY = (-0.318, -8.149, -0.374, 0.886)


def tendon_force_length(lt_norm):
    """Normalised tendon force from normalised tendon length."""
    c0, c1, c2, c3 = TENDON
    return c0 * jnp.exp(c3 * (lt_norm - c1)) - c2


def passive_force_length(lm_norm):
    """Normalised passive fibre force (0 at optimal length)."""
    c0, c1 = PASSIVE
    return (jnp.exp(c1 * (lm_norm - 1.0) / c0) - 1.0) / (jnp.exp(c1) - 1.0)


def active_force_length(lm_norm):
    """Sum of three Gaussians, 1 at the optimal length."""
    c = ACTIVE
    total = 0.0
    for k in range(3):
        b0, b1, b2, b3 = c[4 * k:4 * k + 4]
        width = b2 + b3 * lm_norm
        total = total + b0 * jnp.exp(-0.5 * ((lm_norm - b1) / width) ** 2)
    return total


def force_velocity(vm_norm):
    """Log-form force-velocity curve (1 at zero velocity, shortening negative)."""
    c0, c1, c2, c3 = VELOCITY
    z = c1 * vm_norm + c2
    return c0 * jnp.log(z + jnp.sqrt(z * z + 1.0)) + c3


def rigid_tendon_force(length, velocity, a, force, l_opt, l_slack, vmax, pennation, damping):
    """
    Fibre force along the tendon (N, negative pulls) for a rigid tendon.

    ``length``/``velocity`` are the muscle-tendon length (m) and its rate (m/s); ``vmax`` is in
    optimal fibre lengths per second, ``pennation`` the optimal pennation angle (rad),
    ``damping`` the normalised fibre damping.  Returns (force, normalised fibre velocity).
    """
    along = length - l_slack
    width = l_opt * jnp.sin(pennation)
    lm = jnp.sqrt(along * along + width * width)
    lm_norm = lm / l_opt
    vm = velocity * along / lm
    vm_norm = vm / (vmax * l_opt)
    f_norm = (a * active_force_length(lm_norm) * force_velocity(vm_norm)
              + passive_force_length(lm_norm) + damping * vm_norm)
    return -force * f_norm * jnp.cos(pennation), vm_norm
