"""
Replay a recorded session through the node: ``ros2 launch diffmsm_ros replay.launch.py bag:=DIR``.

Starts diffmsm.launch.py following the bag's clock (``use_sim_time``) and, beside it,
``diffmsm replay`` (no ``ros2 bag`` needed), which publishes the bag's topics and ``/clock``
once the node subscribes: the node compiles for 10-40 s first.  Arguments: ``bag`` (a
rosbag2 folder, mcap or sqlite3), ``rate`` (speed factor), ``loop`` (start over at the end),
and the node's ``namespace``, ``params_file`` and ``log_level``.  The node keeps running
after the replay (save its model with ``~/save_model``; Ctrl-C stops both).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'diffmsm_ros'
EXECUTABLE = 'diffmsm'
NODE_LAUNCH = 'diffmsm.launch.py'
PARAMS_FILE = ('config', 'diffmsm.yaml')
WAIT_FOR_NODE = '600'       # s the replay waits for the node's subscriptions
INPUTS = ('joint_states', 'emg')   # the node's inputs, recorded as /joint_states and /emg


def _replay(loop):
    """Return the ``diffmsm replay`` process, with or without ``--loop``."""
    arguments = ['replay', LaunchConfiguration('bag'), '--rate', LaunchConfiguration('rate'),
                 '--wait', WAIT_FOR_NODE] + (['--loop'] if loop else [])
    condition = IfCondition if loop else UnlessCondition
    return Node(
        package=PACKAGE,
        executable=EXECUTABLE,
        name='diffmsm_replay',
        namespace=LaunchConfiguration('namespace'),
        arguments=arguments,
        # recorded inputs go to the node's namespace; /clock stays global
        remappings=[('/' + topic, topic) for topic in INPUTS],
        output='screen',
        condition=condition(LaunchConfiguration('loop')),
    )


def generate_launch_description():
    """Declare the arguments, the node and the replay."""
    share = FindPackageShare(PACKAGE)
    node_launch = PythonLaunchDescriptionSource(
        PathJoinSubstitution([share, 'launch', NODE_LAUNCH]))
    return LaunchDescription([
        DeclareLaunchArgument('bag', description='rosbag2 folder to replay'),
        DeclareLaunchArgument('rate', default_value='1.0',
                              description='replay speed (2.0 = twice as fast)'),
        DeclareLaunchArgument('loop', default_value='false',
                              description='start the bag over at its end'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node'),
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([share, *PARAMS_FILE]),
                              description='ROS 2 parameters file of the node'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='debug, info, warn, error or fatal'),
        IncludeLaunchDescription(node_launch, launch_arguments={
            'namespace': LaunchConfiguration('namespace'),
            'params_file': LaunchConfiguration('params_file'),
            'use_sim_time': 'true',
            'log_level': LaunchConfiguration('log_level'),
        }.items()),
        _replay(loop=False),
        _replay(loop=True),
    ])
