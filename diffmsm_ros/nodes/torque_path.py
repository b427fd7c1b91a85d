"""
The node's torque path, without ROS: activation tracking and predicted torque.

``TorquePath`` (fed by ``diffmsm_ros.emg.intake.EmgIntake``) keeps each
muscle's activation by integrating the model's activation dynamics over the excitations
(gain and delay applied), and gives, for an encoder sample, the net muscle torque (N m),
activations, normalised fibre velocities and muscle forces (N, positive pulls) of the
current model.  Its JAX functions are compiled in ``compile()``, before the node is ready.
"""

import threading

from diffmsm_ros.model import dynamics
import jax
import jax.numpy as jnp
import numpy as np

CHUNK_SIZES = (1, 8, 32, 128, 512)   # padded EMG chunk lengths (one compile each)
MAX_EMG_DELAY = 0.2                  # s, the largest EMG delay the torque path applies


def _activation_scan(model, a0, u, count, h):
    """Activations after the first ``count`` rows of u [N, nm] (explicit Euler, step h)."""
    def body(a, xs):
        uk, k = xs
        nxt = a + h * dynamics.activation_rate(model, uk, a)
        return jnp.where(k < count, jnp.clip(nxt, 0.0, 1.0), a), None

    a, _ = jax.lax.scan(body, a0, (u, jnp.arange(u.shape[0])))
    return a


def _outputs(model, q, qd, a):
    state = dynamics.muscle_state(model, q, qd, a)
    return state.torque, -state.force, state.fiber_velocity


class TorquePath:
    """Activation state and predicted torques of the current model (thread-safe swap)."""

    def __init__(self, model, emg_rate):
        self.h = 1.0 / float(emg_rate)
        self.nm = model.n_muscles
        self.nq = model.n_joints
        self._lock = threading.Lock()
        self._outputs = jax.jit(_outputs)
        self._scan = jax.jit(_activation_scan)
        self.history_rows = int(np.ceil(MAX_EMG_DELAY / self.h)) + 1
        self.set_model(model)
        self.reset()

    def set_model(self, model):
        """Swap the model (called by the identifier thread after an accepted update)."""
        model = jax.device_put(model)
        mus = model.muscles
        gain = np.asarray(mus.emg_gain, dtype=float)
        shift = np.clip(np.round(np.asarray(mus.emg_delay, dtype=float) / self.h), 0,
                        self.history_rows - 1).astype(int)
        with self._lock:
            self.model = model
            self.gain, self.shift = gain, shift

    def reset(self):
        """Forget activations and EMG history (new stream or reset)."""
        self.a = jnp.zeros(self.nm)
        self.history = np.zeros((self.history_rows, self.nm))
        self.have_emg = False

    def add_excitations(self, u):
        """Advance activations over excitations u [S, nm] (at the EMG rate)."""
        u = np.asarray(u, dtype=float)
        with self._lock:
            model, gain, shift = self.model, self.gain, self.shift
        if not self.have_emg:
            self.history[:] = u[0]
            self.a = jnp.asarray(np.clip(gain * u[0], 0.0, 1.0))
            self.have_emg = True
        rows = np.concatenate([self.history, u])
        n = len(u)
        idx = self.history_rows + np.arange(n)[:, None] - shift[None, :]
        delayed = np.take_along_axis(rows, idx, axis=0)
        delayed = np.clip(gain[None, :] * delayed, 0.0, 1.0)
        self.history = rows[-self.history_rows:]
        for start in range(0, n, CHUNK_SIZES[-1]):
            part = delayed[start:start + CHUNK_SIZES[-1]]
            size = next(s for s in CHUNK_SIZES if s >= len(part))
            padded = np.zeros((size, self.nm))
            padded[:len(part)] = part
            self.a = self._scan(model, self.a, padded, len(part), self.h)

    def outputs(self, q, qd):
        """Return torque [nq] (N m), activations, fibre velocities, forces (N) at q, qd."""
        with self._lock:
            model = self.model
        torque, force, fibre = self._outputs(model, jnp.asarray(q, dtype=float),
                                             jnp.asarray(qd, dtype=float), self.a)
        return (np.asarray(torque), np.asarray(self.a), np.asarray(fibre),
                np.asarray(force))

    def compile(self, q, qd):  # noqa: A003 - jax.jit vocabulary
        """Compile every shape the torque path uses."""
        with self._lock:
            model = self.model
        for size in CHUNK_SIZES:
            self._scan(model, self.a, np.zeros((size, self.nm)), 0, self.h)
        self.outputs(q, qd)
