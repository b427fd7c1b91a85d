"""
The subject model's schema, declared once: sections, fields, units, plausible ranges, limits.

The model file reader and writer (``files.modelfile``), the identifier's parameter space
(``identify.params``), the online identifier and the torque path all read it from here.

A model has three sections of named parameters: ``muscles`` (Hill-type fields, per
muscle), ``segments`` (inertial fields, per segment) and ``joints`` (per joint).
"""

import typing

from diffmsm_ros.model.muscles import HILL_FIELDS

MUSCLE_FIELDS = HILL_FIELDS
SEGMENT_FIELDS = ('mass', 'com', 'inertia')
JOINT_FIELDS = ('damping', 'armature')
FIELDS = {'muscles': MUSCLE_FIELDS, 'segments': SEGMENT_FIELDS, 'joints': JOINT_FIELDS}
SECTIONS = tuple(FIELDS)

MAX_DELAY = 0.2     # s: the longest EMG delay a model may have (history kept before a step)


class Field(typing.NamedTuple):
    """A parameter's SI unit and the range a value must lie in to be plausible (None: any)."""

    unit: str
    low: typing.Optional[float] = None
    high: typing.Optional[float] = None


# plausible ranges catch unit mistakes such as centimetres or grams
SPECS = {
    'max_isometric_force': Field('N', 0.1, 2.0e4),
    'optimal_fiber_length': Field('m', 1e-3, 1.0),
    'tendon_slack_length': Field('m', -2.0, 2.0),
    'tau_act': Field('s', 1e-4, 1.0),
    'tau_deact': Field('s', 1e-4, 2.0),
    'emg_gain': Field('', 1e-3, 1e3),
    'emg_delay': Field('s', 0.0, MAX_DELAY),
    'mass': Field('kg', 1e-4, 200.0),
    'com': Field('m'),
    'inertia': Field('kg m^2'),
    'damping': Field('N m s/rad', 0.0, 100.0),
    'armature': Field('kg m^2', 0.0, 10.0),
    'timestep': Field('s', 1e-5, 0.02),     # of the model, not of a section
}


def holder(model, section):
    """Return (the pytree that holds ``section``'s fields, its names in order)."""
    if section == 'muscles':
        return model.muscles, model.muscles.names
    if section == 'segments':
        return model.skeleton, model.skeleton.segment_names
    if section == 'joints':
        return model.skeleton, model.skeleton.joint_names
    raise KeyError(f'no section {section!r}; sections are {list(SECTIONS)}')
