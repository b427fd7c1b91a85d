"""
The one form of an identified model: a SubjectFile inside the template's bounds.

An accepted model becomes a ``SubjectFile`` here, with its 1-sigma values and the
identification section; the node's torque path takes its model and the published and
saved YAML is its text, so what the controller is given and what is written are the same.
Bounded parameters are kept inside their bounds without leaving a segment's inertia
unphysical (``clip_to_bounds``).
"""

import dataclasses

from diffmsm_ros.files import modelfile
from diffmsm_ros.identify.problem import INERTIA_FLOOR
from diffmsm_ros.model import schema
from diffmsm_ros.model.skeleton import inertia_matrix
import jax
import jax.numpy as jnp
import numpy as np


def _to_numpy(model):
    return jax.tree_util.tree_map(np.asarray, model)


def subject_file(template, problem, z, analysis, summary):
    """Build a SubjectFile for parameters z: model, 1-sigma values, identification section."""
    model = _to_numpy(problem.model_of(jnp.asarray(z)))
    space = problem.space
    std = {}
    section = dict(summary)
    section['parameters'] = space.labels()
    if analysis is not None:
        for e, s in zip(space.entries, analysis.std):
            slot = std.setdefault(e.section, {}).setdefault(e.name, {})
            if e.component < 0:
                slot[e.field] = float(s)
            else:
                slot.setdefault(e.field, [0.0] * (3 if e.field == 'com' else 6))
                slot[e.field][e.component] = float(s)
        section['residual_rms'] = analysis.residual_sigma
        section['samples'] = analysis.samples
        section['weak_directions'] = [{'std': w['std'], 'combination': w['combination']}
                                      for w in analysis.weak]
        section['strength_scale_std'] = analysis.scale_std
        section['sigma_widening'] = analysis.widening
        section['sigma_envelope_widening'] = analysis.envelope_widening
        section['sigma_drift_widening'] = analysis.drift_widening
        section['warnings'] = list(analysis.warnings)
    sf = dataclasses.replace(template, model=model, std=std, identification=section,
                             extra=dict(template.extra))
    sf.extra.pop('session', None)
    return clip_to_bounds(sf, template.model)


def clip_to_bounds(sf, template=None):
    """
    Keep every bounded parameter inside its bounds (coupled coordinates can overshoot).

    Clipping one product of inertia can leave a segment's inertia tensor, physical before,
    without a positive principal moment (a model file cannot hold that: a raw-EMG session
    of 15 min lost its model so).  With the ``template`` model such a tensor is moved
    toward the template's, just far enough that its smallest principal moment is back at
    ``INERTIA_FLOOR`` of the template's (both lie in the bounds, so every mix does), and
    the identification section's warnings say so.
    """
    model = sf.model
    mus, sk = model.muscles, model.skeleton
    updates_m, updates_s = {}, {}
    for section, names in sf.bounds.items():
        holder, order = schema.holder(model, section)
        out = updates_m if section == 'muscles' else updates_s
        for name, fields in names.items():
            i = order.index(name)
            for field, pair in fields.items():
                arr = np.array(out.get(field, np.asarray(getattr(holder, field))), dtype=float)
                pairs = np.asarray(pair, dtype=float).reshape(-1, 2)
                arr[i] = np.clip(arr[i], pairs[:, 0], pairs[:, 1]).reshape(arr[i].shape)
                out[field] = arr
    if template is not None and 'inertia' in updates_s:
        updates_s['inertia'], moved = physical_inertia(
            updates_s['inertia'], np.asarray(template.skeleton.inertia, dtype=float))
        if moved:
            section = dict(sf.identification)
            section['warnings'] = list(section.get('warnings', [])) + [
                f'inertia of {", ".join(sk.segment_names[i] for i in moved)} moved toward '
                'the template: clipped to its bounds it was not physical (weakly '
                'determined products of inertia)']
            sf = dataclasses.replace(sf, identification=section)
    model = model.replace(muscles=dataclasses.replace(mus, **updates_m),
                          skeleton=dataclasses.replace(sk, **updates_s))
    sf = dataclasses.replace(sf, model=model)
    modelfile.check_bounds(sf)
    return sf


def physical_inertia(inertia, reference, rounds=50):
    """
    Return (inertia [S, 6], indices of the segments moved), tensors physical again.

    A tensor (kg m^2; xx yy zz xy xz yz) whose smallest principal moment is below
    ``INERTIA_FLOOR`` of the reference's is replaced by the least mix toward the
    reference's that reaches it; the smallest principal moment is concave along the mix,
    so bisection finds the least.
    """
    def lowest(six):
        return float(np.linalg.eigvalsh(np.asarray(inertia_matrix(np.asarray(six))))[0])

    out, moved = np.array(inertia, dtype=float), []
    for i, (six, ref) in enumerate(zip(out, reference)):
        floor = INERTIA_FLOOR * lowest(ref)
        if lowest(six) >= floor or not floor > 0:
            continue
        lo, hi = 0.0, 1.0
        for _ in range(rounds):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if lowest((1 - mid) * six + mid * ref) >= floor else (mid, hi)
        out[i] = (1 - hi) * six + hi * ref
        moved.append(i)
    return out, moved
