"""
The node's torque path, without ROS: EMG intake, activation tracking, predicted torque.

``EmgIntake`` turns EMG chunks into per-muscle excitations with sample times (raw EMG is
band-passed, rectified, low-passed and MVC-normalised causally).  ``TorquePath`` keeps each
muscle's activation by integrating the model's activation dynamics over the excitations
(gain and delay applied), and gives, for an encoder sample, the net muscle torque (N m),
activations, normalised fibre velocities and muscle forces (N, positive pulls) of the
current model.  Its JAX functions are compiled in ``compile()``, before the node is ready.
"""

import collections
import threading

from diffmsm_ros import settings
from diffmsm_ros.emg.envelope import EnvelopeFilter
from diffmsm_ros.model import dynamics
import jax
import jax.numpy as jnp
import numpy as np

CHUNK_SIZES = (1, 8, 32, 128, 512)   # padded EMG chunk lengths (one compile each)
ANCHOR_CHUNKS = 50                   # chunks per median refinement of the EMG clock
MAX_LAG = 1.0                        # s of processing lag before the EMG clock restarts
MAX_EMG_DELAY = 0.2                  # s, the largest EMG delay the torque path applies


class EmgError(ValueError):
    """EMG that cannot be used, with the reason."""


class EmgIntake:
    """EMG samples [S, C] -> excitations [S, n_muscles] in [0, 1] and times (s)."""

    def __init__(self, values, muscle_names):
        self.index, self.channels = settings.channel_map(values, muscle_names)
        self.rate = float(values['emg.sample_rate'])
        self.kind = values['emg.kind']
        self.max_value = float(values['emg.max_value'])
        self.filter = None
        if self.kind == 'raw':
            self.filter = EnvelopeFilter(
                self.rate, settings.mvc_values(values, self.channels),
                (values['emg.band_low'], values['emg.band_high']), values['emg.lowpass'])
        self.next_time = None
        self.clipped = 0
        self.anchors = 0                   # times the sample clock was (re)anchored
        self.recent = []                   # receipt offsets since the last refinement
        self.offsets = collections.deque(maxlen=500)   # receipt - sample clock (s)

    @property
    def lag(self):
        """How late the excitations are because of the envelope filter (s)."""
        return self.filter.delay if self.filter is not None else 0.0

    def reset(self):
        self.next_time = None
        self.recent = []
        if self.filter is not None:
            self.filter.reset()

    def times(self, last, count, stamped=False):
        """
        Stamp each sample of a chunk (s) whose newest sample arrived at ``last``.

        Chunks of a stream at ``emg.sample_rate`` are laid end to end on a sample clock.
        The clock is anchored on the first chunk's receipt time ``last`` and then follows
        the sample count, so receipt jitter and processing lag do not move the samples;
        every ``ANCHOR_CHUNKS`` chunks it moves by the median receipt offset; it is
        re-anchored when receipt runs ahead of it by more than a few chunks (a gap, or
        a device clock drifting from the node's) or behind it by more than ``MAX_LAG`` (a
        restart).
        """
        dt = 1.0 / self.rate
        if stamped:
            self.next_time = last + dt
            return last - dt * np.arange(count - 1, -1, -1)
        if self.next_time is not None:
            predicted = self.next_time + (count - 1) * dt
            offset = last - predicted
            self.offsets.append(offset)
            # receipt behind the clock is processing lag (up to MAX_LAG); ahead of it by
            # more than a few chunks, or far behind, means a gap or a restart
            if -MAX_LAG <= offset <= max(0.05, 3.0 * count * dt):
                self.recent.append(offset)
                if len(self.recent) >= ANCHOR_CHUNKS:
                    # refine the anchor by the median receipt offset (jitter cancels)
                    predicted += float(np.median(self.recent))
                    self.recent = []
                last = predicted
            else:
                self.anchors += 1
                self.recent = []
        else:
            self.anchors += 1
            self.recent = []
        self.next_time = last + dt
        return last - dt * np.arange(count - 1, -1, -1)

    def excitations(self, samples):
        """Excitations [S, n_muscles] of samples [S, C] (V for raw, fraction of MVC else)."""
        samples = np.asarray(samples, dtype=float)
        if samples.ndim != 2 or samples.shape[1] != self.channels:
            raise EmgError(f'expected {self.channels} EMG channels, got {samples.shape}')
        if not np.all(np.isfinite(samples)):
            raise EmgError('EMG holds NaN or infinite values')
        if self.filter is not None:
            if np.max(np.abs(samples)) > 1e3:
                raise EmgError('raw EMG above 1 kV: not volts')
            env = self.filter.process(samples)
        else:
            if np.min(samples) < -0.05 or np.max(samples) > self.max_value:
                raise EmgError(f'EMG envelope outside [0, {self.max_value}]')
            env = samples
        over = env > 1.0
        self.clipped += int(np.count_nonzero(over))
        return np.clip(env[:, self.index], 0.0, 1.0)


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
