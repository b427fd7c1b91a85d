"""
The README's exoskeleton-PC path measured: colcon workspace, ros2 launch, a replayed session.

Clones this repository (its HEAD) into a colcon workspace in a temporary folder, builds it,
simulates a hidden subject (``--duration`` s), sources the workspace and starts
``ros2 launch diffmsm_ros diffmsm.launch.py params_file:=... use_sim_time:=true``.  An
independent process (``diffmsm replay``) replays the session; this script counts the torques
as a robot controller would, then subscribes late to the latched model, and stops the launch
with Ctrl-C.  Prints the share of encoder samples (after the first EMG) that got a torque,
the late subscriber's model, and the exit code.  Needs the ROS 2 tools (``make venv``).

    python bench/launch_replay.py [--duration 60] [--rate 1.0]
"""

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def environment(folder):
    """DDS on this machine on a domain of its own; ROS files in ``folder``; the venv's tools."""
    env = dict(os.environ)
    env.update(ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', ROS_LOCALHOST_ONLY='1',
               ROS_DOMAIN_ID=env.get('ROS_DOMAIN_ID', str(random.randint(100, 199))),
               ROS_HOME=os.path.join(folder, 'ros_home'),
               ROS_LOG_DIR=os.path.join(folder, 'ros_log'), TMPDIR=os.path.join(folder, 'tmp'),
               JAX_PLATFORMS='cpu', PYTHONUNBUFFERED='1')
    os.makedirs(env['TMPDIR'], exist_ok=True)
    venv = os.path.dirname(sys.executable)
    env['PATH'] = venv + os.pathsep + env.get('PATH', '')
    prefixes = [p for p in env.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    env['AMENT_PREFIX_PATH'] = os.pathsep.join(prefixes + [sys.prefix])
    return env


def step(title, cmd, env, cwd):
    started = time.monotonic()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.STDOUT)
    print(f'{title}: {time.monotonic() - started:.1f} s', flush=True)


def stamps(bag):
    """Return the encoder stamps after the first EMG message of ``bag`` (ns)."""
    from diffmsm_ros.files import bags
    encoders, first_emg = [], None
    for topic, _, t, msg in bags.read_bag(bag):
        if topic == '/joint_states':
            encoders.append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
        elif first_emg is None:
            first_emg = t
    return [s for s in encoders if s > first_emg]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--duration', type=float, default=60.0, help='session length (s)')
    parser.add_argument('--rate', type=float, default=1.0, help='replay speed factor')
    parser.add_argument('--seed', type=int, default=5)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix='diffmsm_launch_replay_')
    env = environment(folder)
    os.environ.update(env)
    ws, session = os.path.join(folder, 'ws'), os.path.join(folder, 's1')
    os.makedirs(os.path.join(ws, 'src'))
    step('git clone', ['git', 'clone', '-q', ROOT, 'diffmsm_ros'], env, os.path.join(ws, 'src'))
    step('colcon build', ['colcon', 'build', '--packages-select', 'diffmsm_ros'], env, ws)
    step(f'simulate {args.duration:g} s', [
        'diffmsm', 'simulate', '--template', 'elbow', '--out', session, '--duration',
        str(args.duration), '--seed', str(args.seed)], env, folder)
    expected = set(stamps(os.path.join(session, 'bag')))

    import rclpy
    from diffmsm_ros.nodes.client import Listener
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String
    rclpy.init(args=['launch_replay', '--ros-args'])
    node = rclpy.create_node('launch_replay_counter')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    listener = Listener(node)

    launch_cmd = (f'source {ws}/install/setup.bash && exec ros2 launch diffmsm_ros '
                  f'diffmsm.launch.py params_file:={session}/params.yaml use_sim_time:=true')
    log = open(os.path.join(folder, 'launch.log'), 'w')
    started = time.monotonic()
    launch = subprocess.Popen(['bash', '-c', launch_cmd], env=env, cwd=ws, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not listener.ready.wait(300):
            raise SystemExit('the node did not become ready; see ' + log.name)
        print(f'ros2 launch to the first model: {time.monotonic() - started:.1f} s',
              flush=True)
        replay_started = time.monotonic()
        subprocess.run(['diffmsm', 'replay', os.path.join(session, 'bag'), '--rate',
                        str(args.rate), '--wait', '60'], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        print(f'replay ({args.rate:g}x): {time.monotonic() - replay_started:.1f} s')
        last = max(expected)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with listener.lock:
                if any(s == last for s, _ in listener.torques[-50:]):
                    break
            time.sleep(0.05)
        with listener.lock:
            got = {s for s, _ in listener.torques}
            published = list(listener.models)
        hit = len(expected & got)
        print(f'torques: {hit} of {len(expected)} encoder samples after the first EMG '
              f'({100.0 * hit / len(expected):.2f} %), {len(got - expected)} others')
        late = []
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(String, '/diffmsm/subject_model',
                                 lambda msg: late.append(msg.data), qos)
        deadline = time.monotonic() + 30
        while not late and time.monotonic() < deadline:
            time.sleep(0.05)
        from diffmsm_ros.files import modelfile
        if late:
            model = modelfile.loads(late[-1])
            print(f'late subscriber: a model ({model.identification.get("accepted_updates", 0)}'
                  f' accepted updates), the newest published: {late[-1] == published[-1]}; '
                  f'{len(published)} models published')
        else:
            print('late subscriber: no model')
    finally:
        os.killpg(launch.pid, signal.SIGINT)
        try:
            code = launch.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(launch.pid, signal.SIGKILL)
            code = launch.wait()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()
    print(f'Ctrl-C: ros2 launch exit code {code}; log {log.name}')
    shutil.rmtree(os.path.join(folder, 'ws', 'build'), ignore_errors=True)


if __name__ == '__main__':
    main()
