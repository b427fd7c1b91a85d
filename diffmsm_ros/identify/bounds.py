"""
The identifier's default bounds: how far each parameter may move from a template's value.

A model file without ``bounds`` for a parameter gets these (``files.modelfile``); a file's
own bounds override them.
"""

from diffmsm_ros.model import schema
import numpy as np


def default_bounds(model):
    """Physically sensible bounds around a model's values, section -> name -> field."""
    mus, sk = model.muscles, model.skeleton
    out = {section: {} for section in schema.SECTIONS}
    for i, name in enumerate(mus.names):
        f0 = float(mus.max_isometric_force[i])
        l0 = float(mus.optimal_fiber_length[i])
        tsl = float(mus.tendon_slack_length[i])
        out['muscles'][name] = {
            'max_isometric_force': [0.2 * f0, 5.0 * f0],
            'optimal_fiber_length': [0.5 * l0, 2.0 * l0],
            'tendon_slack_length': [tsl - 0.5 * l0, tsl + 0.5 * l0],
            'tau_act': [0.002, 0.1], 'tau_deact': [0.005, 0.3],
            'emg_gain': [0.1, 10.0], 'emg_delay': [0.0, schema.MAX_DELAY]}
    for i, name in enumerate(sk.segment_names):
        mass = float(sk.mass[i])
        inertia = np.asarray(sk.inertia[i], dtype=float)
        scale = float(np.max(inertia[:3]))
        out['segments'][name] = {
            'mass': [0.2 * mass, 5.0 * mass],
            'com': [[float(c) - 0.2, float(c) + 0.2] for c in sk.com[i]],
            'inertia': [[0.1 * v, 10.0 * v] if k < 3 else [v - scale, v + scale]
                        for k, v in enumerate(inertia.tolist())]}
    for i, name in enumerate(sk.joint_names):
        damping = float(sk.damping[i])
        out['joints'][name] = {'damping': [0.0, 10.0 * damping + 1.0],
                               'armature': [0.0, 10.0 * float(sk.armature[i]) + 0.1]}
    return out
