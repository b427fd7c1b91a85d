"""
Torque-path latency of the live node over localhost DDS.

A separate process publishes encoders at 1 kHz and EMG chunks at 100 Hz (10 samples of a
1 kHz envelope) taken from a simulated session, stamped with the wall clock; the node runs
as ``diffmsm run`` in its own process with the identifier updating every second; this
process receives ``~/joint_torque``.  Printed: p50/p99/max of the in-node compute time (the
node's own figures from /diagnostics) and of the end-to-end latency (encoder stamp ->
torque received), drops, and the node's CPU use.

    python bench/latency.py [--duration 30]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ENCODER_RATE = 1000.0
EMG_RATE = 1000.0
CHUNK = 10


def publisher(duration):
    """Publish /joint_states at 1 kHz and /emg at 100 Hz for ``duration`` s (own process)."""
    import rclpy
    from diffmsm_ros import templates
    from diffmsm_ros.jax_setup import configure
    from diffmsm_ros.nodes import convert
    from diffmsm_ros.session import synth
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    configure()
    elbow = templates.resolve('elbow')
    session = synth.simulate(elbow.model, elbow.model, 20.0, 0)
    # the session runs at the model rate (500 Hz): hold each row for two 1 kHz samples
    arrays = (session.q, session.qd, session.tau_exo, session.u)
    q, qd, tau, u = (np.repeat(x, 2, axis=0) for x in arrays)
    rclpy.init(args=['latency_publisher', '--ros-args'])
    node = rclpy.create_node('latency_publisher')
    pub_j = node.create_publisher(JointState, 'joint_states', qos_profile_sensor_data)
    pub_e = node.create_publisher(Float64MultiArray, 'emg', qos_profile_sensor_data)
    names = list(elbow.model.joint_names)
    period = 1.0 / ENCODER_RATE
    start = time.monotonic()
    count = 0
    total = int(duration * ENCODER_RATE)
    while count < total:
        due = start + count * period
        while True:
            left = due - time.monotonic()
            if left <= 0:
                break
            time.sleep(left if left > 2e-4 else 0)
        k = count % len(q)
        if count % CHUNK == CHUNK - 1:
            rows = [(k - j) % len(u) for j in range(CHUNK - 1, -1, -1)]
            pub_e.publish(convert.emg_message(u[rows]))
        pub_j.publish(convert.joint_message(time.time_ns(), names, q[k], qd[k], tau[k]))
        count += 1
    print(f'published {count} encoder samples, {count // CHUNK} EMG chunks', flush=True)
    node.destroy_node()
    rclpy.shutdown()


def cpu_seconds(pid):
    """User + system CPU seconds of a process (Linux /proc)."""
    with open(f'/proc/{pid}/stat', encoding='ascii') as fh:
        fields = fh.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--duration', type=float, default=30.0, help='s of publishing')
    parser.add_argument('--publisher', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_LOCALHOST_ONLY', '1')
    os.environ.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100))
    os.environ.setdefault('JAX_PLATFORMS', 'cpu')
    if args.publisher:
        publisher(args.duration)
        return
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import JointState
    from diffmsm_ros.nodes.client import Listener, start_node, stop_node, write_params
    work = tempfile.mkdtemp(prefix='diffmsm-latency-')
    pfile = write_params(os.path.join(work, 'params.yaml'), 'elbow',
                         os.path.join(work, 'model.yaml'), EMG_RATE,
                         {'identification.period': 1.0, 'model.save_on_update': False,
                          'stale_timeout': 0.1})
    node_proc = start_node(pfile, os.path.join(work, 'node.log'), use_sim_time=False)
    rclpy.init(args=['latency_bench', '--ros-args'])
    node = rclpy.create_node('latency_bench')
    listener = Listener(node)
    arrivals = []
    lock = threading.Lock()

    def on_torque(msg):
        now = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with lock:
            arrivals.append((now - stamp) * 1e-6)

    node.create_subscription(JointState, '/diffmsm/joint_torque', on_torque, 1000)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    print('waiting for the node to compile and report ready ...', flush=True)
    if not listener.ready.wait(600):
        sys.exit('node did not become ready')
    cpu0, wall0 = cpu_seconds(node_proc.pid), time.monotonic()
    pub = subprocess.run([sys.executable, __file__, '--publisher', '--duration',
                          str(args.duration)], capture_output=True, text=True)
    print(pub.stdout.strip().splitlines()[-1] if pub.stdout.strip() else pub.stderr[-2000:])
    seen = listener.diagnostics_count
    deadline = time.monotonic() + 10
    while listener.diagnostics_count < seen + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    cpu = (cpu_seconds(node_proc.pid) - cpu0) / (time.monotonic() - wall0)
    with listener.lock:
        diag = dict(listener.diagnostics or {})
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown()
    stop_node(node_proc)
    total = int(args.duration * ENCODER_RATE)
    lat = np.array(arrivals)
    tq, ident = diag.get('diffmsm: torque', {}), diag.get('diffmsm: identifier', {})
    print(f'\n{"":28s} {"p50":>8s} {"p99":>8s} {"max":>8s}')
    print(f'{"in-node compute (ms)":28s} {tq.get("step_ms_p50", "?"):>8s} '
          f'{tq.get("step_ms_p99", "?"):>8s} {tq.get("step_ms_max", "?"):>8s}'
          '   (last 2000 samples)')
    if lat.size:
        p50, p99 = np.percentile(lat, [50, 99])
        print(f'{"end-to-end latency (ms)":28s} {p50:8.3f} {p99:8.3f} {lat.max():8.3f}')
    print(f'encoder samples published {total}, received by the node '
          f'{tq.get("encoder_samples", "?")}, torques received {lat.size}, '
          f'withheld (stale) {tq.get("withheld_stale", "?")}, drops {total - lat.size}')
    print(f'identifier updates {ident.get("updates", "?")} (accepted '
          f'{ident.get("accepted", "?")}), last update {ident.get("update_s", "?")} s')
    print(f'node CPU use {100 * cpu:.0f} % of one core')


if __name__ == '__main__':
    main()
