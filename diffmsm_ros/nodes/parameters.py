"""
The node's ROS parameters, declared from ``settings.SPECS`` and checked when set.

Descriptors carry ranges, choices and the read-only flag.
"""

from diffmsm_ros import settings, templates
from diffmsm_ros.nodes.identifier_messages import Enable, Iterations, Period
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)


def descriptor(name, spec):
    """Build the ParameterDescriptor of one spec (description, read-only, range, choices)."""
    desc = ParameterDescriptor(name=name, description=spec.description,
                               read_only=spec.read_only)
    if spec.choices:
        desc.additional_constraints = 'one of: ' + ', '.join(spec.choices)
    if spec.low is not None and isinstance(spec.default, (int, float)) and \
            not isinstance(spec.default, bool):
        if isinstance(spec.default, int):
            desc.integer_range = [IntegerRange(from_value=int(spec.low),
                                               to_value=int(spec.high), step=1)]
        else:
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(spec.low), to_value=float(spec.high), step=0.0)]
    return desc


def declare(node):
    """Declare every parameter on ``node``; return the checked values (flat dict)."""
    for name, spec in settings.SPECS.items():
        node.declare_parameter(name, spec.default, descriptor(name, spec))
    return {name: settings.check(name, node.get_parameter(name).value)
            for name in settings.SPECS}


def resolve_template(values):
    """Load ``model.template`` and check ``joints`` against it (SettingsError if unusable)."""
    try:
        template = templates.resolve(values['model.template'])
    except (OSError, ValueError) as err:
        raise settings.SettingsError(f'model.template: {err}') from None
    names = [n for n in values['joints'] if n]
    joints = template.model.joint_names
    if names and sorted(names) != sorted(joints):
        raise settings.SettingsError(f'joints {names} must name the model joints {list(joints)}')
    return template


def on_set(node, params):
    """Check new values (refusing read-only or invalid ones, with the reason); apply them."""
    updates = {}
    for p in params:
        if p.name == 'use_sim_time':
            continue
        spec = settings.SPECS.get(p.name)
        if spec is None:
            return SetParametersResult(successful=False, reason=f'unknown parameter {p.name}')
        if spec.read_only:
            return SetParametersResult(successful=False, reason=f'{p.name} is read-only')
        try:
            updates[p.name] = settings.check(p.name, p.value)
        except settings.SettingsError as err:
            return SetParametersResult(successful=False, reason=str(err))
    node.values.update(updates)
    for name, message in (('identification.enabled', Enable),
                          ('identification.period', Period),
                          ('identification.iterations', Iterations)):
        if name in updates:
            node.worker.command(message(updates[name]))
    if 'diagnostics_period' in updates:
        node.set_diagnostics_period(updates['diagnostics_period'])
    node.timeline.config = settings.timeline_config(node.values)
    return SetParametersResult(successful=True)
