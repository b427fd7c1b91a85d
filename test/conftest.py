"""Test set-up: DDS stays on this machine on a domain of its own; JAX runs in float64."""

import os

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ['ROS_LOCALHOST_ONLY'] = '1'
os.environ.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402

jax.config.update('jax_enable_x64', True)

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
