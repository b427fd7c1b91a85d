"""
Start the diffmsm node: ``ros2 launch diffmsm_ros diffmsm.launch.py``.

Arguments: ``namespace`` (default none), ``params_file`` (default: the installed
config/diffmsm.yaml), ``use_sim_time`` (true when replaying bags), ``log_level``.

A parameters file applies to a node only under a key that matches the node's full name:
``diffmsm:`` means ``/diffmsm`` and misses ``/NS/diffmsm``, so the node would silently run on
its defaults.  The file is therefore checked here first (the bundled files use ``/**:``).
"""

import re

from launch import LaunchDescription
from launch import Substitution
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch.substitutions.substitution_failure import SubstitutionFailure
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
import yaml

PACKAGE = 'diffmsm_ros'
EXECUTABLE = 'diffmsm_node'
NODE_NAME = 'diffmsm'
PARAMS_FILE = ('config', 'diffmsm.yaml')
# s from Ctrl-C to SIGTERM: the node lets the identifier finish an update in flight (a robust
# start takes 5-12 s on the arm) and then stops it, within 2 x 10 s
STOP_TIMEOUT = '30'


def key_matches(key, full_name):
    """Whether a parameters-file node key (``/**``, ``*`` wildcards) names ``full_name``."""
    key = key if key.startswith('/') else '/' + key
    pattern = re.escape(key).replace(r'/\*\*', '(/[^/]+)*').replace(r'\*', '[^/]+')
    return re.fullmatch(pattern, full_name) is not None


def full_node_name(namespace):
    """``/NS/diffmsm`` (``/diffmsm`` without a namespace)."""
    namespace = namespace.strip('/')
    return f'/{namespace}/{NODE_NAME}' if namespace else f'/{NODE_NAME}'


def check_params_file(path, namespace):
    """Return ``path`` if it holds parameters for the node; else raise with the reason."""
    try:
        with open(path, encoding='utf-8') as fh:
            doc = yaml.safe_load(fh)
    except OSError as err:
        raise SubstitutionFailure(f'params_file {path}: cannot read it ({err.strerror})')
    except yaml.YAMLError as err:
        raise SubstitutionFailure(f'params_file {path}: not valid YAML ({err})')
    keys = [k for k, v in (doc.items() if isinstance(doc, dict) else [])
            if isinstance(v, dict) and 'ros__parameters' in v]
    name = full_node_name(namespace)
    if not any(key_matches(str(k), name) for k in keys):
        found = ', '.join(repr(k) for k in keys) or 'none'
        raise SubstitutionFailure(
            f'params_file {path} holds no parameters for the node {name} (its node keys: '
            f"{found}); key them '/**:' to apply in any namespace")
    return path


class CheckedParamsFile(Substitution):
    """The ``params_file`` argument, checked by ``check_params_file`` when launched."""

    def __init__(self, path, namespace):
        super().__init__()
        self.path = path
        self.namespace = namespace

    def describe(self):
        return f'CheckedParamsFile({self.path.describe()})'

    def perform(self, context):
        return check_params_file(self.path.perform(context), self.namespace.perform(context))


def generate_launch_description():
    """Declare the arguments and the node."""
    default_params = PathJoinSubstitution([FindPackageShare(PACKAGE), *PARAMS_FILE])
    namespace = LaunchConfiguration('namespace')
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node'),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='ROS 2 parameters file of the node'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='follow /clock (bag replay)'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='debug, info, warn, error or fatal'),
        Node(
            package=PACKAGE,
            executable=EXECUTABLE,
            name=NODE_NAME,
            namespace=namespace,
            parameters=[
                CheckedParamsFile(LaunchConfiguration('params_file'), namespace),
                {'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'),
                                                value_type=bool)},
            ],
            arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
            output='screen',
            emulate_tty=True,
            sigterm_timeout=STOP_TIMEOUT,
        ),
    ])
