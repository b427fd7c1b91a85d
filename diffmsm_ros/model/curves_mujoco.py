"""
MuJoCo's muscle curves: active force-length, force-velocity and passive force.

All functions are element-wise over arrays and written with ``jnp.where`` so they trace
under ``jit``/``grad``.  Lengths are normalised by the optimal fibre length (dimensionless),
velocities by ``L0 * vmax``.  Forces follow MuJoCo's sign: negative pulls.
"""

import jax.numpy as jnp

# MuJoCo guards every division with this floor (mjMINVAL).
MIN_VAL = 1e-15


def _safe(x):
    return jnp.maximum(MIN_VAL, x)


def active_force_length(length, lmin, lmax):
    """Piecewise-quadratic bump: 0 outside [lmin, lmax], 1 at length 1."""
    a = 0.5 * (lmin + 1.0)
    b = 0.5 * (1.0 + lmax)
    x1 = (length - lmin) / _safe(a - lmin)
    x2 = (1.0 - length) / _safe(1.0 - a)
    x3 = (length - 1.0) / _safe(b - 1.0)
    x4 = (lmax - length) / _safe(lmax - b)
    value = jnp.where(
        length <= a, 0.5 * x1 * x1,
        jnp.where(length <= 1.0, 1.0 - 0.5 * x2 * x2,
                  jnp.where(length <= b, 1.0 - 0.5 * x3 * x3, 0.5 * x4 * x4)))
    inside = (length >= lmin) & (length <= lmax)
    return jnp.where(inside, value, 0.0)


def force_velocity(velocity, fvmax):
    """0 below -1, quadratic rise to 1 at 0, quadratic to fvmax at fvmax - 1, then flat."""
    y = fvmax - 1.0
    shortening = (velocity + 1.0) ** 2
    lengthening = fvmax - (y - velocity) ** 2 / _safe(y)
    return jnp.where(
        velocity <= -1.0, 0.0,
        jnp.where(velocity <= 0.0, shortening,
                  jnp.where(velocity <= y, lengthening, fvmax)))


def passive_force(length, lmax, fpmax):
    """Half-quadratic from 1 to b = (1 + lmax)/2, linear beyond, reaching fpmax/2 at b."""
    b = 0.5 * (1.0 + lmax)
    x = (length - 1.0) / _safe(b - 1.0)
    xb = (length - b) / _safe(b - 1.0)
    return jnp.where(
        length <= 1.0, 0.0,
        jnp.where(length <= b, fpmax * 0.5 * x * x, fpmax * (0.5 + xb)))


def normalised_length(length, lengthrange, range0, range1):
    """Normalised fibre length (MuJoCo) from the actuator (muscle-tendon) length in m."""
    l0 = (lengthrange[1] - lengthrange[0]) / _safe(range1 - range0)
    return range0 + (length - lengthrange[0]) / _safe(l0)


def muscle_gain(length, velocity, lengthrange, force, prm):
    """
    Equivalent of ``mju_muscleGain`` with an explicit force (N).

    ``prm`` holds (range0, range1, lmin, lmax, vmax, fvmax); returns -F0 * FL * FV.
    """
    range0, range1, lmin, lmax, vmax, fvmax = prm
    l0 = (lengthrange[1] - lengthrange[0]) / _safe(range1 - range0)
    big_l = range0 + (length - lengthrange[0]) / _safe(l0)
    big_v = velocity / _safe(l0 * vmax)
    return -force * active_force_length(big_l, lmin, lmax) * force_velocity(big_v, fvmax)


def muscle_bias(length, lengthrange, force, range0, range1, lmax, fpmax):
    """Equivalent of ``mju_muscleBias`` with an explicit force (N): -F0 * FP."""
    big_l = normalised_length(length, lengthrange, range0, range1)
    return -force * passive_force(big_l, lmax, fpmax)
