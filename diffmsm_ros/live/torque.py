"""
The torque path without ROS: activations brought to an encoder stamp, and the torque there.

Excitations (EMG after filtering, before each muscle's gain and delay) arrive with times on
the session clock and are written onto the model's grid t_k = k h by linear interpolation
between samples, as the identifier's buffers do.  The activation follows the model's
activation dynamics with explicit Euler steps of h (MuJoCo's and the identifier's
integrator), u_k = clip(g e(t_k - d)) (``model.excitation.delayed``) held over
[t_k, t_k+1).  Steps whose excitation is known are *committed*; for an encoder stamp t the
activation is carried on from the committed state to t, the part of a step before t as a
partial Euler step.  Beyond its newest sample the excitation follows its last slope for
``AHEAD`` s (one EMG chunk at 100 Hz) and is then held: on a MuJoCo session with envelope
EMG in 10 ms chunks and the true model, that took the torque error from 0.21 % (held at
once) to 0.02 % RMS; with raw EMG, whose envelope is known only up to the filter's lag
(38 ms) before now, from 6.4 % to 6.1 %.  Commit, carry and the muscle outputs
are one compiled call that takes the model as one flat vector: a call does no pytree work,
and an accepted model swaps in without a compile.
"""

import math
import typing

from diffmsm_ros.model import dynamics, excitation, schema
import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np

STEPS = 64        # grid steps one call commits and carries (longer: several calls)
RING = 4096       # grid rows kept; EMG further ahead of the encoders is committed early
ON_GRID = 1e-6    # of a step: a time this close to a grid point is on it
AHEAD = 0.01      # s beyond the newest excitation sample it follows its slope, then holds
SLOPE_ROWS = 2    # grid rows back to the point that gives that slope


def _advance(unravel, history, h, flat, a_c, rows, counts, frac, q, qd):
    """
    Commit ``counts[0]`` steps from a_c; carry on to ``counts[1]`` steps and ``frac`` more.

    ``rows`` [history + STEPS, nm] are grid rows of the excitation before gain and delay,
    row ``history`` at the committed step.  Returns one vector: the activation after the
    committed steps, the activation at the end, then at (q, qd) the torque [nq] (N m), the
    forces (N, pulling > 0) and the normalised fibre velocities.
    """
    model = unravel(flat)
    u = excitation.delayed(model.muscles, rows, history, h, rows.shape[0] - history)

    def step(k, carry):
        a, committed = carry
        a = a + h * dynamics.activation_rate(model, u[k], a)
        return a, jnp.where(k + 1 == counts[0], a, committed)

    a, committed = jax.lax.fori_loop(0, counts[1], step, (a_c, a_c))
    a = a + frac * h * dynamics.activation_rate(model, u[counts[1]], a)
    state = dynamics.muscle_state(model, q, qd, a)
    return jnp.concatenate([committed, a, state.torque, -state.force, state.fiber_velocity])


class Outputs(typing.NamedTuple):
    """The torque path's outputs at one stamp (SI units)."""

    torque: np.ndarray           # [nq] N m, net muscle torque
    activation: np.ndarray       # [nm]
    fibre_velocity: np.ndarray   # [nm] normalised
    force: np.ndarray            # [nm] N, pulling > 0
    finite: bool                 # every value above is finite


class TorquePath:
    """Activation state and predicted torque of the current model (see the module text)."""

    def __init__(self, model):
        self.h = float(model.timestep)
        self.nm, self.nq = model.n_muscles, model.n_joints
        self.history = int(math.ceil(schema.MAX_DELAY / self.h)) + 2
        _, unravel = ravel_pytree(model)
        self._treedef = jax.tree_util.tree_structure(model)
        history, h = self.history, self.h
        self._call = jax.jit(lambda *args: _advance(unravel, history, h, *args))
        self.rows = np.zeros((RING, self.nm))
        self.set_model(model)
        self.reset()

    def set_model(self, model):
        """Swap in a model of the template's structure (from any thread; no compile)."""
        if jax.tree_util.tree_structure(model) != self._treedef:
            raise ValueError('the model does not have the structure of the template')
        flat, _ = ravel_pytree(model)
        mus = model.muscles
        delay = int(math.floor(float(np.min(np.asarray(mus.emg_delay))) / self.h + ON_GRID))
        # one assignment: the torque path reads the three together
        self.current = (jax.device_put(flat), np.asarray(mus.emg_gain, dtype=float), delay)

    def reset(self):
        """Forget activations and excitations (a new stream, or a reset)."""
        self.first = None       # grid index before the first excitation row
        self.final = None       # newest grid index whose row is final
        self.last_t = None      # s: the newest excitation sample, and its values
        self.last_e = None
        self.kc = None          # committed grid step, and the activation there
        self.a_c = None

    def add_excitations(self, times, e):
        """
        Excitations e [S, nm] (before gain and delay) at increasing times [S] (s).

        Samples not after the newest one are ignored (the caller resets on a restart).
        """
        times = np.asarray(times, dtype=float).reshape(-1)
        e = np.asarray(e, dtype=float).reshape(len(times), self.nm)
        if self.last_t is not None:
            keep = times > self.last_t
            times, e = times[keep], e[keep]
        if not len(times):
            return
        h = self.h
        if self.last_t is None:
            k0 = math.ceil(times[0] / h - ON_GRID)
            self.first = self.final = k0 - 1
            self.kc = k0
            self.a_c = np.clip(self.current[1] * e[0], 0.0, 1.0)
            src_t, src_e = times, e
        else:
            src_t = np.concatenate([[self.last_t], times])
            src_e = np.concatenate([self.last_e[None, :], e])
        self.last_t, self.last_e = float(times[-1]), e[-1].copy()
        ks = np.arange(self.final + 1, math.floor(times[-1] / h + ON_GRID) + 1)
        if not ks.size:
            return
        ahead = int(ks[-1]) - (RING - self.history - 1)
        if ahead > self.kc:
            self._commit(ahead)
        tk = ks * h
        j = np.clip(np.searchsorted(src_t, tk - ON_GRID * h), 1, max(1, len(src_t) - 1))
        if len(src_t) > 1:
            t0, t1 = src_t[j - 1], src_t[j]
            w = np.clip((tk - t0) / (t1 - t0), 0.0, 1.0)[:, None]
            values = (1.0 - w) * src_e[j - 1] + w * src_e[j]
        else:
            values = np.repeat(src_e, ks.size, axis=0)
        self.rows[ks % RING] = values
        self.final = int(ks[-1])

    @property
    def newest(self):
        """Session time (s) of the newest excitation sample, or None."""
        return self.last_t

    def _rows(self, kc):
        """Rows [history + STEPS, nm] from grid step kc - history; rows not yet final held."""
        start, count = kc - self.history, self.history + STEPS
        first = start % RING
        if first + count <= RING:
            rows = self.rows[first:first + count].copy()
        else:
            rows = np.concatenate([self.rows[first:], self.rows[:first + count - RING]])
        ahead = max(0, self.final + 1 - start)        # rows from here on are not final
        if ahead < count:
            rows[ahead:] = self.last_e
            if self.final - self.first > SLOPE_ROWS:
                back = self.final - SLOPE_ROWS
                slope = (self.last_e - self.rows[back % RING]) / (self.last_t - back * self.h)
                dt = np.clip((start + np.arange(ahead, count)) * self.h - self.last_t, 0.0,
                             AHEAD)
                rows[ahead:] += dt[:, None] * slope
        early = min(count, self.first + 1 - start)    # rows before the first one
        if early > 0:
            rows[:early] = rows[early] if early < count else self.last_e
        return rows

    def _run(self, kc, a, n_commit, n_total, frac, q, qd):
        flat = self.current[0]
        return np.asarray(self._call(flat, a, self._rows(kc),
                                     np.array([n_commit, n_total], dtype=np.int32),
                                     float(frac), q, qd))

    def _commit(self, k):
        """Commit the activation up to grid step k (rows not final held)."""
        zero = np.zeros(self.nq)
        while self.kc < k:
            n = min(k - self.kc, STEPS - 1)
            self.a_c = self._run(self.kc, self.a_c, n, n, 0.0, zero, zero)[:self.nm]
            self.kc += n

    def at(self, t, q, qd):
        """
        Return the ``Outputs`` at stamp t (s) and joint state (q rad, qd rad/s).

        None before the first excitation.  The committed step moves to the newest step
        whose excitation is known and not after t; the carry from there to t is not kept.
        """
        if self.kc is None:
            return None
        h, nm, nq = self.h, self.nm, self.nq
        pos = t / h
        kt = math.floor(pos + ON_GRID)
        frac = pos - kt if pos - kt > ON_GRID else 0.0
        if kt < self.kc:          # EMG ran far ahead: the committed state is the nearest
            kt, frac = self.kc, 0.0
        q = np.asarray(q, dtype=float)
        qd = np.asarray(qd, dtype=float)
        target = min(self.final + 1 + self.current[2], kt)
        if target - self.kc > STEPS - 1:
            self._commit(target - STEPS + 1)
        n_commit = max(0, target - self.kc)
        kc, a = self.kc, self.a_c
        n_total = kt - kc
        while True:
            n = min(n_total, STEPS - 1)
            out = self._run(kc, a, n_commit, n, frac if n == n_total else 0.0, q, qd)
            if n_commit:
                self.kc, self.a_c = self.kc + n_commit, out[:nm]
                n_commit = 0
            if n == n_total:
                break
            kc, a, n_total = kc + n, out[nm:2 * nm], n_total - n
        return Outputs(out[2 * nm:2 * nm + nq], out[nm:2 * nm], out[3 * nm + nq:],
                       out[2 * nm + nq:3 * nm + nq], bool(np.isfinite(out[nm:]).all()))

    def compile(self):  # noqa: A003 - jax.jit vocabulary
        """Compile the one call (before the node reports ready)."""
        zero = np.zeros(self.nq)
        self._call(self.current[0], np.zeros(self.nm), np.zeros((self.history + STEPS, self.nm)),
                   np.array([0, 0], dtype=np.int32), 0.0, zero, zero)
