"""
From the window's EMG to muscle activations: per-muscle gain and delay, activation dynamics.

u_m(t) = clip(g_m * e_m(t - d_m), 0, 1) with e linearly interpolated between samples (so the
delay d_m, in s, has a gradient); activations follow the model's activation dynamics with
the model's integrator from a_0 = u_0 at the first sample.
"""

from diffmsm_ros.model import dynamics
import jax
import jax.numpy as jnp


def excitations(model, win):
    """Excitations u [T, nm] for the window's samples."""
    mus = model.muscles
    steps = win.length
    pos = (win.history + jnp.arange(steps)[:, None]
           - jnp.asarray(mus.emg_delay)[None, :] / win.h)
    last = win.emg.shape[0] - 1
    pos = jnp.clip(pos, 0.0, last)
    i0 = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, last - 1)
    frac = pos - i0
    e0 = jnp.take_along_axis(win.emg, i0, axis=0)
    e1 = jnp.take_along_axis(win.emg, i0 + 1, axis=0)
    return jnp.clip(jnp.asarray(mus.emg_gain)[None, :] * ((1 - frac) * e0 + frac * e1), 0.0, 1.0)


def activations(model, u, h, method='euler', a0=None):
    """Activations [T, nm] with a[0] = a0 (default u[0]) and a[k+1] from a[k], u[k]."""
    a0 = u[0] if a0 is None else a0

    def rate(a, uk):
        return dynamics.activation_rate(model, uk, a)

    def euler(a, uk):
        return a + h * rate(a, uk)

    def rk4(a, uk):
        k1 = rate(a, uk)
        k2 = rate(a + 0.5 * h * k1, uk)
        k3 = rate(a + 0.5 * h * k2, uk)
        k4 = rate(a + h * k3, uk)
        return a + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)

    step = euler if method == 'euler' else rk4

    def body(a, uk):
        nxt = step(a, uk)
        return nxt, a

    _, a = jax.lax.scan(body, a0, u)
    return a
