"""
The node in this process: a private rclpy Context, parameter overrides, handlers called.

No peer and no timing: the handlers are called directly.

One node serves the module; each test leaves it as it found it (parameters restored,
buffers reset), so the tests run in any order.
"""

import os

from diffmsm_ros import settings
from diffmsm_ros.emg.intake import EmgIntake
from diffmsm_ros.files import modelfile
from diffmsm_ros.live.timeline import InputTimeline, Torque
from diffmsm_ros.live.torque import TorquePath
from diffmsm_ros.nodes import convert
from diffmsm_ros.nodes.diffmsm_node import DiffMsmNode
import numpy as np
import pytest

pytestmark = pytest.mark.ros

OVERRIDES = {'identification.enabled': False, 'emg.msg_type': 'joint_state',
             'stale_timeout': 0.5, 'rates.encoders': 0.0}
T0_NS = 1_700_000_000_000_000_000     # ns, the stamp of the first sample fed below
ENCODER_PERIOD = 1_000_000            # ns (1 kHz)
EMG_PERIOD = 2_000_000                # ns (500 Hz, one sample per message)


def overrides(**extra):
    from rclpy.parameter import Parameter
    return [Parameter(name, value=value) for name, value in dict(OVERRIDES, **extra).items()]


@pytest.fixture(scope='module')
def context():
    import rclpy
    ctx = rclpy.Context()
    rclpy.init(args=[], context=ctx, domain_id=int(os.environ['ROS_DOMAIN_ID']))
    yield ctx
    ctx.shutdown()


@pytest.fixture(scope='module')
def node(context, tmp_path_factory):
    out = tmp_path_factory.mktemp('node') / 'model.yaml'
    made = DiffMsmNode(context=context, parameter_overrides=overrides(
        **{'model.output_path': str(out)}))
    yield made
    made.destroy_node()


def reset(node):
    from std_srvs.srv import Trigger
    assert node._on_reset(Trigger.Request(), Trigger.Response()).success


def test_descriptors_and_values_follow_the_parameter_table(node):
    for name, spec in settings.SPECS.items():
        desc = node.describe_parameter(name)
        assert desc.read_only == spec.read_only, name
        assert desc.description == spec.description, name
        if desc.floating_point_range:
            assert (desc.floating_point_range[0].from_value,
                    desc.floating_point_range[0].to_value) == (spec.low, spec.high), name
        if desc.integer_range:
            assert (desc.integer_range[0].from_value,
                    desc.integer_range[0].to_value) == (spec.low, spec.high), name
        expected = OVERRIDES.get(name, spec.default)
        if name == 'model.output_path':
            expected = node.values[name]
        assert node.get_parameter(name).value == expected, name
        assert node.values[name] == expected, name


def test_an_identifier_switched_off_at_start_up_is_not_started(node):
    """Identification off: the node is ready without the identifier's process or compile."""
    assert node.values['identification.enabled'] is False
    assert not node.worker.started and not node.worker.process.is_alive()
    status = {name: (text, values) for name, _, text, values in node.diagnostic_statuses()}
    text, values = status['diffmsm: identifier']
    assert text == 'paused' and values['state'] == 'not started'


def test_set_parameters_refuses_with_the_reason_and_applies_what_it_accepts(node):
    from rclpy.parameter import Parameter
    before = node.values['stale_timeout']
    refused = node.set_parameters([Parameter('emg.kind', value='raw')])[0]
    assert not refused.successful and 'read-only' in refused.reason
    assert node.values['emg.kind'] == 'envelope'
    refused = node.set_parameters([Parameter('stale_timeout', value=50.0)])[0]
    assert not refused.successful and 'out of range' in refused.reason
    assert node.timeline.config.stale_timeout == before
    try:
        done = node.set_parameters([Parameter('stale_timeout', value=0.25)])[0]
        assert done.successful, done.reason
        assert node.values['stale_timeout'] == 0.25
        assert node.timeline.config.stale_timeout == 0.25
    finally:
        node.set_parameters([Parameter('stale_timeout', value=before)])
    assert node.timeline.config.stale_timeout == before


def feed(node, steps, rng):
    """Messages of ``steps`` ms: EMG (channel names reversed) every 2 ms, encoders every 1."""
    muscles = list(node.template.model.muscle_names)
    joints = list(node.joints)
    messages = []
    for k in range(steps):
        stamp = T0_NS + k * ENCODER_PERIOD
        if (k * ENCODER_PERIOD) % EMG_PERIOD == 0:
            u = rng.uniform(0.05, 0.6, len(muscles))
            emg = convert.joint_message(stamp, muscles[::-1], u[::-1], [], [])
            messages.append(('emg', stamp, u, emg))
        q = 0.6 + 0.3 * np.sin(2 * np.pi * 0.7 * k * 1e-3 + np.arange(len(joints)))
        qd = 0.3 * 2 * np.pi * 0.7 * np.cos(2 * np.pi * 0.7 * k * 1e-3 + np.arange(len(joints)))
        tau = 0.1 * np.ones(len(joints))
        messages.append(('enc', stamp, (q, qd, tau),
                         convert.joint_message(stamp, joints, q, qd, tau)))
    return messages


def takes(count, largest, rng):
    """Split ``count`` messages into takes of 1 to ``largest`` (what a busy node takes)."""
    sizes = []
    while sum(sizes) < count:
        sizes.append(int(rng.integers(1, largest + 1)))
    return np.cumsum(sizes)[:-1]


@pytest.mark.parametrize('largest', [1, 40])
def test_samples_through_the_handlers_give_the_torque_of_the_time_line(node, largest):
    """
    The node's handlers wire messages to the time line as ``diffmsm_ros.live`` expects.

    Channel names map to muscles, joints are read by name, and each published torque is
    what the time line and torque path give for the same samples one by one: exactly when
    each message is taken alone, to rounding when a busy node takes up to 40 together and
    answers their encoder samples in batches (the EMG leads the encoders by more than the
    muscles' delay, so the EMG taken with a sample adds nothing it needs).
    """
    from diffmsm_ros.nodes.diffmsm_node import EMG, ENCODERS
    reset(node)
    published = []
    spy = node.out_torque.publish
    node.out_torque.publish = lambda *args: (published.append(args), spy(*args))
    try:
        messages = feed(node, 400, np.random.default_rng(7))
        for take in np.split(np.arange(len(messages)),
                             takes(len(messages), largest, np.random.default_rng(largest))):
            node._on_take([(EMG if messages[i][0] == 'emg' else ENCODERS, messages[i][3], None)
                           for i in take])
    finally:
        node.out_torque.publish = spy
        reset(node)
    model = node.template.model
    values = dict(node.values)
    timeline = InputTimeline(settings.timeline_config(values),
                             EmgIntake(settings.emg_config(values), model.muscle_names),
                             TorquePath(model))
    expected = []
    for kind, stamp, data, _ in messages:
        if kind == 'emg':
            timeline.on_emg_stamped(stamp, np.asarray(data).reshape(1, -1))
        else:
            out = timeline.on_encoder(stamp, *data)
            if type(out) is Torque:
                expected.append((stamp, out.torque))
    assert len(expected) >= 390        # every encoder sample once EMG has started
    assert [s for s, *_ in published] == [s for s, _ in expected]
    for (_, _, _, torque), (_, want) in zip(published, expected):
        if largest == 1:
            np.testing.assert_array_equal(torque, want)
        else:
            np.testing.assert_allclose(torque, want, rtol=1e-12, atol=1e-12)
    assert np.ptp([t[3][0] for t in published]) > 0.1     # the torque moved: not vacuous


def test_save_model_service_writes_the_current_model(node):
    from std_srvs.srv import Trigger
    path = node.values['model.output_path']
    if os.path.exists(path):
        os.remove(path)
    reply = node._on_save(Trigger.Request(), Trigger.Response())
    assert reply.success, reply.message
    saved = modelfile.load(path)
    modelfile.check_compatible(saved, node.template)
    np.testing.assert_array_equal(saved.model.muscles.max_isometric_force,
                                  node.template.model.muscles.max_isometric_force)


def test_settings_that_do_not_fit_the_model_stop_the_node_with_the_reason(context):
    with pytest.raises(settings.SettingsError, match='no_such_muscle'):
        DiffMsmNode(context=context, parameter_overrides=overrides(
            **{'emg.channels': ['no_such_muscle']}))
