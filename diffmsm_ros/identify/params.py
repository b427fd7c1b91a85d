"""
The parameters being identified: selection, normalised space, bounds, model update.

Each parameter is one scalar: (section, name, field, component).  The solver works in
normalised coordinates z where z ~ 0.1 means "about 10 % off" for every kind: positive
quantities use log(c / c_ref), signed ones (c - c_ref) / scale.  Two groups are moved in
coordinates that match what the motion actually determines:

- a tendon slack length by the muscle's normalised fibre length at a reference
  muscle-tendon length l_ref (its length at mid joint range),
  L_ref = (l_ref - tendon_slack_length) / optimal_fiber_length, so that changing the
  optimal fibre length keeps the operating point on the force-length curve;
- a segment whose mass, centre of mass and inertia are all selected by its barycentric
  parameters (mass, first moment m c, inertia about the segment frame origin), in which the
  equations of motion are linear; single-hinge combinations the data cannot separate then
  stay aligned with coordinates the prior holds.
"""

import dataclasses

from diffmsm_ros.model import dynamics, schema
import jax
import jax.numpy as jnp
import numpy as np

POSITIVE = {'max_isometric_force', 'optimal_fiber_length', 'tau_act', 'tau_deact',
            'emg_gain', 'mass'}
DEFAULT_SELECTION = {
    'muscles': ['max_isometric_force', 'optimal_fiber_length', 'tendon_slack_length'],
    'segments': ['mass', 'com', 'inertia'],
    'joints': ['damping'],
}
# the random walk a parameter kind may take during a session, % per square root of a minute
# (fatigue moves strengths; structure barely moves): identification.drift.<kind>
DRIFT_KINDS = {'strength': ('max_isometric_force',),
               'lengths': ('optimal_fiber_length', 'tendon_slack_length'),
               'activation': ('tau_act', 'tau_deact', 'emg_gain', 'emg_delay'),
               'bones': schema.SEGMENT_FIELDS + schema.JOINT_FIELDS}
DEFAULT_DRIFT = {'strength': 2.0, 'lengths': 0.1, 'activation': 0.5, 'bones': 0.0}
INERTIA_AXES = ('xx', 'yy', 'zz', 'xy', 'xz', 'yz')


@dataclasses.dataclass(frozen=True)
class Entry:
    section: str
    name: str
    field: str
    component: int = -1   # index into com/inertia, -1 for scalars

    @property
    def label(self):
        if self.component < 0:
            return f'{self.name}.{self.field}'
        comp = 'xyz'[self.component] if self.field == 'com' else INERTIA_AXES[self.component]
        return f'{self.name}.{self.field}.{comp}'


@dataclasses.dataclass(frozen=True)
class ParamSpace:
    """Selected parameters with coordinate references, scales and z bounds (numpy [P])."""

    entries: tuple
    reference: np.ndarray  # coordinate values at z = 0
    scale: np.ndarray
    log: np.ndarray        # bool: log transform
    lower: np.ndarray      # bounds in z
    upper: np.ndarray
    tendons: tuple = ()    # (k_tsl, k_l0 or -1, fixed l0, l_ref, lo, hi) per slack length
    segments: tuple = ()   # (k_mass, (k_com x3), (k_inertia x6)) per barycentric segment
    wide_lower: np.ndarray = None   # the box with every admissible slack length (see project)
    wide_upper: np.ndarray = None

    @property
    def size(self):
        return len(self.entries)

    def labels(self):
        return [e.label for e in self.entries]

    def from_z(self, z):
        """Parameter values (SI) of normalised coordinates."""
        z = jnp.asarray(z)
        c = jnp.where(self.log, self.reference * jnp.exp(z), self.reference + self.scale * z)
        theta = c
        for k, k_l0, l0_fixed, l_ref, _, _ in self.tendons:
            l0 = c[k_l0] if k_l0 >= 0 else l0_fixed
            theta = theta.at[k].set(l_ref - c[k] * l0)
        for k_m, k_c, k_i in self.segments:
            mass = c[k_m]
            com = c[jnp.array(k_c)] / mass
            inertia = c[jnp.array(k_i)] - mass * _parallel_axis(com)
            theta = theta.at[jnp.array(k_c)].set(com).at[jnp.array(k_i)].set(inertia)
        return theta

    def to_z(self, theta):
        """Normalised coordinates of parameter values (SI)."""
        theta = jnp.asarray(theta)
        c = theta
        for k, k_l0, l0_fixed, l_ref, _, _ in self.tendons:
            l0 = theta[k_l0] if k_l0 >= 0 else l0_fixed
            c = c.at[k].set((l_ref - theta[k]) / l0)
        for k_m, k_c, k_i in self.segments:
            mass = theta[k_m]
            com = theta[jnp.array(k_c)]
            c = c.at[jnp.array(k_c)].set(mass * com)
            c = c.at[jnp.array(k_i)].set(theta[jnp.array(k_i)] + mass * _parallel_axis(com))
        return jnp.where(self.log, jnp.log(jnp.abs(c) / self.reference),
                         (c - self.reference) / self.scale)

    def clip(self, z):
        return jnp.clip(z, self.lower, self.upper)

    def project(self, z, wide=False):
        """
        Clip z (numpy) into its box, then each coupled slack length into its bounds (m).

        The box (``lower``, ``upper``) of a slack-length coordinate holds its bounds at the
        template's optimal fibre length only, so with a fibre length far from it some slack
        lengths within their bounds are outside; starts are drawn in that box.  ``wide``
        clips to ``wide_lower``, ``wide_upper`` instead, which hold every slack length
        within its bounds at any fibre length within the fibre length's bounds (fits).
        """
        lower, upper = (self.wide_lower, self.wide_upper) if wide else (self.lower, self.upper)
        z = np.clip(np.asarray(z, dtype=float), lower, upper)
        for k, k_l0, l0_fixed, l_ref, lo, hi in self.tendons:
            l0 = self.reference[k_l0] * np.exp(z[k_l0]) if k_l0 >= 0 else l0_fixed
            c_lo, c_hi = (l_ref - hi) / l0, (l_ref - lo) / l0
            c = np.clip(self.reference[k] + self.scale[k] * z[k], c_lo, c_hi)
            z[k] = (c - self.reference[k]) / self.scale[k]
        return z

    def held(self, z, step, wide=False):
        """
        Constraints that hold the step (numpy, z units) at z: ('box', i) and ('slack', j).

        A coordinate at its box bound with the step pointing out is held; a slack length at
        one of its metre bounds is held there (to first order) when the step would take it
        out, changing the slack coordinate with the fibre length (``rows``).
        """
        lower, upper = (self.wide_lower, self.wide_upper) if wide else (self.lower, self.upper)
        z, step = np.asarray(z, dtype=float), np.asarray(step, dtype=float)
        held = set()
        for i in np.flatnonzero(((z <= lower + 1e-9 * (1.0 + np.abs(lower))) & (step < 0))
                                | ((z >= upper - 1e-9 * (1.0 + np.abs(upper))) & (step > 0))):
            held.add(('box', int(i)))
        for j, (k, k_l0, l0, c, c_lo, c_hi) in enumerate(self._slack_state(z)):
            tol = 1e-9 * (1.0 + abs(c))
            dl = step[k_l0] if k_l0 >= 0 else 0.0
            if (c >= c_hi - tol and self.scale[k] * step[k] + c_hi * dl > 0) or \
                    (c <= c_lo + tol and self.scale[k] * step[k] + c_lo * dl < 0):
                held.add(('slack', j))
        return held

    def rows(self, z, held):
        """
        Linear equalities A dz = b (numpy) that keep the ``held`` box and slack constraints.

        A held coordinate does not move; a held slack length keeps c L0 fixed, so its
        coordinate moves by -c dz_L0 / scale with its fibre length's coordinate.
        """
        z = np.asarray(z, dtype=float)
        slack = self._slack_state(z)
        rows = []
        for kind, i in sorted(key for key in held if key[0] in ('box', 'slack')):
            row = np.zeros(self.size)
            if kind == 'box':
                row[i] = 1.0
            else:
                k, k_l0, _, c, _, _ = slack[i]
                row[k] = self.scale[k]
                if k_l0 >= 0:
                    row[k_l0] = c
            rows.append(row)
        return np.reshape(rows, (len(rows), self.size)), np.zeros(len(rows))

    def _slack_state(self, z):
        """(k, k_l0, l0, c, c_lo, c_hi) per slack coordinate at z."""
        out = []
        for k, k_l0, l0_fixed, l_ref, lo, hi in self.tendons:
            l0 = self.reference[k_l0] * np.exp(z[k_l0]) if k_l0 >= 0 else l0_fixed
            c = self.reference[k] + self.scale[k] * z[k]
            out.append((k, k_l0, l0, c, (l_ref - hi) / l0, (l_ref - lo) / l0))
        return out

    def length_std(self, relative):
        """
        1-sigma (z units) per coordinate for a relative 1-sigma of each length (numpy [P]).

        ``relative`` applies to optimal fibre and tendon slack lengths at the template; other
        coordinates get nan.  A fibre length's coordinate is log(L0 / L0_ref), so its
        1-sigma is ``relative``; a slack length's is the normalised fibre length at l_ref,
        c = (l_ref - slack) / L0, in units of ``scale``, which a relative change r of the
        slack moves by r slack / L0.
        """
        std = np.full(self.size, np.nan)
        for k, entry in enumerate(self.entries):
            if entry.field == 'optimal_fiber_length':
                std[k] = relative
        for k, k_l0, l0_fixed, l_ref, _, _ in self.tendons:
            l0 = self.reference[k_l0] if k_l0 >= 0 else l0_fixed
            std[k] = relative * (l_ref / l0 - self.reference[k]) / self.scale[k]
        return std

    def scale_first_moments(self, z, factor):
        """Return z (numpy) with every barycentric segment's first moment m c times ``factor``."""
        z = np.array(z, dtype=float)
        for _, k_c, _ in self.segments:
            k = np.array(k_c)
            c = factor * (self.reference[k] + self.scale[k] * z[k])
            z[k] = (c - self.reference[k]) / self.scale[k]
        return self.project(z, wide=True)

    def slack_ok(self, k_t, c, l0):
        """Whether slack coordinate values c (with fibre lengths l0, m) are in bounds."""
        for k, _, _, l_ref, lo, hi in self.tendons:
            if k == k_t:
                tsl = l_ref - np.asarray(c) * np.asarray(l0)
                return (tsl >= lo) & (tsl <= hi)
        return np.ones(np.broadcast(np.asarray(c), np.asarray(l0)).shape, dtype=bool)

    def mask(self, predicate):
        return np.array([bool(predicate(e)) for e in self.entries])


def _flatten_space(space):
    """
    Split a ParamSpace into its numbers (leaves) and its structure (static).

    As a pytree the space is an argument of the identifier's compiled functions, not a
    constant inside them: spaces of one structure (the same selection on models of the same
    shape) share the compiled code, whatever the template's values.
    """
    tendon_numbers = tuple(t[2:] for t in space.tendons)      # (l0, l_ref, lo, hi) each
    leaves = (space.reference, space.scale, space.log, space.lower, space.upper,
              space.wide_lower, space.wide_upper, tendon_numbers)
    static = (space.entries, tuple(t[:2] for t in space.tendons), space.segments)
    return leaves, static


def _unflatten_space(static, leaves):
    entries, tendon_indices, segments = static
    *arrays, tendon_numbers = leaves
    tendons = tuple(tuple(k) + tuple(numbers)
                    for k, numbers in zip(tendon_indices, tendon_numbers))
    reference, scale, log, lower, upper, wide_lower, wide_upper = arrays
    return ParamSpace(entries, reference, scale, log, lower, upper, tendons, segments,
                      wide_lower, wide_upper)


jax.tree_util.register_pytree_node(ParamSpace, _flatten_space, _unflatten_space)


def _parallel_axis(com):
    """m-free parallel-axis term |c|^2 E - c c^T as (xx yy zz xy xz yz)."""
    x, y, z = com[0], com[1], com[2]
    return jnp.stack([y * y + z * z, x * x + z * z, x * x + y * y, -x * y, -x * z, -y * z])


def value_of(model, entry):
    holder, names = schema.holder(model, entry.section)
    arr = np.asarray(getattr(holder, entry.field))
    i = names.index(entry.name)
    return float(arr[i] if entry.component < 0 else arr[i, entry.component])


def _parse_selection(model, selection):
    """Entries from {section: [fields] | {name: [fields]}}."""
    entries = []
    for section, allowed in schema.FIELDS.items():
        spec = selection.get(section) or []
        _, names = schema.holder(model, section)
        if isinstance(spec, dict):
            unknown = [n for n in spec if n not in names]
            if unknown:
                raise ValueError(f'identification.parameters.{section}: unknown names '
                                 f'{unknown}; the model has {list(names)}')
            per_name = [(n, spec[n] or []) for n in names if n in spec]
        else:
            per_name = [(n, spec) for n in names]
        for name, fields in per_name:
            for field in fields:
                if field not in allowed:
                    raise ValueError(f'identification.parameters.{section}: {field!r} is not '
                                     f'identifiable; choose from {list(allowed)}')
                count = {'com': 3, 'inertia': 6}.get(field, 0)
                if count:
                    entries += [Entry(section, name, field, k) for k in range(count)]
                else:
                    entries.append(Entry(section, name, field))
    if not entries:
        raise ValueError('identification.parameters selects nothing to identify')
    return tuple(entries)


def _scale(model, entry, ref):
    if entry.field == 'com':
        return 0.01
    if entry.field == 'inertia':
        sk = model.skeleton
        i = sk.segment_names.index(entry.name)
        return 0.1 * float(np.max(np.asarray(sk.inertia)[i, :3]))
    if entry.field == 'emg_delay':
        return 0.01
    return 0.1 * max(abs(ref), 1e-2)


def _bound_pair(bounds, e):
    pair = bounds.get(e.section, {}).get(e.name, {}).get(e.field)
    if pair is not None and e.component >= 0:
        pair = pair[e.component]
    return pair if pair is not None else (-np.inf, np.inf)


def _z_bounds(value, pair, log, scale):
    lo, hi = pair
    if log:
        return (np.log(lo / value) if lo > 0 else -np.inf,
                np.log(hi / value) if np.isfinite(hi) else np.inf)
    return (lo - value) / scale, (hi - value) / scale


def make_space(model, bounds, selection=None):
    """Parameter space around ``model``'s values, with ``bounds`` (section/name/field)."""
    entries = _parse_selection(model, selection or DEFAULT_SELECTION)
    index = {(e.section, e.name, e.field, e.component): k for k, e in enumerate(entries)}
    q_mid = np.asarray(model.skeleton.joint_range).mean(axis=1)
    l_mid = np.asarray(dynamics.muscle_lengths(model, jnp.asarray(q_mid)))
    size = len(entries)
    ref = np.array([value_of(model, e) for e in entries])
    scale = np.ones(size)
    log = np.zeros(size, dtype=bool)
    lower = np.full(size, -np.inf)
    upper = np.full(size, np.inf)
    done = np.zeros(size, dtype=bool)
    tendons, segments = [], []
    sk = model.skeleton
    for name in sk.segment_names:
        k_m = index.get(('segments', name, 'mass', -1))
        k_c = [index.get(('segments', name, 'com', i)) for i in range(3)]
        k_i = [index.get(('segments', name, 'inertia', i)) for i in range(6)]
        if k_m is None or None in k_c or None in k_i:
            continue
        i = sk.segment_names.index(name)
        mass = float(np.asarray(sk.mass)[i])
        com = np.asarray(sk.com)[i]
        origin = np.asarray(sk.inertia)[i] + mass * np.asarray(_parallel_axis(com))
        diag = float(np.max(origin[:3]))
        ref[k_m], log[k_m] = mass, True
        lower[k_m], upper[k_m] = _z_bounds(mass, _bound_pair(bounds, entries[k_m]), True, 1.0)
        reach = 0.1 * mass * max(float(np.max(np.abs(com))), 0.01)
        for j, k in enumerate(k_c):
            ref[k], scale[k] = mass * com[j], reach          # 10 % of the com distance
            lower[k], upper[k] = -20.0, 20.0
        for j, k in enumerate(k_i):
            ref[k], scale[k] = origin[j], 0.1 * diag
            lower[k], upper[k] = (-9.0, 90.0) if j < 3 else (-10.0, 10.0)
        done[[k_m] + k_c + k_i] = True
        segments.append((k_m, tuple(k_c), tuple(k_i)))
    for k, e in enumerate(entries):
        if done[k]:
            continue
        v = ref[k]
        if e.field == 'tendon_slack_length':
            m = model.muscles.names.index(e.name)
            k_l0 = index.get(('muscles', e.name, 'optimal_fiber_length', -1), -1)
            l0 = float(np.asarray(model.muscles.optimal_fiber_length)[m])
            l_ref = float(l_mid[m])
            # z = 0.1 moves the slack length by about 10 % of itself (or of L0 if larger)
            step = 0.1 * max(abs(v), l0) / l0
            ref[k], scale[k] = (l_ref - v) / l0, step
            lo, hi = _bound_pair(bounds, e)
            lower[k] = ((l_ref - hi) / l0 - ref[k]) / step
            upper[k] = ((l_ref - lo) / l0 - ref[k]) / step
            tendons.append((k, k_l0, l0, l_ref, lo, hi))
            continue
        positive = (e.field in POSITIVE or (e.field == 'inertia' and e.component < 3)) and v > 0
        log[k] = positive
        scale[k] = 1.0 if positive else _scale(model, e, v)
        lower[k], upper[k] = _z_bounds(v, _bound_pair(bounds, e), positive, scale[k])
    wide_lower, wide_upper = lower.copy(), upper.copy()
    for k, k_l0, _, l_ref, lo, hi in tendons:
        if k_l0 < 0:
            continue
        l0_range = ref[k_l0] * np.exp([lower[k_l0], upper[k_l0]])
        if not (np.all(np.isfinite(l0_range)) and l0_range[0] > 0):
            continue
        c_lo, c_hi = np.min((l_ref - hi) / l0_range), np.max((l_ref - lo) / l0_range)
        wide_lower[k] = min(lower[k], (c_lo - ref[k]) / scale[k])
        wide_upper[k] = max(upper[k], (c_hi - ref[k]) / scale[k])
    return ParamSpace(tuple(entries), ref, scale, log, lower, upper, tuple(tendons),
                      tuple(segments), wide_lower, wide_upper)


def _groups(space):
    """Entries grouped by (section, field) as index arrays for a vectorised scatter."""
    groups = {}
    for k, e in enumerate(space.entries):
        groups.setdefault((e.section, e.field), []).append(k)
    return groups


def apply(model, space, theta):
    """Return a copy of ``model`` with the selected parameters set to ``theta``."""
    theta = jnp.asarray(theta)
    muscles, sk = model.muscles, model.skeleton
    m_updates, s_updates = {}, {}
    for (section, field), ks in _groups(space).items():
        holder, names = schema.holder(model, section)
        arr = jnp.asarray(getattr(holder, field))
        rows = np.array([names.index(space.entries[k].name) for k in ks])
        comps = np.array([space.entries[k].component for k in ks])
        values = theta[np.array(ks)]
        if comps[0] < 0:
            arr = arr.at[rows].set(values)
        else:
            arr = arr.at[rows, comps].set(values)
        (m_updates if section == 'muscles' else s_updates)[field] = arr
    if m_updates:
        muscles = dataclasses.replace(muscles, **m_updates)
    if s_updates:
        sk = dataclasses.replace(sk, **s_updates)
    return model.replace(muscles=muscles, skeleton=sk)


def values(model, space):
    """Return the selected parameters' current values, numpy [P]."""
    return np.array([value_of(model, e) for e in space.entries])


def drift_vector(space, drift):
    """Drift per coordinate of ``space`` (normalised units per sqrt(min)) from % per kind."""
    rate = {field: float(drift.get(kind, DEFAULT_DRIFT[kind])) / 100.0
            for kind, fields in DRIFT_KINDS.items() for field in fields}
    return np.array([rate.get(e.field, 0.0) for e in space.entries])
