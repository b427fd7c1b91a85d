"""
From the window's EMG to muscle activations: per-muscle gain and delay, activation dynamics.

u_m(t) = clip(g_m * e_m(t - d_m), 0, 1) (``diffmsm_ros.model.excitation``); activations
follow the model's activation dynamics with the model's integrator from a_0 = u_0 at the
first sample.
"""

from diffmsm_ros.model import dynamics
from diffmsm_ros.model.excitation import delayed
import jax


def excitations(model, win):
    """Excitations u [T, nm] for the window's samples (``model.excitation.delayed``)."""
    return delayed(model.muscles, win.emg, win.history, win.h, win.length)


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
