"""
Torque-path latency of the live node over localhost DDS, beside the machine's floor.

A separate process publishes encoders at 1 kHz and EMG chunks at 100 Hz (10 samples of a
1 kHz envelope) from a simulated session, stamped with their sampling times on the wall
clock.  First a trivial echo node (a subscriber that republishes each encoder message at
once, in its own process) answers them: that is the floor of this machine, DDS and rclpy.
Then the node runs as ``diffmsm run`` with the identifier updating every second, and
answers the same stream.  Printed: the end-to-end latency (encoder stamp -> message
received here) of both, split at the answer's publish call (its DDS source timestamp);
the publisher's own lateness behind its 1 kHz schedule; the node's in-node compute time
(its /diagnostics), drops, counted losses and CPU use.  The publisher and the echo node run
real-time where the OS allows it, as an encoder driver does (``--rig-priority``).

Goal (issue 19): in-node p99 <= 0.5 ms over the whole run (at most 1 % of the samples
slower, from the node's session counts), end-to-end p99 <= 2 ms or within 2x of the echo
node's, no drops.  Exits 1 when a goal is missed.

    python bench/latency.py [--duration 20]
"""

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import psutil
import workdir   # this folder (python bench/...)

ENCODER_RATE = 1000.0
EMG_RATE = 1000.0
CHUNK = 10
GOAL_IN_NODE_P99 = 0.5      # ms
GOAL_E2E_P99 = 2.0          # ms (or within ECHO_FACTOR of the echo node's p99)
ECHO_FACTOR = 2.0
RIG_PRIORITY = 20           # SCHED_FIFO of the publisher and echo (the node's default)


def publisher(duration, priority):
    """Publish /joint_states at 1 kHz and /emg at 100 Hz for ``duration`` s (own process)."""
    realtime = as_a_driver(priority)
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
    deadline = time.monotonic() + 30.0
    while pub_j.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    names = list(elbow.model.joint_names)
    period = 1.0 / ENCODER_RATE
    start = time.monotonic()
    # each sample is stamped with its sampling time (a regular 1 kHz grid on the wall clock),
    # as an encoder driver does, not with the moment it is sent: a publisher that falls
    # behind then sends late samples with their own stamps (counted in the latency), instead
    # of a gap in the stamps and a burst that the node's gap counter took for lost samples
    # (1 328-1 697 "gaps" in 20 000 samples of which none was lost)
    wall_start = time.time_ns()
    count = 0
    total = int(duration * ENCODER_RATE)
    behind = np.zeros(total)      # ms from a sample's stamp to its publish call
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
        stamp = wall_start + round(count * period * 1e9)
        behind[count] = (time.time_ns() - stamp) * 1e-6
        pub_j.publish(convert.joint_message(stamp, names, q[k], qd[k], tau[k]))
        count += 1
    # the publisher's own lateness is part of every end-to-end figure: it says how much of
    # one is the machine's load on this process rather than the path measured
    p50, p99, top = percentiles(behind)
    print(f'published {count} encoder samples, {count // CHUNK} EMG chunks; the publisher '
          f'was behind its 1 kHz schedule by p50 {p50:.3f} ms, p99 {p99:.3f} ms, max '
          f'{top:.3f} ms ({"SCHED_FIFO " + str(priority) if realtime else "normal priority"})',
          flush=True)
    node.destroy_node()
    rclpy.shutdown()


def echo(priority):
    """Republish every /joint_states message on /echo/joint_torque at once (own process)."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    as_a_driver(priority)
    rclpy.init(args=['latency_echo', '--ros-args'])
    node = rclpy.create_node('echo')
    pub = node.create_publisher(JointState, '~/joint_torque', 10)
    node.create_subscription(JointState, 'joint_states', pub.publish, qos_profile_sensor_data)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):   # Ctrl-C, or its context ended
        pass


def as_a_driver(priority):
    """
    Run this process's threads (and those it starts) at SCHED_FIFO ``priority`` if allowed.

    An encoder driver on an exoskeleton PC runs real-time, as the node's torque path does:
    at normal priority the publisher shared a core with the identifier process and was
    behind its schedule by p99 1.5 ms in the node's run against 0.26 ms in the echo's
    (2026-12-03), which the end-to-end figures then counted against the node.  The echo
    node gets the same, so the floor is measured as the node runs.  ``--rig-priority 0``
    runs both at normal priority.  Returns whether the OS allowed it.
    """
    from diffmsm_ros.nodes import realtime
    return realtime.raise_priority(priority)


class Receiver:
    """End-to-end latencies (ms) of the torques of one topic (``client.JointStateTaker``)."""

    def __init__(self, node, topic):
        from diffmsm_ros.nodes.client import JointStateTaker
        from diffmsm_ros.nodes.convert import publish_wall
        self.publish_wall = publish_wall
        self.latencies = []
        self.legs = []      # (stamp -> the answer's publish call, publish -> received) ms
        self.taker = JointStateTaker(node, topic, self._on, topic.replace('/', '_'))

    def close(self):
        self.taker.close()

    def _on(self, msg, info=None):
        now = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.latencies.append((now - stamp) * 1e-6)
        published = self.publish_wall(info)
        if published:
            self.legs.append(((published - stamp) * 1e-6, (now - published) * 1e-6))


def publish(duration, priority):
    """Run the publisher process for ``duration`` s; return its last output line."""
    out = subprocess.run([sys.executable, __file__, '--publisher', '--duration',
                          str(duration), '--rig-priority', str(priority)],
                         capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    return lines[-1] if lines else out.stderr[-2000:]


def stolen(before):
    """Return the share (%) of all CPU time since ``before`` (psutil.cpu_times) the host took."""
    now = psutil.cpu_times()
    total = sum(now) - sum(before)
    steal = getattr(now, 'steal', 0.0) - getattr(before, 'steal', 0.0)
    return 100.0 * steal / total if total > 0 else float('nan')


def percentiles(values):
    a = np.asarray(values, dtype=float)
    if not a.size:
        return [float('nan')] * 3
    return list(np.percentile(a, [50, 99])) + [float(a.max())]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--duration', type=float, default=20.0, help='s of publishing')
    parser.add_argument('--rig-priority', type=int, default=RIG_PRIORITY,
                        help='SCHED_FIFO priority of the publisher and the echo node where '
                        'the OS allows it, as an encoder driver runs (0: normal)')
    parser.add_argument('--keep', action='store_true', help=workdir.KEEP_HELP)
    parser.add_argument('--publisher', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--echo', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_LOCALHOST_ONLY', '1')
    os.environ.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100))
    os.environ.setdefault('JAX_PLATFORMS', 'cpu')
    if args.publisher:
        publisher(args.duration, args.rig_priority)
        return 0
    if args.echo:
        echo(args.rig_priority)
        return 0
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from diffmsm_ros.nodes.client import Listener, start_node, stop_node, write_params
    rclpy.init(args=['latency_bench', '--ros-args'])
    node = rclpy.create_node('latency_bench')
    listener = Listener(node, torques=False)
    echo_rx = Receiver(node, '/echo/joint_torque')
    node_rx = Receiver(node, '/diffmsm/joint_torque')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    total = int(args.duration * ENCODER_RATE)

    # the floor: a trivial echo node in its own process
    echo_proc = subprocess.Popen([sys.executable, __file__, '--echo', '--rig-priority',
                                  str(args.rig_priority)])
    gc.disable()
    machine = psutil.cpu_times()
    echo_line = publish(args.duration, args.rig_priority)
    echo_stolen = stolen(machine)
    time.sleep(1.0)     # the last echoes in flight
    echo_proc.terminate()
    try:
        echo_proc.wait(10)
    except subprocess.TimeoutExpired:       # a loaded machine: rclpy's shutdown hung once
        echo_proc.kill()
        echo_proc.wait()
    gc.enable()

    work = tempfile.mkdtemp(prefix='diffmsm-latency-')
    pfile = write_params(os.path.join(work, 'params.yaml'), 'elbow',
                         os.path.join(work, 'model.yaml'), EMG_RATE,
                         {'identification.period': 1.0, 'model.save_on_update': False,
                          'stale_timeout': 0.1})
    node_proc = start_node(pfile, os.path.join(work, 'node.log'), use_sim_time=False)
    print(f'waiting for the node to compile and report ready (working folder {work}) ...',
          flush=True)
    if not listener.ready.wait(600):
        sys.exit('node did not become ready')
    proc = psutil.Process(node_proc.pid)
    procs = [proc] + proc.children(recursive=True)
    cpu0 = [p.cpu_times() for p in procs]
    wall0 = time.monotonic()
    gc.disable()
    machine = psutil.cpu_times()
    node_line = publish(args.duration, args.rig_priority)
    node_stolen = stolen(machine)
    seen = listener.diagnostics_count
    deadline = time.monotonic() + 10
    while listener.diagnostics_count < seen + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    gc.enable()
    wall = time.monotonic() - wall0
    cpu = [sum(p.cpu_times()[:2]) - sum(c[:2]) for p, c in zip(procs, cpu0)]
    with listener.lock:
        diag = dict(listener.diagnostics or {})
    listener.close()
    echo_rx.close()
    node_rx.close()
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown()
    stop_node(node_proc)

    tq, ident = diag.get('diffmsm: torque', {}), diag.get('diffmsm: identifier', {})
    echo_pct, node_pct = percentiles(echo_rx.latencies), percentiles(node_rx.latencies)
    in_node = [float(tq.get(k, 'nan')) for k in ('step_ms_p50', 'step_ms_p99', 'step_ms_max')]
    # the whole run's share of samples slower than the goal (the node counts them from its
    # start; nothing came before this run): p99 <= goal means at most 1 % of them
    steps = float(tq.get('steps', 'nan'))
    slow = float(tq.get(f'steps_over_{GOAL_IN_NODE_P99:g}ms', 'nan'))
    slow_share = slow / steps if steps > 0 else float('nan')
    # the encoder samples before the first EMG chunk (up to 10 ms of them) are withheld
    # and counted as having no EMG yet: that is the stream's start, not a loss
    no_emg = int(float(tq.get('withheld_no_emg', 0)))
    drops = total - len(node_rx.latencies) - no_emg
    print(f'\n{echo_line}\n{node_line}')
    print(f'\n{"ms":44s} {"p50":>8s} {"p99":>8s} {"max":>8s} {"received":>9s}')
    print(f'{"echo node, end to end (floor)":44s} {echo_pct[0]:8.3f} {echo_pct[1]:8.3f} '
          f'{echo_pct[2]:8.3f} {len(echo_rx.latencies):9d}')
    print(f'{"diffmsm node, end to end":44s} {node_pct[0]:8.3f} {node_pct[1]:8.3f} '
          f'{node_pct[2]:8.3f} {len(node_rx.latencies):9d}')
    print(f'{"diffmsm node, in-node (last 2000)":44s} {in_node[0]:8.3f} {in_node[1]:8.3f} '
          f'{in_node[2]:8.3f}')
    print(f'  in-node over the whole run: {slow:.0f} of {steps:.0f} samples slower than '
          f'{GOAL_IN_NODE_P99:g} ms ({100 * slow_share:.2f} %), '
          + ', '.join(f'{tq.get(f"steps_over_{e:g}ms", "?")} slower than {e:g} ms'
                      for e in (1, 2, 5)))
    # a slow sample whose thread was not that long on the CPU waited (the GIL, another
    # process or the host on its core); one that was, worked
    print('  of those, the sensor thread as long on the CPU (working, not waiting): '
          + ', '.join(f'{tq.get(f"steps_over_{e:g}ms_on_cpu", "?")} of '
                      f'{tq.get(f"steps_over_{e:g}ms", "?")} (> {e:g} ms)'
                      for e in (GOAL_IN_NODE_P99, 1, 2, 5)))
    # where the end-to-end time goes: up to the node's publish call (the publisher's
    # lateness, DDS in, the node's wait and work), and from there to this process
    for name, rx in (('echo', echo_rx), ('diffmsm node', node_rx)):
        if rx.legs:
            legs = np.asarray(rx.legs)
            for k, leg in enumerate(('stamp -> answer published', 'answer published -> here')):
                pct = percentiles(legs[:, k])
                print(f'{"  " + name + ", " + leg:44s} {pct[0]:8.3f} {pct[1]:8.3f} '
                      f'{pct[2]:8.3f}')
    print(f'\nencoder samples published {total}; the node saw {tq.get("encoder_samples", "?")}, '
          f'published {tq.get("published", "?")}, withheld late {tq.get("withheld_late", "?")}'
          f', stale {tq.get("withheld_stale", "?")}, no EMG yet {no_emg}, never arrived (gaps) '
          f'{tq.get("encoder_gaps", "?")}, longest wait {tq.get("longest_wait_ms", "?")} ms')
    print(f'torques received here {len(node_rx.latencies)}, drops (not received and not '
          f'withheld for no EMG yet) {drops}')
    print(f'identifier updates {ident.get("updates", "?")} (accepted {ident.get("accepted", "?")}'
          f'), last update {ident.get("update_s", "?")} s')
    print(f'CPU use: node {100 * cpu[0] / wall:.0f} %, identifier process '
          f'{100 * sum(cpu[1:]) / wall:.0f} % of one core')
    # a virtual machine's host may run other guests on its cores: the time it took from this
    # one (steal) is time no process here could run, whatever its priority
    print(f'CPU time taken by the host (steal) while publishing: {echo_stolen:.1f} % (echo), '
          f'{node_stolen:.1f} % (node) of the machine')
    e2e_goal = max(GOAL_E2E_P99, ECHO_FACTOR * echo_pct[1])
    failures = []
    if not slow_share <= 0.01:
        failures.append(f'in-node p99 over the run > {GOAL_IN_NODE_P99} ms ({100 * slow_share:.2f}'
                        f' % of samples slower)')
    if not node_pct[1] <= e2e_goal:
        failures.append(f'end-to-end p99 {node_pct[1]:.3f} ms > {e2e_goal:.3f} ms')
    if drops:
        failures.append(f'{drops} samples got no torque (and were not withheld for no EMG)')
    print('\nGOAL ' + ('MET' if not failures else 'MISSED: ' + '; '.join(failures)))
    workdir.finish(work, args.keep or bool(failures))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
