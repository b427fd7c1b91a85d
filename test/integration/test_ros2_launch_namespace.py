"""
A launch test (launch_pytest): diffmsm.launch.py as colcon installed it, in a namespace.

The launch file of the README's workspace (conftest.py ``readme_workspace``) starts the real
node with ``namespace``, ``params_file`` and ``use_sim_time:=true``; the README's simulated
session is replayed into the namespace by ``diffmsm replay`` with the remappings that
replay.launch.py gives it.  Checked: the parameters file reaches the namespaced node, every
topic and service of the node is under the namespace, one torque per encoder sample after
the first EMG, the latched model reaches a late subscriber, and the launch's SIGINT stops the
node with exit code 0 and the newest model in ``model.output_path``.
"""

import importlib
import os
import threading

import accounting
from diffmsm_ros.files import bags, modelfile
import numpy as np
import pytest
import ros2_tools
from ros2_tools import wait_until
import yaml

ros2_tools.require(module_level=True)

launch_pytest = importlib.import_module('launch_pytest')   # only where the ROS 2 tools are

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NAMESPACE = 'exo'
NODE = f'/{NAMESPACE}/diffmsm'
READY_TIMEOUT = 300.0
REPLAY_RATE = 1.0
UPDATE_TIMEOUT = 120.0      # s for the identifier to accept an update of the session
BOUNDARY = 20_000_000       # ns before the first EMG where a sample may go either way
GLOBAL = {'/diagnostics', '/rosout', '/parameter_events', '/clock'}   # not namespaced


@pytest.fixture(scope='module')
def setup(readme_workspace, readme_launch, tmp_path_factory):
    """
    Give this process the workspace's sourced environment and write the node's parameters.

    The launch runs in this process: it finds the package through ``AMENT_PREFIX_PATH`` and
    hands its environment to the node.  (``readme_launch`` is asked for only so that the
    README's node compiles at the same time as this one.)
    """
    import tempfile
    from launch.logging import launch_config
    ws = readme_workspace
    root = tmp_path_factory.mktemp('launch_namespace')
    saved_env, saved_tmp = dict(os.environ), tempfile.tempdir
    env = ros2_tools.environment(root, ws.sourced)
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = os.environ['TMPDIR']            # launch_params_* files
    launch_config.log_dir = os.environ['ROS_LOG_DIR']
    session = yaml.safe_load(open(os.path.join(ws.session, 'params.yaml')))
    params = session['/**']['ros__parameters']
    output = str(root / 'model.yaml')
    params['model'] = {'output_path': output, 'save_on_update': True}
    params_file = str(root / 'params.yaml')
    with open(params_file, 'w') as fh:
        yaml.safe_dump({'/**': {'ros__parameters': params}}, fh)
    launch_file = os.path.join(ws.ws, 'install', 'diffmsm_ros', 'share', 'diffmsm_ros',
                               'launch', 'diffmsm.launch.py')
    yield {'launch_file': launch_file, 'params_file': params_file, 'output': output,
           'bag': os.path.join(ws.session, 'bag'), 'root': root}
    os.environ.clear()
    os.environ.update(saved_env)
    tempfile.tempdir = saved_tmp


@launch_pytest.fixture(scope='module')
def namespaced_launch(setup):
    """Include the installed diffmsm.launch.py; record the exit code of every process."""
    from launch import LaunchDescription
    from launch.actions import IncludeLaunchDescription, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    exits = {}
    return LaunchDescription([
        RegisterEventHandler(OnProcessExit(on_exit=lambda event, _: exits.__setitem__(
            event.action.name, event.returncode))),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(setup['launch_file']),
            launch_arguments={'namespace': NAMESPACE, 'params_file': setup['params_file'],
                              'use_sim_time': 'true'}.items()),
        launch_pytest.actions.ReadyToTest(),
    ]), exits


@pytest.fixture(scope='module')
def ros(setup):
    """Spin an rclpy node of this module with a Listener on the namespaced node."""
    import rclpy
    from diffmsm_ros.nodes.client import Listener
    from rclpy.executors import SingleThreadedExecutor
    context = rclpy.Context()
    rclpy.init(args=['test_ros2_launch_namespace', '--ros-args'], context=context)
    node = rclpy.create_node('launch_test_client', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    listener = Listener(node, ns=NODE)
    yield {'node': node, 'listener': listener}
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def wait_ready(ros):
    """
    Wait until the node published its first model (it compiles first, see the README).

    Called in the tests, not in a fixture: launch_pytest runs the launch's event loop (which
    starts and serves the node's process) only while a test runs.
    """
    assert ros['listener'].ready.wait(READY_TIMEOUT), 'the namespaced node did not get ready'
    return ros


def replay(setup):
    """Replay the session into the namespace as replay.launch.py does."""
    cmd = [ros2_tools.command('diffmsm') or 'diffmsm', 'replay', setup['bag'],
           '--rate', str(REPLAY_RATE), '--wait', '60',
           '--ros-args', '-r', f'__ns:=/{NAMESPACE}', '-r', '/joint_states:=joint_states',
           '-r', '/emg:=emg']
    code, out = ros2_tools.run(cmd, dict(os.environ), 300.0)
    assert code == 0 and 'replayed' in out, out


def bag_stamps(setup):
    """Return the session's encoder stamps (ns) and the bag time of its first EMG message."""
    stamps, first_emg = [], None
    for topic, _, t, msg in bags.read_bag(setup['bag']):
        if topic == '/joint_states':
            stamps.append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
        elif first_emg is None:
            first_emg = t
    return np.array(stamps), first_emg


def diagnostic(listener, status, key):
    with listener.lock:
        return (listener.diagnostics or {}).get(status, {}).get(key)


@pytest.mark.launch(fixture=namespaced_launch)
def test_parameters_file_reaches_the_namespaced_node(ros, setup):
    from rcl_interfaces.srv import GetParameters
    node = wait_ready(ros)['node']
    client = node.create_client(GetParameters, f'{NODE}/get_parameters')
    assert client.wait_for_service(timeout_sec=30.0)
    done = threading.Event()
    future = client.call_async(GetParameters.Request(
        names=['emg.sample_rate', 'model.output_path', 'use_sim_time']))
    future.add_done_callback(lambda _: done.set())
    assert done.wait(30.0)
    rate, output, sim_time = future.result().values
    assert rate.double_value == 500.0                 # from the file (the default is 1000)
    assert output.string_value == setup['output']
    assert sim_time.bool_value


@pytest.mark.launch(fixture=namespaced_launch)
def test_every_topic_and_service_is_under_the_namespace(ros):
    node = wait_ready(ros)['node']

    def names(kind):
        getter = getattr(node, f'get_{kind}_names_and_types_by_node')
        return {name for name, _ in getter('diffmsm', f'/{NAMESPACE}')}

    published, subscribed = names('publisher'), names('subscriber')
    services = names('service')
    assert {f'{NODE}/joint_torque', f'{NODE}/muscle_states',
            f'{NODE}/subject_model', '/diagnostics'} <= published
    assert {f'/{NAMESPACE}/joint_states', f'/{NAMESPACE}/emg', '/clock'} <= subscribed
    assert {f'{NODE}/save_model', f'{NODE}/reset', f'{NODE}/enable_identification',
            f'{NODE}/set_parameters'} <= services
    for name in published | subscribed | services:
        assert name in GLOBAL or name.startswith(f'/{NAMESPACE}/'), name
    # nothing of the node outside it
    assert not node.get_publishers_info_by_topic('/diffmsm/joint_torque')
    assert not node.get_subscriptions_info_by_topic('/joint_states')


@pytest.mark.launch(fixture=namespaced_launch)
def test_torque_for_every_encoder_sample(ros, setup):
    """
    Every encoder sample after the first EMG gets a torque or is counted by the node.

    Beside the suite's other tests on two cores, the start of a replay once stalled the
    node for 181-214 ms; the samples that waited longer than the deadline were withheld
    and counted (41 and 54 of 5 995), as the overload policy says (issue 19).
    """
    listener = wait_ready(ros)['listener']
    stamps, first_emg = bag_stamps(setup)
    torques, counted = accounting.replayed(listener, len(stamps), lambda: replay(setup),
                                           stamps)
    got = np.array([s for s, _ in torques])
    expected = stamps[stamps > first_emg]
    accounting.assert_accounted(got, counted, accounting.ANSWERED_UNDER_LOAD)
    # what was not answered was counted: late, stale or missing, never a wrong stamp
    missing = np.setdiff1d(expected, got)
    assert len(missing) <= counted['withheld_late'] + counted['withheld_stale'] + \
        counted['encoder_gaps'], (len(missing), counted)
    extra = np.setdiff1d(got, expected)              # only at the first EMG's boundary
    assert np.all((extra <= first_emg) & (extra >= first_emg - BOUNDARY)), extra - first_emg
    assert len(np.unique(got)) == len(got)
    assert np.all(np.isfinite(np.array([e for _, e in torques])))


@pytest.mark.launch(fixture=namespaced_launch)
def test_latched_model_reaches_a_late_subscriber(ros):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String
    node, listener = wait_ready(ros)['node'], ros['listener']
    [info] = node.get_publishers_info_by_topic(f'{NODE}/subject_model')
    assert info.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert info.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    got = []
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    sub = node.create_subscription(String, f'{NODE}/subject_model',
                                   lambda msg: got.append(msg.data), qos)
    try:
        # the newest model, also when an update is accepted meanwhile
        assert wait_until(lambda: got and got[-1] == listener.models[-1], 30.0), \
            'a late subscriber got no model, or not the newest'
    finally:
        node.destroy_subscription(sub)
    assert modelfile.loads(got[-1]).model.n_muscles == 6


@pytest.mark.launch(fixture=namespaced_launch)
def test_identifier_accepts_an_update_of_the_session(ros, setup):
    """The replayed session brings an accepted update, saved (``model.save_on_update``)."""
    listener = wait_ready(ros)['listener']

    def accepted():
        return int(diagnostic(listener, 'diffmsm: identifier', 'accepted') or 0)

    with listener.lock:
        replayed = bool(listener.torques)
    if not replayed:
        replay(setup)                # not replayed by another test (selected on its own)
    assert wait_until(lambda: accepted() > 0 and len(listener.models) >= 2, UPDATE_TIMEOUT), \
        'no update of the session was accepted'
    assert wait_until(lambda: os.path.exists(setup['output']), 10.0)


@pytest.mark.launch(fixture=namespaced_launch, shutdown=True)
def test_sigint_stops_cleanly_and_keeps_the_newest_model(namespaced_launch, ros, setup):
    """
    The launch's SIGINT: exit code 0, and ``model.output_path`` holds the newest model.

    launch_pytest runs this after the other tests of the module (so after an accepted
    update); the node may accept one more while it stops, which it saves but no longer
    publishes.
    """
    _, exits = namespaced_launch
    assert exits == {'diffmsm_node-1': 0}, exits
    saved = modelfile.load(setup['output'])
    with ros['listener'].lock:
        newest = modelfile.loads(ros['listener'].models[-1])
    assert saved.identification['accepted_updates'] >= \
        newest.identification['accepted_updates'] >= 1
