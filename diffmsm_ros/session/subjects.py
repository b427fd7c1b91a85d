"""Hidden synthetic subjects: a template with perturbed muscle and bone parameters."""

import dataclasses

from diffmsm_ros.files import modelfile
from diffmsm_ros.model import dynamics
import jax
import jax.numpy as jnp
import numpy as np


def length_grid(model, count=25):
    """Muscle-tendon lengths (m) [K, n_muscles] on a grid over the joint ranges."""
    rng = np.asarray(model.skeleton.joint_range)
    axes = [np.linspace(lo, hi, count) for lo, hi in rng]
    grid = np.stack(np.meshgrid(*axes, indexing='ij'), -1).reshape(-1, len(axes))
    return np.asarray(jax.vmap(lambda q: dynamics.muscle_lengths(model, q))(jnp.asarray(grid)))


def normalised_length_range(model, lengths=None):
    """Min and max normalised fibre length of each muscle over the joint ranges (grid)."""
    lengths = length_grid(model) if lengths is None else lengths
    mus = model.muscles
    norm = (lengths - np.asarray(mus.tendon_slack_length)) / np.asarray(
        mus.optimal_fiber_length)
    return norm.min(axis=0), norm.max(axis=0)


def perturb(sf, relative, rng, bones=True, tries=50):
    """
    Draw a subject around ``sf`` with normal spread of relative size ``relative``.

    Strengths, optimal fibre lengths, tendon slack lengths (offset by ``relative`` x optimal
    length) and segment masses (inertia scaled alike) change; the subject stays inside the
    bounds and every muscle's working range inside its force-length curve.
    """
    model = sf.model
    mus, sk = model.muscles, model.skeleton
    nm = model.n_muscles
    lengths = length_grid(model)          # the geometry is not perturbed
    for _ in range(tries):
        f0 = np.asarray(mus.max_isometric_force) * (1 + relative * rng.standard_normal(nm))
        l0 = np.asarray(mus.optimal_fiber_length) * (1 + relative * rng.standard_normal(nm))
        tsl = np.asarray(mus.tendon_slack_length) + relative * np.asarray(
            mus.optimal_fiber_length) * rng.standard_normal(nm)
        new_mus = dataclasses.replace(mus, max_isometric_force=f0, optimal_fiber_length=l0,
                                      tendon_slack_length=tsl)
        new_sk = sk
        if bones:
            ratio = 1 + 0.5 * relative * rng.standard_normal(len(sk.segment_names))
            new_sk = dataclasses.replace(
                sk, mass=np.asarray(sk.mass) * ratio,
                inertia=np.asarray(sk.inertia) * ratio[:, None])
        truth = model.replace(muscles=new_mus, skeleton=new_sk, name=model.name + '-subject')
        candidate = dataclasses.replace(sf, model=truth, std={}, identification={})
        try:
            modelfile.check_bounds(candidate)
        except modelfile.ModelFileError:
            continue
        lo, hi = normalised_length_range(truth, lengths)
        if family_ok(truth, lo, hi):
            return candidate
    raise ValueError(f'could not draw a plausible subject with perturbation {relative}')


def family_ok(model, lo, hi):
    """Working range inside the active force-length curve with some margin."""
    if model.muscles.family != 'mujoco':
        return bool(np.all(lo > 0.4) and np.all(hi < 1.7))
    c = model.muscles.curve
    return bool(np.all(lo > np.asarray(c['lmin']) + 0.05)
                and np.all(hi < np.asarray(c['lmax']) - 0.05))
