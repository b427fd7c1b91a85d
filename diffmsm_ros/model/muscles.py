"""
Hill-type muscle parameters and forces for the two curve families.

Every muscle carries the Hill parameters the identifier works on: max_isometric_force (N),
optimal_fiber_length (m), tendon_slack_length (m, an affine offset for the ``mujoco``
family, which may be negative), activation time constants (s), and the EMG-to-excitation
gain and delay (s).  Family parameters live in ``curve`` (a dict of arrays).
"""

import dataclasses

from diffmsm_ros.model import activation, curves_degroote, curves_mujoco
import jax
import jax.numpy as jnp

FAMILIES = ('mujoco', 'degroote2016')

HILL_FIELDS = ('max_isometric_force', 'optimal_fiber_length', 'tendon_slack_length',
               'tau_act', 'tau_deact', 'emg_gain', 'emg_delay')

# Family parameters, with the defaults used when a file omits them.
CURVE_DEFAULTS = {
    'mujoco': {'range0': 0.75, 'range1': 1.05, 'lmin': 0.5, 'lmax': 1.6, 'vmax': 1.5,
               'fpmax': 1.3, 'fvmax': 1.2, 'tau_smooth': 0.0},
    'degroote2016': {'vmax': 10.0, 'pennation': 0.0, 'fiber_damping': 0.1,
                     'activation_smoothness': 10.0},
}


@dataclasses.dataclass(frozen=True)
class Muscles:
    """Per-muscle parameter arrays, shape [n_muscles] each."""

    max_isometric_force: jax.Array
    optimal_fiber_length: jax.Array
    tendon_slack_length: jax.Array
    tau_act: jax.Array
    tau_deact: jax.Array
    emg_gain: jax.Array
    emg_delay: jax.Array
    curve: dict
    family: str = 'mujoco'
    names: tuple = ()


jax.tree_util.register_dataclass(
    Muscles, data_fields=list(HILL_FIELDS) + ['curve'], meta_fields=['family', 'names'])


def lengthrange(muscles):
    """Return MuJoCo's actuator length range, in m, for the Hill parameters, [n, 2]."""
    c = muscles.curve
    lr0 = muscles.tendon_slack_length + c['range0'] * muscles.optimal_fiber_length
    lr1 = muscles.tendon_slack_length + c['range1'] * muscles.optimal_fiber_length
    return jnp.stack([lr0, lr1], -1)


def forces(muscles, a, length, velocity):
    """
    Compute each muscle's force (N, negative pulls) and normalised fibre velocity.

    ``a`` activation, ``length`` muscle-tendon length (m), ``velocity`` its rate (m/s).
    """
    c = muscles.curve
    f0 = muscles.max_isometric_force
    l0 = muscles.optimal_fiber_length
    if muscles.family == 'mujoco':
        big_l = (length - muscles.tendon_slack_length) / l0
        big_v = velocity / (l0 * c['vmax'])
        fl = curves_mujoco.active_force_length(big_l, c['lmin'], c['lmax'])
        fv = curves_mujoco.force_velocity(big_v, c['fvmax'])
        fp = curves_mujoco.passive_force(big_l, c['lmax'], c['fpmax'])
        return -f0 * (fl * fv * a + fp), big_v
    if muscles.family == 'degroote2016':
        return curves_degroote.rigid_tendon_force(
            length, velocity, a, f0, l0, muscles.tendon_slack_length, c['vmax'],
            c['pennation'], c['fiber_damping'])
    raise ValueError(f'unknown curve family {muscles.family!r}; expected one of {FAMILIES}')


def activation_rate(muscles, u, a):
    """da/dt (1/s) from excitation u and activation a."""
    if muscles.family == 'mujoco':
        return activation.mujoco_activation_rate(
            u, a, muscles.tau_act, muscles.tau_deact, muscles.curve['tau_smooth'])
    return activation.degroote_activation_rate(
        u, a, muscles.tau_act, muscles.tau_deact, muscles.curve['activation_smoothness'])
