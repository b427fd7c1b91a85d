"""``diffmsm run`` and ``diffmsm replay``: the node and a bag player without ros2 tools."""

import os

from diffmsm_ros.cli.commands import load_settings, UserError


def ros_arguments(params_file=None, use_sim_time=False, log_level=None, namespace=None):
    """Build the ``--ros-args`` list the launch file would give the node."""
    args = ['--ros-args']
    if params_file:
        args += ['--params-file', os.path.abspath(params_file)]
    if use_sim_time:
        args += ['-p', 'use_sim_time:=true']
    if log_level:
        args += ['--log-level', log_level]
    if namespace:
        args += ['-r', f'__ns:=/{namespace.strip("/")}']
    return args


def run(args):
    """Start the diffmsm node in this process (as ``ros2 launch`` does)."""
    load_settings(args.params_file)          # a clear error before ROS starts
    from diffmsm_ros.nodes import diffmsm_node
    code = diffmsm_node.main(['diffmsm'] + ros_arguments(
        args.params_file, args.use_sim_time, args.log_level, args.namespace)
        + getattr(args, 'ros_args', []))
    if code:
        raise UserError('the node could not start (see above)')


def replay(args):
    """Publish a bag with /clock, once or in a loop."""
    if not os.path.exists(args.bag):
        raise UserError(f'no bag at {args.bag}')
    if not args.rate > 0:
        raise UserError('--rate must be positive')
    if not args.wait >= 0:
        raise UserError('--wait must not be negative')
    import rclpy
    from diffmsm_ros.nodes.replay import BagReplayer
    # remappings and a namespace given with --ros-args (launch_ros) apply to the topics
    rclpy.init(args=['diffmsm_replay'] + (getattr(args, 'ros_args', []) or ['--ros-args']))
    node = rclpy.create_node('diffmsm_replay')
    try:
        player = BagReplayer(node, args.bag, rate=args.rate,
                             topics=args.topics or None, clock=not args.no_clock)
        if args.wait > 0 and not player.wait_for_subscribers(args.wait):
            print(f'not every topic has a subscriber after {args.wait:g} s; replaying anyway',
                  flush=True)
        rounds = 0
        while True:
            count = player.play()
            rounds += 1
            print(f'replayed {count} messages from {args.bag} (round {rounds})', flush=True)
            if not args.loop:
                break
    except ValueError as err:
        raise UserError(str(err)) from None
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
