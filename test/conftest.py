"""
Test set-up: DDS stays on this machine on a domain of its own; JAX runs in float64.

The suite has three layers: ``core`` (pure functions, no ROS), ``node`` (the ROS shell in
this process) and ``integration`` (real processes over DDS).  ``make test`` runs the first
two on two pytest-xdist workers, each on DDS domains of its own, and then the integration
tests on two workers, a module to each.
"""

import os

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ['ROS_LOCALHOST_ONLY'] = '1'
os.environ.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100))
DOMAINS_PER_WORKER = 5
_WORKER = os.environ.get('PYTEST_XDIST_WORKER', '')
if _WORKER.startswith('gw'):
    # domains of their own per xdist worker: a test may use its base and the next few
    # (test_torque_path) and the one 50 on (ros2_tools.other_domain)
    os.environ['ROS_DOMAIN_ID'] = str(100 + (int(os.environ['ROS_DOMAIN_ID']) - 100 +
                                             DOMAINS_PER_WORKER * (1 + int(_WORKER[2:]))) %
                                      100)
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

from diffmsm_ros.jax_setup import configure  # noqa: E402

# float64, and the persistent compilation cache the node processes use too: a computation
# compiled by one test (or node) is loaded, not compiled again, by the next
configure()

import pytest  # noqa: E402

ELBOW_XML = 'myo_sim:models/legacy/elbow/myoelbow_1dof6muscles_1dofexo.xml'


@pytest.fixture(scope='session')
def elbow():
    """Load the bundled elbow template (SubjectFile)."""
    from diffmsm_ros import templates
    return templates.resolve('elbow')


@pytest.fixture(scope='session')
def elbow_xml():
    """Return the path of MyoSuite's elbow with exoskeleton (needs myo-sim)."""
    from diffmsm_ros import templates
    return templates.myo_sim_path(ELBOW_XML[len('myo_sim:'):])


@pytest.fixture(scope='session')
def arm():
    """Load the bundled arm template (SubjectFile): shoulder elevation and elbow flexion."""
    from diffmsm_ros import templates
    return templates.resolve('arm')


@pytest.fixture(scope='session')
def arm_xml(tmp_path_factory):
    """Write the reduced MyoArm that MuJoCo simulates (needs mujoco and myo-sim)."""
    from diffmsm_ros.files import myoarm
    return myoarm.write_reduced_arm(str(tmp_path_factory.mktemp('arm') / 'arm.xml'))


SESSION_SECONDS = 12.0   # the simulated session the ROS 2 tool tests replay


@pytest.fixture(scope='session')
def readme_workspace(tmp_path_factory):
    """Run the README's exoskeleton-PC build steps once (ros2_tools.Workspace)."""
    import ros2_tools
    ros2_tools.require()
    return ros2_tools.Workspace(tmp_path_factory.mktemp('readme'), SESSION_SECONDS)


@pytest.fixture(scope='session')
def readme_launch(readme_workspace, tmp_path_factory):
    """
    Start the README's ``ros2 launch`` line in the built workspace, on a domain of its own.

    It is started, not waited for: test_ros2_readme_workspace.py waits for it, checks it and
    stops it.  test_ros2_launch_namespace.py asks for it too, so that the two nodes compile at
    the same time (each start is one busy core for about 20 s).
    """
    import ros2_tools
    ws = readme_workspace
    if ws.code != 0:
        pytest.fail(f'the README build steps failed ({ws.code}):\n{ws.log[-4000:]}')
    root = tmp_path_factory.mktemp('readme_launch')
    env = ros2_tools.environment(root, ws.sourced)
    env['ROS_DOMAIN_ID'] = str(ros2_tools.other_domain())
    line = ros2_tools.strip_comment(ros2_tools.readme_line(
        'ros2 launch diffmsm_ros diffmsm.launch.py params_file:=$HOME/s1'))
    launched = ros2_tools.Launched(ws.shell(line), env, str(root / 'launch.log'))
    yield {'launched': launched, 'env': env, 'domain': int(env['ROS_DOMAIN_ID']), 'ws': ws,
           'root': root}
    launched.ctrl_c()          # already stopped (and checked) by its tests, normally
