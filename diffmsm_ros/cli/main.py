"""The ``diffmsm`` command line."""

import argparse
import sys

from diffmsm_ros.cli import cohort, commands, demo, live
from diffmsm_ros.files.modelfile import ModelFileError
from diffmsm_ros.identify.offline import RecordingError
from diffmsm_ros.settings import SettingsError


def build_parser():
    parser = argparse.ArgumentParser(
        prog='diffmsm', description='Online identification of muscle and bone parameters '
        'from EMG and joint encoders (Diff-MSM) for ROS 2.')
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('demo', help='synthetic session replayed through the real node')
    p.add_argument('--template', default='elbow')
    p.add_argument('--out', default='demo_output', help='folder for the bag, model and report')
    p.add_argument('--duration', type=float, default=None, help='session length (s)')
    p.add_argument('--rate', type=float, default=None, help='replay speed factor')
    p.set_defaults(func=demo.demo)

    p = sub.add_parser('simulate', help='write a synthetic session (rosbag2 + truth.yaml)')
    p.add_argument('--template', default='elbow')
    p.add_argument('--out', required=True, help='output folder (gets bag/ and truth.yaml)')
    p.add_argument('--duration', type=float, default=60.0, help='s')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--perturb', type=float, default=0.1,
                   help='relative spread of the hidden subject around the template')
    p.add_argument('--emg', choices=('envelope', 'raw'), default='envelope')
    p.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap')
    p.add_argument('--noise', type=float, default=0.0, help='encoder noise std (rad)')
    p.set_defaults(func=commands.simulate)

    p = sub.add_parser('import', help='import an MJCF model into a subject-model YAML file')
    p.add_argument('template', help='mjcf:PATH[?joints=..&lock=..&muscles=..&name=..]')
    p.add_argument('--out', required=True)
    p.set_defaults(func=commands.import_model)

    p = sub.add_parser('identify', help='offline identification of a recorded session')
    p.add_argument('bag')
    p.add_argument('--template', default=None, help='default: model.template of the '
                   'params file, else elbow')
    p.add_argument('--out', required=True, help='identified model (YAML)')
    p.add_argument('--params-file', default=None, help='ROS 2 parameters file of the node')
    p.add_argument('--report', default=None, help='folder for plots and a summary')
    p.add_argument('--truth', default=None, help='truth.yaml to compare against')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.add_argument('--period', type=float, default=None,
                   help='session seconds between online updates (default: a fast replay, '
                   'one chunk of the window per update; use identification.period to replay '
                   'exactly what the node does)')
    p.set_defaults(func=commands.identify)

    p = sub.add_parser('identify-batch', help='identify many recorded sessions as Ray tasks '
                       '(a cohort table, a plot of strengths across sessions)')
    p.add_argument('bags', nargs='+', metavar='BAG')
    p.add_argument('--out', required=True, help='folder: a sub-folder per session (model.yaml, '
                   'report/), cohort.csv, summary.md, strengths.png')
    p.add_argument('--address', default=None, help='a running Ray cluster (auto, '
                   'ray://HOST:PORT); default: a local Ray instance')
    p.add_argument('--workers', type=int, default=None,
                   help='CPUs of the local Ray instance (default: all)')
    p.add_argument('--template', default=None, help='default: model.template of the '
                   'params file, else elbow')
    p.add_argument('--params-file', default=None, help='ROS 2 parameters file of the node')
    p.add_argument('--manifest', default=None,
                   help='CSV with columns session,subject (default: the subject is the '
                   'session name up to its first _)')
    p.add_argument('--retries', type=int, default=3,
                   help='times Ray retries a session whose worker process died')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=cohort.identify_batch)

    p = sub.add_parser('run', help='start the diffmsm node in this process')
    p.add_argument('--params-file', default=None, help='ROS 2 parameters file')
    p.add_argument('--use-sim-time', action='store_true', help='follow /clock')
    p.add_argument('--log-level', default=None, help='debug, info, warn, error')
    p.add_argument('--namespace', default=None)
    p.set_defaults(func=live.run)

    p = sub.add_parser('replay', help='publish a bag with /clock')
    p.add_argument('bag')
    p.add_argument('--rate', type=float, default=1.0, help='speed factor (2 = twice as fast)')
    p.add_argument('--loop', action='store_true', help='start over at the end')
    p.add_argument('--topics', nargs='*', default=None, help='only these topics')
    p.add_argument('--no-clock', action='store_true', help='do not publish /clock')
    p.add_argument('--wait', type=float, default=0.0, metavar='S',
                   help='first wait up to S s for a subscriber on every topic (a node that '
                   'is still compiling)')
    p.set_defaults(func=live.replay)
    return parser


def split_ros_args(argv):
    """
    Split ``argv`` into the command's own arguments and the ROS ones.

    ``--ros-args ... [--]`` (as ros2 run and launch_ros append: remappings, namespace) go to
    rclpy; everything else to argparse.
    """
    own, ros, inside = [], [], False
    for arg in argv:
        if arg == '--ros-args':
            inside = True
            ros.append(arg)
        elif inside and arg == '--':
            inside = False
        elif inside:
            ros.append(arg)
        else:
            own.append(arg)
    return own, ros


def main(argv=None):
    own, ros = split_ros_args(sys.argv[1:] if argv is None else list(argv))
    args = build_parser().parse_args(own)
    args.ros_args = ros
    try:
        return args.func(args) or 0
    except (commands.UserError, ModelFileError, SettingsError, RecordingError) as err:
        print(f'diffmsm {args.command}: error: {err}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
