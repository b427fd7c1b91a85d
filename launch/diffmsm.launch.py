"""
Start the diffmsm node: ``ros2 launch diffmsm_ros diffmsm.launch.py``.

Arguments: ``namespace`` (default none), ``params_file`` (default: the installed
config/diffmsm.yaml), ``use_sim_time`` (true when replaying bags), ``log_level``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'diffmsm_ros'
EXECUTABLE = 'diffmsm_node'
NODE_NAME = 'diffmsm'
PARAMS_FILE = ('config', 'diffmsm.yaml')


def generate_launch_description():
    """Declare the arguments and the node."""
    default_params = PathJoinSubstitution([FindPackageShare(PACKAGE), *PARAMS_FILE])
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
            namespace=LaunchConfiguration('namespace'),
            parameters=[
                LaunchConfiguration('params_file'),
                {'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'),
                                                value_type=bool)},
            ],
            arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
            output='screen',
            emulate_tty=True,
        ),
    ])
