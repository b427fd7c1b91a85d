"""ament_python / pip packaging of diffmsm_ros."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'diffmsm_ros'


def _requirements(path, pinned=False):
    """Return a file's requirements: package names (pins stay in the file), or pinned."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, path), encoding='utf-8') as fh:
        lines = [line.split('#')[0].strip() for line in fh]
    return [line if pinned else line.split('==')[0]
            for line in lines if line and not line.startswith('-')]


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*', 'bench', 'tools']),
    package_data={PACKAGE: ['templates/*.yaml']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.*')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml')),
    ],
    install_requires=['setuptools'] + _requirements('requirements-pip.txt'),
    # 'test' names pytest so that colcon test runs the tests with it
    # 'cluster': diffmsm identify-batch on Ray (pinned: requirements-cluster.txt)
    extras_require={'mujoco': ['mujoco-core', 'myo-sim'], 'test': ['pytest'],
                    'cluster': _requirements('requirements-cluster.txt', pinned=True)},
    zip_safe=False,
    maintainer='diffmsm_ros maintainers',
    maintainer_email='maintainers@users.noreply.b-seed-f2b36ae8.example',
    description='Online muscle and bone parameter identification (Diff-MSM) for ROS 2',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'diffmsm = diffmsm_ros.cli.main:main',
            'diffmsm_node = diffmsm_ros.nodes.diffmsm_node:main',
        ],
    },
)
