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
are one call that takes the model (a flat vector) and one packed vector of everything else:
a call does no pytree work, and an accepted model swaps in without a compile.  The call is
the numba kernel of ``torque_kernel`` where numba is installed (about 4 us, against
120-150 us for the compiled JAX call amid the node's other work), else the JAX call
``_advance``; the kernel hands input it does not take (non-finite values) to the JAX call.
A call answers one stamp, or a batch of up to ``BATCH`` (the encoder samples that waited
together): a node that fell behind catches up at a fraction of the cost per sample.
"""

import functools
import math
import typing

from diffmsm_ros.live import grid_kernel, torque_kernel
from diffmsm_ros.model import dynamics, excitation, schema
import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np

STEPS = 64        # grid steps one call commits and carries (longer: several calls)
BATCH = 16        # encoder samples one call answers (a backlog is answered in batches)
RING = 4096       # grid rows kept; EMG further ahead of the encoders is committed early
ON_GRID = 1e-6    # of a step: a time this close to a grid point is on it
AHEAD = 0.01      # s beyond the newest excitation sample it follows its slope, then holds
SLOPE_ROWS = 2    # grid rows back to the point that gives that slope


class Layout(typing.NamedTuple):
    """Where each input sits in the one vector a call takes (sizes of a batch of ``size``)."""

    nm: int
    nq: int
    history: int
    size: int

    @property
    def sample_width(self):
        return 2 + 2 * self.nq          # grid offset, fraction of a step, q, qd

    @property
    def samples_at(self):
        return self.nm + 2              # after a_c, n_commit, n_total

    @property
    def rows_at(self):
        return self.samples_at + self.size * self.sample_width

    @property
    def length(self):
        return self.rows_at + (self.history + STEPS) * self.nm


def _advance(unravel, layout, h, flat, packed):
    """
    From the committed activation, Euler steps on the grid; the outputs at a batch of stamps.

    ``packed`` (``Layout``): the committed activation a_c [nm]; the steps to commit and to
    carry; per sample its grid step (from the committed one), the fraction of a step more,
    q and qd; grid rows [history + STEPS, nm] of the excitation before gain and delay,
    row ``history`` at the committed step.  Returns one vector: the activation after the
    committed steps, after all steps, then per sample the torque [nq] (N m), the forces
    (N, pulling > 0), the normalised fibre velocities and the activations.
    """
    nm, nq, history, size = layout
    model = unravel(flat)
    a_c = packed[:nm]
    n_commit = packed[nm].astype(jnp.int32)
    n_total = packed[nm + 1].astype(jnp.int32)
    samples = packed[layout.samples_at:layout.rows_at].reshape(size, layout.sample_width)
    rows = packed[layout.rows_at:].reshape(history + STEPS, nm)
    u = excitation.delayed(model.muscles, rows, history, h, STEPS)

    def step(k, path):
        return path.at[k + 1].set(path[k] + h * dynamics.activation_rate(model, u[k], path[k]))

    path = jax.lax.fori_loop(0, n_total, step, jnp.zeros((STEPS, nm)).at[0].set(a_c))

    def output(sample):
        k = sample[0].astype(jnp.int32)
        a = path[k] + sample[1] * h * dynamics.activation_rate(model, u[k], path[k])
        state = dynamics.muscle_state(model, sample[2:2 + nq], sample[2 + nq:], a)
        return jnp.concatenate([state.torque, -state.force, state.fiber_velocity, a])

    return jnp.concatenate([path[n_commit], path[n_total],
                            jax.vmap(output)(samples).reshape(-1)])


class Outputs(typing.NamedTuple):
    """The torque path's outputs at one stamp (SI units)."""

    torque: np.ndarray           # [nq] N m, net muscle torque
    activation: np.ndarray       # [nm]
    fibre_velocity: np.ndarray   # [nm] normalised
    force: np.ndarray            # [nm] N, pulling > 0
    finite: bool                 # every value above is finite


class TorquePath:
    """Activation state and predicted torque of the current model (see the module text)."""

    def __init__(self, model, kernel=None):
        """``kernel``: use the numba kernel (None: where numba is installed)."""
        self.kernel = torque_kernel.available() if kernel is None else bool(kernel)
        self.h = float(model.timestep)
        self.nm, self.nq = model.n_muscles, model.n_joints
        self.history = int(math.ceil(schema.MAX_DELAY / self.h)) + 2
        _, unravel = ravel_pytree(model)
        self._treedef = jax.tree_util.tree_structure(model)
        # one sample (the usual case) and a batch (a backlog): two compiled calls
        self._layouts = {size: Layout(self.nm, self.nq, self.history, size)
                         for size in (1, BATCH)}
        # plain jax.jit: traced.jit's per-call work (about 150 us) doubled the cost of a call
        # here, and the 1 kHz raw-EMG replay fell behind (4 936 of 19 999 samples late); its
        # trace is short (a node without identifier starts in about 0.5 s)
        self._calls = {size: jax.jit(functools.partial(_advance, unravel, layout, self.h))
                       for size, layout in self._layouts.items()}
        # each call's input vector, reused (every part is written before a call), and views
        # of its sample block and grid rows
        self._packed = {}
        for size, layout in self._layouts.items():
            packed = np.zeros(layout.length)
            self._packed[size] = (packed, packed[layout.samples_at:layout.rows_at].reshape(
                size, layout.sample_width), packed[layout.rows_at:].reshape(
                    self.history + STEPS, self.nm))
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
        kernel = torque_kernel.KernelModel.of(model) if self.kernel else None
        # one assignment: the torque path reads the four together
        self.current = (jax.device_put(flat), np.asarray(mus.emg_gain, dtype=float), delay,
                        kernel)

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
        # contiguous: the kernels are compiled for these layouts at start-up
        times = np.ascontiguousarray(times, dtype=float).reshape(-1)
        e = np.ascontiguousarray(e, dtype=float).reshape(len(times), self.nm)
        if not len(times):
            return
        if self.last_t is not None and times[0] <= self.last_t:
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
            prev = None
        else:
            prev = (self.last_t, self.last_e)
        self.last_t, self.last_e = float(times[-1]), e[-1].copy()
        k_first, k_last = self.final + 1, math.floor(times[-1] / h + ON_GRID)
        if k_last < k_first:
            return
        ahead = k_last - (RING - self.history - 1)
        if ahead > self.kc:
            self._commit(ahead)
        if self.kernel:
            has_prev = prev is not None
            prev_t, prev_e = prev if has_prev else (0.0, e[0])
            grid_kernel.resample(prev_t, prev_e, has_prev, times, e, k_first, k_last, h,
                                 ON_GRID, self.rows)
        else:
            self._resample(prev, times, e, k_first, k_last)
        self.final = k_last

    def _resample(self, prev, times, e, k_first, k_last):
        """Write grid rows k_first..k_last from the samples (``grid_kernel.resample``)."""
        if prev is None:
            src_t, src_e = times, e
        else:
            src_t = np.concatenate([[prev[0]], times])
            src_e = np.concatenate([prev[1][None, :], e])
        ks = np.arange(k_first, k_last + 1)
        tk = ks * self.h
        # np.minimum / np.maximum: np.clip costs several times more on arrays this small
        j = np.minimum(np.maximum(np.searchsorted(src_t, tk - ON_GRID * self.h), 1),
                       max(1, len(src_t) - 1))
        if len(src_t) > 1:
            t0, t1 = src_t[j - 1], src_t[j]
            w = np.minimum(np.maximum((tk - t0) / (t1 - t0), 0.0), 1.0)[:, None]
            values = (1.0 - w) * src_e[j - 1] + w * src_e[j]
        else:
            values = np.repeat(src_e, ks.size, axis=0)
        self.rows[ks % RING] = values

    @property
    def newest(self):
        """Session time (s) of the newest excitation sample, or None."""
        return self.last_t

    def _fill_rows(self, kc, rows):
        """Write grid rows [history + STEPS, nm] from step kc - history (``grid_kernel``)."""
        start, count = kc - self.history, self.history + STEPS
        first = start % RING
        if first + count <= RING:
            rows[:] = self.rows[first:first + count]
        else:
            rows[:RING - first] = self.rows[first:]
            rows[RING - first:] = self.rows[:first + count - RING]
        ahead = max(0, self.final + 1 - start)        # rows from here on are not final
        if ahead < count:
            rows[ahead:] = self.last_e
            if self.final - self.first > SLOPE_ROWS:
                back = self.final - SLOPE_ROWS
                slope = (self.last_e - self.rows[back % RING]) / (self.last_t - back * self.h)
                dt = np.minimum(np.maximum(
                    (start + np.arange(ahead, count)) * self.h - self.last_t, 0.0), AHEAD)
                rows[ahead:] += dt[:, None] * slope
        early = min(count, self.first + 1 - start)    # rows before the first one
        if early > 0:
            rows[:early] = rows[early] if early < count else self.last_e

    def _run(self, kc, a, n_commit, n_total, samples):
        """One call from step kc and activation a; ``samples`` [(step offset, frac, q, qd)]."""
        size = 1 if len(samples) == 1 else BATCH
        packed, block, rows = self._packed[size]
        nm, nq = self.nm, self.nq
        packed[:nm] = a
        packed[nm] = n_commit
        packed[nm + 1] = n_total
        if len(samples) < size:
            block[len(samples):] = 0.0
        for row, (k, frac, q, qd) in zip(block, samples):
            row[0] = k
            row[1] = frac
            row[2:2 + nq] = q
            row[2 + nq:] = qd
        if self.kernel:
            grid_kernel.fill_rows(self.rows, kc - self.history, self.first, self.final,
                                  self.last_e, self.last_t, self.h, SLOPE_ROWS, AHEAD, rows)
        else:
            self._fill_rows(kc, rows)
        flat, _, _, kernel = self.current
        out = self._kernel_call(kernel, size, packed)
        return out if out is not None else np.asarray(self._calls[size](flat, packed))

    def _kernel_call(self, kernel, size, packed):
        """Return the kernel's output vector for ``packed`` (None without it, or for odd input)."""
        if kernel is None:
            return None
        nm, nq = self.nm, self.nq
        out = np.empty(2 * nm + size * (nq + 3 * nm))
        ok = torque_kernel.advance(kernel.family, kernel.muscles, kernel.geometry,
                                   kernel.tables, self.h, nm, nq, self.history, size, STEPS,
                                   packed, out)
        return out if ok else None

    def _commit(self, k):
        """Commit the activation up to grid step k (rows not final held)."""
        zero = np.zeros(self.nq)
        while self.kc < k:
            n = min(k - self.kc, STEPS - 1)
            self.a_c = self._run(self.kc, self.a_c, n, n, [(0, 0.0, zero, zero)])[:self.nm]
            self.kc += n

    def _grid(self, t):
        """Return the grid step at or before t (s) and the fraction of a step beyond it."""
        pos = t / self.h
        kt = math.floor(pos + ON_GRID)
        frac = pos - kt if pos - kt > ON_GRID else 0.0
        if kt < self.kc:          # EMG ran far ahead: the committed state is the nearest
            return self.kc, 0.0
        return kt, frac

    def at(self, t, q, qd):
        """
        Return the ``Outputs`` at stamp t (s) and joint state (q rad, qd rad/s).

        None before the first excitation.  The committed step moves to the newest step
        whose excitation is known and not after t; the carry from there to t is not kept.
        """
        if self.kc is None:
            return None
        return self.at_many([t], [q], [qd])[0]

    def at_many(self, times, qs, qds):
        """
        Return ``Outputs`` at increasing stamps (s) and joint states (None before any EMG).

        The same values as ``at`` one stamp after another, in one call per ``BATCH`` stamps
        within ``STEPS`` grid steps of the committed one.
        """
        if self.kc is None:
            return [None] * len(times)
        out, i = [], 0
        while i < len(times):
            kt, frac = self._grid(times[i])
            target = min(self.final + 1 + self.current[2], kt)
            if target - self.kc > STEPS - 1:
                self._commit(target - STEPS + 1)
            if kt - self.kc > STEPS - 1:           # EMG far behind: several calls
                out.append(self._far(kt, frac, qs[i], qds[i]))
                i += 1
                continue
            group = [(kt - self.kc, frac, qs[i], qds[i])]
            i += 1
            while i < len(times) and len(group) < BATCH:
                kt, frac = self._grid(times[i])
                if kt - self.kc > STEPS - 1:
                    break
                group.append((kt - self.kc, frac, qs[i], qds[i]))
                i += 1
            last = self.kc + group[-1][0]
            n_commit = max(0, min(self.final + 1 + self.current[2], last) - self.kc)
            values = self._run(self.kc, self.a_c, n_commit, group[-1][0], group)
            if n_commit:
                self.kc, self.a_c = self.kc + n_commit, values[:self.nm]
            out.extend(self._outputs(values, len(group)))
        return out

    def _far(self, kt, frac, q, qd):
        """Return the outputs at a stamp more than ``STEPS`` steps past the committed one."""
        nm = self.nm
        n_commit = max(0, min(self.final + 1 + self.current[2], kt) - self.kc)
        kc, a, n_total = self.kc, self.a_c, kt - self.kc
        while True:
            n = min(n_total, STEPS - 1)
            values = self._run(kc, a, n_commit, n, [(n, frac if n == n_total else 0.0, q, qd)])
            if n_commit:
                self.kc, self.a_c = self.kc + n_commit, values[:nm]
                n_commit = 0
            if n == n_total:
                return self._outputs(values, 1)[0]
            kc, a, n_total = kc + n, values[nm:2 * nm], n_total - n

    def _outputs(self, values, count):
        """Return the ``Outputs`` of the first ``count`` samples of a call's vector."""
        nm, nq = self.nm, self.nq
        width = nq + 3 * nm
        per = values[2 * nm:2 * nm + count * width].reshape(count, width)
        finite = [np.isfinite(per).all()] if count == 1 else np.isfinite(per).all(axis=1)
        return [Outputs(row[:nq], row[nq + 2 * nm:], row[nq + nm:nq + 2 * nm],
                        row[nq:nq + nm], bool(ok)) for row, ok in zip(per, finite)]

    def compile(self):  # noqa: A003 - jax.jit vocabulary
        """Compile both calls and the kernel (before the node reports ready)."""
        for layout in self._layouts.values():
            self._calls[layout.size](self.current[0], np.zeros(layout.length))
            self._kernel_call(self.current[3], layout.size, np.zeros(layout.length))
        if self.kernel:
            ring, e = np.zeros_like(self.rows), np.zeros((2, self.nm))
            grid_kernel.resample(0.0, e[0], False, np.zeros(2), e, 0, 1, self.h, ON_GRID,
                                 ring)
            grid_kernel.fill_rows(ring, 0, 0, 1, e[0], 0.0, self.h, SLOPE_ROWS, AHEAD,
                                  np.zeros((self.history + STEPS, self.nm)))
