"""
The torque path's one call as a numba kernel: the same numbers as ``torque._advance``.

Why a second form of the model's forward path: the compiled JAX call runs 43 XLA kernels
and a loop, and between encoder samples the node's other work evicts them from the CPU
caches.  Measured on this 2-core machine, the call took 35-45 us back to back but 120-150
us inside the node's sample handling (p50), the largest part of the torque path.  This
kernel is one native function over a few flat arrays.

It evaluates exactly what ``_advance`` does, from the same packed input (``torque.Layout``):
excitations read through each muscle's gain and delay (``model.excitation``), Euler steps
of the activation dynamics (``model.activation``), muscle-tendon lengths and moment arms
from the geometry splines with their linear continuation (``model.geometry``), and the
Hill forces of both curve families (``model.curves_mujoco``, ``model.curves_degroote``).
``test/core/test_torque_kernel.py`` holds it to the JAX model (1e-9 relative) over
random states, both templates and both families; change the two together.

``KernelModel.of(model)`` flattens a subject model into the kernel's arrays once per model
(off the hot path).  Without numba, ``available()`` is False and the torque path keeps its
JAX call.
"""

import math
import typing

from diffmsm_ros.model import curves_degroote
from diffmsm_ros.model.curves_mujoco import MIN_VAL
import numpy as np

try:
    import numba
except ImportError:          # numba is optional: the torque path then runs its JAX call
    numba = None

MUJOCO, DEGROOTE = 0, 1
_ACTIVE = np.array(curves_degroote.ACTIVE)        # De Groote's published constants
_VELOCITY = np.array(curves_degroote.VELOCITY)
_PASSIVE = np.array(curves_degroote.PASSIVE)
# per-muscle parameter columns (``KernelModel.muscles``)
F0, L0, LS, TAU_ACT, TAU_DEACT, GAIN, DELAY = range(7)
C0 = 7      # family curve parameters from here (``CURVE_COLUMNS``)
CURVE_COLUMNS = {'mujoco': ('lmin', 'lmax', 'vmax', 'fpmax', 'fvmax', 'tau_smooth'),
                 'degroote2016': ('vmax', 'pennation', 'fiber_damping',
                                  'activation_smoothness')}
# per-muscle geometry columns (``KernelModel.geometry``): spanned joints (the second -1
# for one), the table's offset in ``tables`` and its node counts, grid start and step
G_DIMS, G_J0, G_J1, G_OFFSET, G_N0, G_N1, G_START0, G_START1, G_STEP0, G_STEP1 = range(10)


def available():
    """Whether numba is installed (the kernel can be used)."""
    return numba is not None


class KernelModel(typing.NamedTuple):
    """A subject model as the kernel reads it (``of``)."""

    family: int
    muscles: np.ndarray      # [nm, C0 + curve columns]
    geometry: np.ndarray     # [nm, 10]
    tables: np.ndarray       # every muscle's spline table, flattened [k, i0, i1]

    @classmethod
    def of(cls, model):
        """Flatten a ``SubjectModel`` (numbers only; the structure is read once here)."""
        mus = model.muscles
        nm = model.n_muscles
        family = {'mujoco': MUJOCO, 'degroote2016': DEGROOTE}[mus.family]
        names = CURVE_COLUMNS[mus.family]
        columns = [mus.max_isometric_force, mus.optimal_fiber_length,
                   mus.tendon_slack_length, mus.tau_act, mus.tau_deact, mus.emg_gain,
                   mus.emg_delay] + [mus.curve[n] for n in names]
        params = np.stack([np.broadcast_to(np.asarray(c, dtype=float), (nm,))
                           for c in columns], axis=1)
        geometry = np.zeros((nm, 10))
        parts, offset = [], 0
        for block in model.geometry:
            tables = np.asarray(block.tables, dtype=float)
            dims = len(block.joints)
            start = np.asarray(block.start, dtype=float)
            step = np.asarray(block.step, dtype=float)
            for row, m in enumerate(block.muscles):
                table = tables[row]
                n0 = table.shape[1]
                n1 = table.shape[2] if dims == 2 else 1
                geometry[m] = (dims, block.joints[0], block.joints[1] if dims == 2 else -1,
                               offset, n0, n1, start[0], start[1] if dims == 2 else 0.0,
                               step[0], step[1] if dims == 2 else 1.0)
                parts.append(table.reshape(-1))
                offset += table.size
        tables = np.concatenate(parts) if parts else np.zeros(0)
        return cls(family, np.ascontiguousarray(params), geometry, tables)


# ---------------------------------------------------------------------- the kernel
def _activation_rate(family, p, u, a):
    """da/dt (1/s) of one muscle (``model.activation``)."""
    tau_act, tau_deact = p[TAU_ACT], p[TAU_DEACT]
    if family == MUJOCO:
        width = p[C0 + 5]
        u_c = min(max(u, 0.0), 1.0)
        a_c = min(max(a, 0.0), 1.0)
        t_act = tau_act * (0.5 + 1.5 * a_c)
        t_deact = tau_deact / (0.5 + 1.5 * a_c)
        du = u_c - a
        if width < MIN_VAL:
            tau = t_act if du > 0.0 else t_deact
        else:
            x = min(max(du / width + 0.5, 0.0), 1.0)
            tau = t_deact + (t_act - t_deact) * (x * x * x * (x * (6.0 * x - 15.0) + 10.0))
        return du / max(MIN_VAL, tau)
    smooth = p[C0 + 3]
    f = 0.5 * math.tanh(smooth * (u - a)) + 0.5
    scale = 0.5 + 1.5 * a
    return (f / (tau_act * scale) + (1.0 - f) * scale / tau_deact) * (u - a)


def _hermite(t):
    """Cubic Hermite weights at t and their t-derivatives (value 0, value 1, slope 0, 1)."""
    t2 = t * t
    t3 = t2 * t
    w = (2 * t3 - 3 * t2 + 1, -2 * t3 + 3 * t2, t3 - 2 * t2 + t, t3 - t2)
    dw = (6 * t2 - 6 * t, -6 * t2 + 6 * t, 3 * t2 - 4 * t + 1, 3 * t2 - 2 * t)
    return w, dw


def _cell(x, start, step, n):
    """Clipped coordinate, node index and fraction in the cell (``geometry._interior``)."""
    xc = min(max(x, start), start + step * (n - 1))
    u = (xc - start) / step
    i = min(max(math.floor(u), 0.0), n - 2.0)
    return xc, int(i), u - i


def _length_1d(g, tables, q):
    """Length (m) and moment arm (m/rad) of a muscle spanning one joint."""
    x = q[int(g[G_J0])]
    n, step, base = int(g[G_N0]), g[G_STEP0], int(g[G_OFFSET])
    xc, i, t = _cell(x, g[G_START0], step, n)
    w, dw = _hermite(t)
    v0, v1 = tables[base + i], tables[base + i + 1]              # k = 0: values
    s0, s1 = tables[base + n + i], tables[base + n + i + 1]      # k = 1: slopes
    value = w[0] * v0 + w[1] * v1 + step * (w[2] * s0 + w[3] * s1)
    slope = (dw[0] * v0 + dw[1] * v1) / step + dw[2] * s0 + dw[3] * s1
    return value + slope * (x - xc), slope


def _length_2d(g, tables, q):
    """Length (m) and moment arms (m/rad) on both joints of a two-joint muscle."""
    x0, x1 = q[int(g[G_J0])], q[int(g[G_J1])]
    n0, n1, base = int(g[G_N0]), int(g[G_N1]), int(g[G_OFFSET])
    h0, h1 = g[G_STEP0], g[G_STEP1]
    xc0, i0, t0 = _cell(x0, g[G_START0], h0, n0)
    xc1, i1, t1 = _cell(x1, g[G_START1], h1, n1)
    w0, dw0 = _hermite(t0)
    w1, dw1 = _hermite(t1)
    s = s_0 = s_1 = s_01 = 0.0
    for c0 in range(2):
        for c1 in range(2):
            node = (i0 + c0) * n1 + (i1 + c1)
            for k in range(4):
                value = tables[base + k * n0 * n1 + node]
                if k & 1:       # differentiated along the first joint: slope weight
                    a, da = w0[2 + c0] * h0, dw0[2 + c0]
                else:
                    a, da = w0[c0], dw0[c0] / h0
                if k & 2:
                    b, db = w1[2 + c1] * h1, dw1[2 + c1]
                else:
                    b, db = w1[c1], dw1[c1] / h1
                s += a * b * value
                s_0 += da * b * value
                s_1 += a * db * value
                s_01 += da * db * value
    out0, out1 = x0 - xc0, x1 - xc1
    arm0 = s_0 + (s_01 * out1 if out0 == 0.0 else 0.0)
    arm1 = s_1 + (s_01 * out0 if out1 == 0.0 else 0.0)
    return s + s_0 * out0 + s_1 * out1, arm0, arm1


def _force(family, p, a, length, velocity):
    """Force (N, negative pulls) and normalised fibre velocity of one muscle."""
    f0, l0, ls = p[F0], p[L0], p[LS]
    if family == MUJOCO:
        lmin, lmax, vmax, fpmax, fvmax = p[C0], p[C0 + 1], p[C0 + 2], p[C0 + 3], p[C0 + 4]
        big_l = (length - ls) / l0
        big_v = velocity / (l0 * vmax)
        # active force-length
        ca = 0.5 * (lmin + 1.0)
        cb = 0.5 * (1.0 + lmax)
        if big_l < lmin or big_l > lmax:
            fl = 0.0
        elif big_l <= ca:
            x = (big_l - lmin) / max(MIN_VAL, ca - lmin)
            fl = 0.5 * x * x
        elif big_l <= 1.0:
            x = (1.0 - big_l) / max(MIN_VAL, 1.0 - ca)
            fl = 1.0 - 0.5 * x * x
        elif big_l <= cb:
            x = (big_l - 1.0) / max(MIN_VAL, cb - 1.0)
            fl = 1.0 - 0.5 * x * x
        else:
            x = (lmax - big_l) / max(MIN_VAL, lmax - cb)
            fl = 0.5 * x * x
        # force-velocity
        y = fvmax - 1.0
        if big_v <= -1.0:
            fv = 0.0
        elif big_v <= 0.0:
            fv = (big_v + 1.0) ** 2
        elif big_v <= y:
            fv = fvmax - (y - big_v) ** 2 / max(MIN_VAL, y)
        else:
            fv = fvmax
        # passive
        if big_l <= 1.0:
            fp = 0.0
        elif big_l <= cb:
            x = (big_l - 1.0) / max(MIN_VAL, cb - 1.0)
            fp = fpmax * 0.5 * x * x
        else:
            fp = fpmax * (0.5 + (big_l - cb) / max(MIN_VAL, cb - 1.0))
        return -f0 * (fl * fv * a + fp), big_v
    vmax, pennation, damping = p[C0], p[C0 + 1], p[C0 + 2]
    along = length - ls
    width = l0 * math.sin(pennation)
    lm = math.sqrt(along * along + width * width)
    lm_norm = lm / l0
    vm_norm = velocity * along / lm / (vmax * l0)
    active = 0.0
    for k in range(3):
        b0, b1, b2, b3 = _ACTIVE[4 * k], _ACTIVE[4 * k + 1], _ACTIVE[4 * k + 2], \
            _ACTIVE[4 * k + 3]
        r = (lm_norm - b1) / (b2 + b3 * lm_norm)
        active += b0 * math.exp(-0.5 * r * r)
    z = _VELOCITY[1] * vm_norm + _VELOCITY[2]
    fv = _VELOCITY[0] * math.log(z + math.sqrt(z * z + 1.0)) + _VELOCITY[3]
    passive = (math.exp(_PASSIVE[1] * (lm_norm - 1.0) / _PASSIVE[0]) - 1.0) / \
        (math.exp(_PASSIVE[1]) - 1.0)
    return -f0 * (a * active * fv + passive + damping * vm_norm) * math.cos(pennation), vm_norm


def _excitation(p, rows, position, h):
    """Row index and fraction of grid row ``position`` less the delay (``model.excitation``)."""
    last = rows.shape[0] - 1
    pos = min(max(position - p[DELAY] / h, 0.0), float(last))
    i0 = int(min(max(math.floor(pos), 0.0), last - 1.0))
    frac = pos - i0
    return i0, frac


def advance(family, muscles, geometry, tables, h, nm, nq, history, size, steps, packed,
            out):
    """
    ``torque._advance`` of one packed input: writes the output vector ``out``.

    Returns False (``out`` untouched) where an input is not finite or out of range: the
    caller then answers from the JAX call, which propagates such values as the model does.
    """
    a_c = packed[:nm]
    n_commit = int(packed[nm])
    n_total = int(packed[nm + 1])
    width = 2 + 2 * nq
    samples_at = nm + 2
    rows_at = samples_at + size * width
    count = history + steps
    rows = packed[rows_at:rows_at + count * nm].reshape(count, nm)
    for k in range(nm + 2 + size * width + count * nm):
        if not math.isfinite(packed[k]):
            return False
    if n_commit < 0 or n_total < n_commit or n_total > steps - 1:
        return False
    # excitations of the steps (only those the path and the samples read)
    last_k = n_total
    for s in range(size):
        last_k = max(last_k, int(packed[samples_at + s * width]))
    if last_k > steps - 1:
        return False
    u = np.empty((last_k + 1, nm))
    for k in range(last_k + 1):
        for m in range(nm):
            p = muscles[m]
            i0, frac = _excitation(p, rows, history + k, h)
            e = (1.0 - frac) * rows[i0, m] + frac * rows[i0 + 1, m]
            u[k, m] = min(max(p[GAIN] * e, 0.0), 1.0)
    path = np.zeros((last_k + 1, nm))
    path[0] = a_c
    for k in range(n_total):
        for m in range(nm):
            path[k + 1, m] = path[k, m] + h * _activation_rate(family, muscles[m], u[k, m],
                                                               path[k, m])
    out[:nm] = path[n_commit]
    out[nm:2 * nm] = path[n_total]
    per = nq + 3 * nm
    arm = np.zeros((nm, nq))
    length = np.empty(nm)
    for s in range(size):
        row = packed[samples_at + s * width:samples_at + (s + 1) * width]
        k = int(row[0])
        q = row[2:2 + nq]
        qd = row[2 + nq:2 + 2 * nq]
        base = 2 * nm + s * per
        arm[:] = 0.0
        for m in range(nm):
            g = geometry[m]
            if g[G_DIMS] == 0.0:        # in no geometry block: no length, as in the model
                length[m] = 0.0
            elif g[G_DIMS] == 1.0:
                length[m], arm[m, int(g[G_J0])] = _length_1d(g, tables, q)
            else:
                length[m], arm[m, int(g[G_J0])], arm[m, int(g[G_J1])] = \
                    _length_2d(g, tables, q)
        for j in range(nq):
            out[base + j] = 0.0
        for m in range(nm):
            p = muscles[m]
            a = path[k, m] + row[1] * h * _activation_rate(family, p, u[k, m], path[k, m])
            velocity = 0.0
            for j in range(nq):
                velocity += arm[m, j] * qd[j]
            force, fibre_velocity = _force(family, p, a, length[m], velocity)
            for j in range(nq):
                out[base + j] += arm[m, j] * force
            out[base + nq + m] = -force
            out[base + nq + nm + m] = fibre_velocity
            out[base + nq + 2 * nm + m] = a
    return True


def native(function):
    """Return ``function`` compiled by numba (cached on disk, without the GIL), or itself."""
    if numba is None:
        return function
    return numba.njit(cache=True, nogil=True, error_model='numpy')(function)


_activation_rate = native(_activation_rate)
_hermite = native(_hermite)
_cell = native(_cell)
_length_1d = native(_length_1d)
_length_2d = native(_length_2d)
_force = native(_force)
_excitation = native(_excitation)
advance = native(advance)
