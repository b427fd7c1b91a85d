"""
A window of synchronised samples at the model rate, and how to build one.

Sample k holds the measured state at t_k = t0 + k h and the inputs held over [t_k, t_k+1):
joint angles (rad), velocities (rad/s), exoskeleton torque (N m) and EMG excitations.  The
EMG array starts ``history`` samples earlier so that an EMG delay can look back.
"""

import dataclasses

import jax
import numpy as np
from scipy import signal


@dataclasses.dataclass(frozen=True)
class Window:
    """Arrays of one identification window (a JAX pytree; ``history`` and ``h`` static)."""

    q: jax.Array          # [T, nq] rad
    qd: jax.Array         # [T, nq] rad/s
    tau_exo: jax.Array    # [T, nq] N m
    emg: jax.Array        # [history + T, nm] excitation before gain and delay
    weight: jax.Array     # [T] 1 for usable samples, 0 for gaps
    history: int = 0
    h: float = 0.002

    @property
    def length(self):
        return self.q.shape[0]


jax.tree_util.register_dataclass(
    Window, data_fields=['q', 'qd', 'tau_exo', 'emg', 'weight'], meta_fields=['history', 'h'])


def savgol_derivative(q, h, window_s=0.05, order=3, deriv=1):
    """Smoothed derivative (per second^deriv) of [T, n] samples at step h."""
    n = max(order + 2, int(round(window_s / h)) | 1)
    if q.shape[0] < n:
        return np.gradient(q, h, axis=0) if deriv == 1 else np.zeros_like(q)
    return signal.savgol_filter(q, n, order, deriv=deriv, delta=h, axis=0, mode='interp')


def from_arrays(q, tau_exo, emg, h, qd=None, history=0, weight=None):
    """Build a window; velocities are differentiated (Savitzky-Golay) where not given."""
    q = np.asarray(q, dtype=float)
    if qd is None or np.any(~np.isfinite(qd)):
        est = savgol_derivative(q, h)
        qd = est if qd is None else np.where(np.isfinite(qd), qd, est)
    emg = np.asarray(emg, dtype=float)
    if emg.shape[0] != q.shape[0] + history:
        raise ValueError('emg must hold history + T samples')
    weight = np.ones(q.shape[0]) if weight is None else np.asarray(weight, dtype=float)
    return Window(q=q, qd=np.asarray(qd, dtype=float), tau_exo=np.asarray(tau_exo, dtype=float),
                  emg=emg, weight=weight, history=int(history), h=float(h))


def resample(t_src, values, t_grid, hold=False):
    """Values [S, n] at times t_src onto t_grid: linear, or zero-order hold (last sample)."""
    values = np.asarray(values, dtype=float)
    if hold:
        tol = 1e-6 * (t_grid[1] - t_grid[0]) if len(t_grid) > 1 else 0.0
        idx = np.clip(np.searchsorted(t_src, t_grid + tol, side='right') - 1, 0,
                      len(t_src) - 1)
        return values[idx]
    return np.stack([np.interp(t_grid, t_src, values[:, j]) for j in range(values.shape[1])],
                    axis=-1)


def slice_window(win, start, length):
    """Slice samples [start, start + length) of a window (EMG history kept)."""
    end = start + length
    return dataclasses.replace(
        win, q=win.q[start:end], qd=win.qd[start:end], tau_exo=win.tau_exo[start:end],
        emg=win.emg[start:end + win.history], weight=win.weight[start:end])
