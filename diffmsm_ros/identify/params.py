"""
The parameters being identified: selection, normalised space, bounds, model update.

Each parameter is one scalar: (section, name, field, component).  In the normalised space
z, positive quantities use z = log(theta / theta_ref) and signed ones
z = (theta - theta_ref) / scale, so that z ~ 0.1 means "about 10 % off" for every kind.
"""

import dataclasses

from diffmsm_ros.model.muscles import HILL_FIELDS
import jax.numpy as jnp
import numpy as np

MUSCLE_FIELDS = HILL_FIELDS
SEGMENT_FIELDS = ('mass', 'com', 'inertia')
JOINT_FIELDS = ('damping', 'armature')
POSITIVE = {'max_isometric_force', 'optimal_fiber_length', 'tau_act', 'tau_deact',
            'emg_gain', 'mass'}
DEFAULT_SELECTION = {
    'muscles': ['max_isometric_force', 'optimal_fiber_length', 'tendon_slack_length'],
    'segments': ['mass', 'com', 'inertia'],
    'joints': ['damping'],
}
UNITS = {'max_isometric_force': 'N', 'optimal_fiber_length': 'm', 'tendon_slack_length': 'm',
         'tau_act': 's', 'tau_deact': 's', 'emg_gain': '', 'emg_delay': 's', 'mass': 'kg',
         'com': 'm', 'inertia': 'kg m^2', 'damping': 'N m s/rad', 'armature': 'kg m^2'}
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
    """Selected parameters with reference values, scales and bounds (all numpy [P])."""

    entries: tuple
    reference: np.ndarray
    scale: np.ndarray
    log: np.ndarray        # bool: log transform
    lower: np.ndarray      # bounds in z
    upper: np.ndarray

    @property
    def size(self):
        return len(self.entries)

    def labels(self):
        return [e.label for e in self.entries]

    def to_z(self, theta):
        theta = jnp.asarray(theta)
        return jnp.where(self.log, jnp.log(jnp.abs(theta) / self.reference),
                         (theta - self.reference) / self.scale)

    def from_z(self, z):
        z = jnp.asarray(z)
        return jnp.where(self.log, self.reference * jnp.exp(z), self.reference + self.scale * z)

    def clip(self, z):
        return jnp.clip(z, self.lower, self.upper)

    def mask(self, predicate):
        return np.array([bool(predicate(e)) for e in self.entries])


def _section_arrays(model, section):
    if section == 'muscles':
        return model.muscles, model.muscles.names
    if section == 'segments':
        return model.skeleton, model.skeleton.segment_names
    return model.skeleton, model.skeleton.joint_names


def value_of(model, entry):
    holder, names = _section_arrays(model, entry.section)
    arr = np.asarray(getattr(holder, entry.field))
    i = names.index(entry.name)
    return float(arr[i] if entry.component < 0 else arr[i, entry.component])


def _parse_selection(model, selection):
    """Entries from {section: [fields] | {name: [fields]}}."""
    entries = []
    for section, allowed in (('muscles', MUSCLE_FIELDS), ('segments', SEGMENT_FIELDS),
                             ('joints', JOINT_FIELDS)):
        spec = selection.get(section) or []
        _, names = _section_arrays(model, section)
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
    if entry.field == 'tendon_slack_length':
        l0 = value_of(model, Entry('muscles', entry.name, 'optimal_fiber_length'))
        return 0.1 * max(abs(ref), l0)
    if entry.field == 'com':
        return 0.01
    if entry.field == 'inertia':
        sk = model.skeleton
        i = sk.segment_names.index(entry.name)
        return 0.1 * float(np.max(np.asarray(sk.inertia)[i, :3]))
    if entry.field == 'emg_delay':
        return 0.01
    return 0.1 * max(abs(ref), 1e-2)


def make_space(model, bounds, selection=None):
    """Parameter space around ``model``'s values, with ``bounds`` (section/name/field)."""
    entries = _parse_selection(model, selection or DEFAULT_SELECTION)
    ref, scale, log, lo, hi = [], [], [], [], []
    for e in entries:
        v = value_of(model, e)
        positive = (e.field in POSITIVE or (e.field == 'inertia' and e.component < 3)) and v > 0
        pair = bounds.get(e.section, {}).get(e.name, {}).get(e.field)
        if pair is not None and e.component >= 0:
            pair = pair[e.component]
        b_lo, b_hi = pair if pair is not None else (-np.inf, np.inf)
        ref.append(v)
        log.append(positive)
        s = 1.0 if positive else _scale(model, e, v)
        scale.append(s)
        if positive:
            lo.append(np.log(b_lo / v) if b_lo > 0 else -np.inf)
            hi.append(np.log(b_hi / v) if np.isfinite(b_hi) else np.inf)
        else:
            lo.append((b_lo - v) / s)
            hi.append((b_hi - v) / s)
    return ParamSpace(entries, np.array(ref), np.array(scale), np.array(log),
                      np.array(lo), np.array(hi))


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
        holder, names = _section_arrays(model, section)
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
