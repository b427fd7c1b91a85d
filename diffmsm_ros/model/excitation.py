"""
From EMG-derived excitation rows on the model's time grid to each muscle's excitation.

u_m(t_k) = clip(g_m * e_m(t_k - d_m), 0, 1): gain g_m, delay d_m (s), and e linearly
interpolated between grid rows, so that the delay has a gradient.  The identifier's windows
and the node's torque path both read excitations through this one definition.  Delays
reach back at most ``schema.MAX_DELAY``.
"""

import jax.numpy as jnp


def _read(muscles, emg, pos):
    """clip(g e(pos)) at fractional row positions ``pos`` (clipped to the rows)."""
    last = emg.shape[0] - 1
    pos = jnp.clip(pos, 0.0, last)
    i0 = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, last - 1)
    frac = pos - i0
    e0 = jnp.take_along_axis(emg, i0, axis=0)
    e1 = jnp.take_along_axis(emg, i0 + 1, axis=0)
    gain = jnp.asarray(muscles.emg_gain)
    return jnp.clip(gain * ((1 - frac) * e0 + frac * e1), 0.0, 1.0)


def delayed(muscles, emg, history, h, steps):
    """
    Excitations [steps, nm] of grid rows ``emg`` [history + steps (+ more), nm].

    Row ``history + k`` of ``emg`` is the EMG at grid time t_k; the ``history`` rows before
    it let a delay look back (positions before the first row take the first row).
    """
    pos = (history + jnp.arange(steps)[:, None]
           - jnp.asarray(muscles.emg_delay)[None, :] / h)
    return _read(muscles, emg, pos)
