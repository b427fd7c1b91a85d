"""
Soak test of the live node: memory, torque count and identifier updates over a long session.

A simulated session of the elbow template (resampled to 1 kHz encoders and 2 kHz envelope
EMG; ``--duration`` s long, or ``--loop`` s looped to ``--duration`` with continuous stamps,
the state jumping back at every repetition) is published over localhost DDS to ``diffmsm
run`` (its own process, ``use_sim_time``, /clock set before every EMG chunk of 20 samples,
the identifier updating every second of data).
Pacing is by feedback, as fast as the node keeps up: this process publishes at most
``WINDOW`` encoder samples ahead of the newest ``~/joint_torque`` it received (after
``STALL_TIMEOUT`` s without progress it goes on, and counts a stall).

The resident memory (RSS) of the node process and of its identifier child is sampled after
every batch of ``BATCH`` samples.  Every ``--every`` s of session time a row is printed:
wall time, speed, RSS (node: highest; identifier: lowest and highest since the previous
row), encoder samples published, torques received, identifier updates.  At the end, per
process and in total: the peak (highest RSS during the warm-up against the highest in the
last interval) and the floor (lowest in the last interval of the warm-up against the lowest
in the last interval); the run passes if neither grew more than ``MAX_GROWTH`` %.  Also:
torques against encoder samples, updates, the node's counters, wall time, speed and CPU use
(including other processes on the machine).  The exit code is nonzero when the RSS check
fails (or the run ended before the warm-up did), the node or its identifier process died, or
the node did not exit cleanly.

    python bench/soak.py [--duration 600] [--loop 0] [--quick]
"""

import argparse
import math
import os
import sys
import tempfile
import threading
import time

import numpy as np
import psutil
import workdir   # this folder (python bench/...)

ENCODER_RATE = 1000.0       # Hz
EMG_RATE = 2000.0           # Hz
CHUNK = 10                  # encoder samples per EMG chunk (20 EMG samples, 10 ms)
WINDOW = 200                # encoder samples published ahead of the newest torque
BATCH = 100                 # encoder samples published at once (a multiple of CHUNK)
STALL_TIMEOUT = 1.0         # s without torque progress before publishing anyway
MAX_GROWTH = 5.0            # % RSS growth allowed after the warm-up
NODE_NS = '/diffmsm'
PARTS = ('node', 'ident', 'other', 'total')


def session_arrays(duration, seed=0):
    """Simulate the elbow: encoders at 1 kHz (q, qd, tau), EMG envelope at 2 kHz."""
    from diffmsm_ros import templates
    from diffmsm_ros.jax_setup import configure
    from diffmsm_ros.session import synth
    configure()
    elbow = templates.resolve('elbow')
    session = synth.simulate(elbow.model, elbow.model, duration, seed)
    count = int(round(duration * ENCODER_RATE)) // BATCH * BATCH
    t = np.arange(count) / ENCODER_RATE
    # states are samples of a smooth trajectory: interpolate; excitations are held over
    # each model step (zero-order hold), as the simulator applied them
    q, qd, tau = (np.stack([np.interp(t, session.t, x[:, j]) for j in range(x.shape[1])],
                           axis=1) for x in (session.q, session.qd, session.tau_exo))
    emg_t = np.arange(count * int(EMG_RATE / ENCODER_RATE)) / EMG_RATE
    step = np.minimum((emg_t / elbow.model.timestep + 1e-9).astype(int), len(session.t) - 1)
    return list(elbow.model.joint_names), q, qd, tau, session.u[step]


# ---------------------------------------------------------------------- processes (psutil)
def rss_mb(pid):
    """Resident set size of a process in MB (0 if it is gone)."""
    try:
        return psutil.Process(pid).memory_info().rss / 2 ** 20
    except psutil.Error:
        return 0.0


def cpu_seconds(pid):
    """User + system CPU seconds of a process (0 if it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def machine_busy_seconds():
    """CPU seconds all cores spent busy (not idle or waiting for I/O) since boot."""
    times = psutil.cpu_times()      # guest time is inside user time: the first 8 fields
    return sum(times[:8]) - times.idle - getattr(times, 'iowait', 0.0)


def descendants(pid):
    """Pids of all descendants of a process."""
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def is_identifier(pid):
    """Tell whether a process is a multiprocessing child (the identifier)."""
    try:
        return any('spawn_main' in part for part in psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


class Memory:
    """RSS (MB) of the node, its identifier child and other descendants; min/max per interval."""

    def __init__(self, node_pid):
        self.node_pid = node_pid
        self.pids = {}
        self.low, self.high = {}, {}
        self.refresh()

    def refresh(self):
        """Find the node's child processes again."""
        kids = descendants(self.node_pid)
        self.pids = {'node': [self.node_pid],
                     'ident': [p for p in kids if is_identifier(p)],
                     'other': [p for p in kids if not is_identifier(p)]}

    def now(self):
        """Return the current RSS per part and in total."""
        values = {part: sum(rss_mb(p) for p in pids) for part, pids in self.pids.items()}
        values['total'] = sum(values.values())
        return values

    def sample(self):
        """Take a sample into the current interval."""
        for part, value in self.now().items():
            self.low[part] = min(self.low.get(part, math.inf), value)
            self.high[part] = max(self.high.get(part, -math.inf), value)

    def interval(self):
        """Return (lowest, highest) since the last call; start a new interval."""
        self.sample()
        low, high = self.low, self.high
        self.low, self.high = {}, {}
        self.refresh()
        return low, high


def growth(before, after):
    return 100.0 * (after - before) / before if before > 0 else float('nan')


# ---------------------------------------------------------------------- DDS side
class Feedback:
    """Torques and diagnostics received from the node (callbacks on the spin thread)."""

    def __init__(self, node, t0_ns):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String
        self.t0_ns = t0_ns
        self.cond = threading.Condition()
        self.torques = 0
        self.newest = -1            # encoder sample index of the newest torque
        self.forced = -1            # index up to which a stall let publishing go on
        self.out_of_order = 0
        self.diagnostics = {}
        self.diagnostics_count = 0
        self.ready = threading.Event()
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(String, f'{NODE_NS}/subject_model',
                                 lambda _: self.ready.set(), latched)
        node.create_subscription(JointState, f'{NODE_NS}/joint_torque', self._torque, 1000)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._diag, 10)

    def _torque(self, msg):
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        index = (stamp - self.t0_ns) // 1_000_000
        with self.cond:
            self.torques += 1
            if index > self.newest:
                self.newest = index
            else:
                self.out_of_order += 1
            self.cond.notify()

    def _diag(self, msg):
        values = {s.name: {kv.key: kv.value for kv in s.values} for s in msg.status}
        with self.cond:
            self.diagnostics = values
            self.diagnostics_count += 1

    def reference(self):
        """Index the publisher counts ahead of (call with ``cond`` held)."""
        return max(self.newest, self.forced)

    def diag(self, status, key, default='?'):
        with self.cond:
            return self.diagnostics.get(f'diffmsm: {status}', {}).get(key, default)

    def wait_diagnostics(self, count, timeout):
        """Wait for ``count`` more /diagnostics messages (at most ``timeout`` s)."""
        with self.cond:
            seen = self.diagnostics_count
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.cond:
                if self.diagnostics_count >= seen + count:
                    return True
            time.sleep(0.05)
        return False


def log_summary(path, shown=5):
    """Count warning/error lines of the node log; return (counts, the first few)."""
    counts = {'ERROR': 0, 'WARN': 0, 'Traceback': 0}
    first = []
    try:
        with open(path, encoding='utf-8', errors='replace') as fh:
            for line in fh:
                for key in counts:
                    if key in line:
                        counts[key] += 1
                        if len(first) < shown:
                            first.append(line.rstrip()[:160])
    except OSError:
        pass
    return counts, first


# ---------------------------------------------------------------------- the soak
def parse():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--duration', type=float, default=600.0, help='s of session time')
    parser.add_argument('--loop', type=float, default=0.0,
                        help='s of simulated session, looped to --duration (0: no loop)')
    parser.add_argument('--warmup', type=float, default=None,
                        help='s of session time before the reference RSS (default 60)')
    parser.add_argument('--every', type=float, default=None,
                        help='s of session time between rows (default 30)')
    parser.add_argument('--keep', action='store_true', help=workdir.KEEP_HELP)
    parser.add_argument('--quick', action='store_true',
                        help='a short run: 90 s, warm-up 30 s, a row every 10 s')
    args = parser.parse_args()
    if args.quick:
        args.duration = 90.0
        args.warmup = 30.0 if args.warmup is None else args.warmup
        args.every = 10.0 if args.every is None else args.every
    args.every = 30.0 if args.every is None else args.every
    args.warmup = min(60.0, args.duration / 2) if args.warmup is None else args.warmup
    args.loop = min(args.loop, args.duration) if args.loop > 0 else args.duration
    if not (args.duration * ENCODER_RATE >= BATCH and args.loop * ENCODER_RATE >= BATCH):
        parser.error(f'--duration and --loop must be at least {BATCH / ENCODER_RATE:g} s')
    return args


def summary_table(warm, last, end):
    """Print RSS growth after the warm-up; return whether it stayed within the limit."""
    (w_low, w_high, w_now), (l_low, l_high) = warm, last
    print(f'RSS (MB)      {"peak: warm-up":>13s} {"last":>8s} {"growth":>8s}   '
          f'{"floor: warm-up":>14s} {"last":>8s} {"growth":>8s}   '
          f'{"at warm-up":>10s} {"end":>8s} {"growth":>8s}')
    passed = True
    for part, label in zip(PARTS, ('node', 'identifier', 'other', 'total')):
        peak, floor = growth(w_high[part], l_high[part]), growth(w_low[part], l_low[part])
        if part != 'other' and w_high[part] > 0:
            passed = passed and peak <= MAX_GROWTH and floor <= MAX_GROWTH
        print(f'{label:13s} {w_high[part]:13.1f} {l_high[part]:8.1f} {peak:7.2f} %   '
              f'{w_low[part]:14.1f} {l_low[part]:8.1f} {floor:7.2f} %   '
              f'{w_now[part]:10.1f} {end[part]:8.1f} {growth(w_now[part], end[part]):7.2f} %')
    return passed


def main():
    args = parse()
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_LOCALHOST_ONLY', '1')
    os.environ.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100))
    os.environ.setdefault('JAX_PLATFORMS', 'cpu')
    sys.setswitchinterval(2e-4)     # the spin thread receives torques while we publish
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from diffmsm_ros.nodes import convert
    from diffmsm_ros.nodes.client import start_node, stop_node, write_params
    from diffmsm_ros.session.record import T0_NS

    work = tempfile.mkdtemp(prefix='diffmsm-soak-')
    log_path = os.path.join(work, 'node.log')
    pfile = write_params(os.path.join(work, 'params.yaml'), 'elbow',
                         os.path.join(work, 'model.yaml'), EMG_RATE,
                         {'emg.kind': 'envelope', 'identification.enabled': True,
                          'identification.period': 1.0, 'model.save_on_update': False})
    node_proc = start_node(pfile, log_path, use_sim_time=True)
    print(f'node pid {node_proc.pid}, log {log_path}', flush=True)
    started = time.monotonic()
    names, q, qd, tau, emg = session_arrays(args.loop)       # while the node compiles
    period = len(q)
    per_chunk = int(EMG_RATE / ENCODER_RATE) * CHUNK

    def encoder_message(i):
        return convert.joint_message(0, names, q[i], qd[i], tau[i])

    def emg_message(c):
        return convert.emg_message(emg[c * per_chunk:(c + 1) * per_chunk])

    looped = f', looped to {args.duration:g} s' if args.loop < args.duration else ''
    print(f'simulated {args.loop:g} s in {time.monotonic() - started:.1f} s: {period} '
          f'encoder samples, {len(emg)} EMG samples x {emg.shape[1]} channels{looped}',
          flush=True)

    rclpy.init(args=['soak_bench', '--ros-args'])
    node = rclpy.create_node('soak_bench')
    feedback = Feedback(node, T0_NS)
    pub_j = node.create_publisher(JointState, 'joint_states', qos_profile_sensor_data)
    pub_e = node.create_publisher(Float64MultiArray, 'emg', qos_profile_sensor_data)
    pub_c = node.create_publisher(Clock, '/clock', 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()

    def publish_clock(stamp):
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(stamp, 1_000_000_000)
        pub_c.publish(msg)

    print('waiting for the node to compile and report ready ...', flush=True)
    while not feedback.ready.wait(1.0):
        if node_proc.poll() is not None or time.monotonic() - started > 900:
            print('node did not become ready; log tail:')
            with open(log_path, encoding='utf-8', errors='replace') as fh:
                print(''.join(fh.readlines()[-20:]))
            stop_node(node_proc)
            sys.exit(1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (
            pub_j.get_subscription_count() and pub_e.get_subscription_count()
            and pub_c.get_subscription_count()):
        time.sleep(0.05)
    publish_clock(T0_NS)
    time.sleep(0.2)
    memory = Memory(node_proc.pid)
    ident_pids = list(memory.pids['ident'])
    print(f'node ready after {time.monotonic() - started:.1f} s; identifier process '
          f'{ident_pids}\n', flush=True)

    header = (f'{"session s":>9s} {"wall s":>7s} {"x real":>6s} {"node MB":>8s} '
              f'{"ident MB":>17s} {"encoders":>9s} {"torques":>9s} {"behind":>6s} '
              f'{"updates":>7s} {"accepted":>8s}')
    print(header)
    print('-' * len(header), flush=True)
    total = int(round(args.duration * ENCODER_RATE)) // BATCH * BATCH
    every = max(BATCH, int(round(args.every * ENCODER_RATE)) // BATCH * BATCH)
    warm_at = int(round(args.warmup * ENCODER_RATE))
    warm_peak = {}          # highest RSS per part up to the end of the warm-up
    warm = last = None      # (lowest, highest[, now]) of the warm-up's last / the last row
    stalls = 0
    crashed = None
    cpu0 = [cpu_seconds(node_proc.pid), sum(cpu_seconds(p) for p in ident_pids),
            sum(os.times()[:2]), machine_busy_seconds()]
    wall0 = time.monotonic()

    def row(k):
        low, high = memory.interval()
        wall = time.monotonic() - wall0
        with feedback.cond:
            torques = feedback.torques
        print(f'{k / ENCODER_RATE:9.0f} {wall:7.1f} {k / ENCODER_RATE / wall:6.2f} '
              f'{high["node"]:8.1f} {low["ident"]:8.1f}..{high["ident"]:7.1f} {k:9d} '
              f'{torques:9d} {k - torques:6d} {feedback.diag("identifier", "updates"):>7s} '
              f'{feedback.diag("identifier", "accepted"):>8s}', flush=True)
        return low, high

    k = 0
    while k < total:
        with feedback.cond:
            if not feedback.cond.wait_for(
                    lambda: k - feedback.reference() <= WINDOW - BATCH, STALL_TIMEOUT):
                stalls += 1
                feedback.forced = k
        if node_proc.poll() is not None:
            crashed = f'the node process ended (code {node_proc.returncode})'
            break
        if ident_pids and not any(psutil.pid_exists(p) for p in ident_pids):
            crashed = 'the identifier process ended'
            break
        for j in range(k, k + BATCH):
            i = j % period
            stamp = T0_NS + j * 1_000_000
            if i % CHUNK == 0:
                publish_clock(stamp)
            msg = encoder_message(i)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            pub_j.publish(msg)
            if i % CHUNK == CHUNK - 1:
                pub_e.publish(emg_message(i // CHUNK))
        k += BATCH
        memory.sample()
        if k % every == 0 or k == total:
            low, high = row(k)
            last = (low, high)
            if k <= warm_at or warm is None:
                for part in PARTS:
                    warm_peak[part] = max(warm_peak.get(part, 0.0), high[part])
            if warm is None and k >= warm_at:
                warm = (low, dict(warm_peak), memory.now())
    wall = time.monotonic() - wall0
    cpu = [cpu_seconds(node_proc.pid), sum(cpu_seconds(p) for p in ident_pids),
           sum(os.times()[:2]), machine_busy_seconds()]
    cpu = [100.0 * (b - a) / max(wall, 1e-9) for a, b in zip(cpu0, cpu)]

    # let the last torques arrive, then take the node's final counters
    seen, still = -1, time.monotonic()
    while time.monotonic() - still < 2.0:
        with feedback.cond:
            if feedback.torques != seen:
                seen, still = feedback.torques, time.monotonic()
        time.sleep(0.1)
    feedback.wait_diagnostics(2, 10.0)
    end = memory.now()
    with feedback.cond:
        torques, out_of_order = feedback.torques, feedback.out_of_order
        diag = {name: dict(values) for name, values in feedback.diagnostics.items()}
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown()
    if crashed is None and node_proc.poll() is not None:
        crashed = f'the node process ended (code {node_proc.returncode})'
    code = stop_node(node_proc)

    tq = diag.get('diffmsm: torque', {})
    ident = diag.get('diffmsm: identifier', {})
    inputs = diag.get('diffmsm: inputs', {})
    print()
    passed = False
    if warm is not None and last is not None and k > warm_at:
        passed = summary_table(warm, last, end)
        print(f'RSS growth from the warm-up ({args.warmup:g} s of session time) to the last '
              f'{args.every:g} s: {"PASS" if passed else "FAIL"} (limit {MAX_GROWTH:g} % '
              'of peak and floor, per process and in total)')
    else:
        print('no RSS after the warm-up: the run ended before it')
    print(f'encoder samples published {k}, received by the node '
          f'{tq.get("encoder_samples", "?")}, torques published by the node '
          f'{tq.get("published", "?")}, torques received {torques} '
          f'({100.0 * torques / max(k, 1):.3f} %), missing {k - torques}')
    print(f'torques withheld: stale {tq.get("withheld_stale", "?")}, non-finite '
          f'{tq.get("withheld_nonfinite", "?")}; out of order {out_of_order}; '
          f'flow-control stalls {stalls}')
    print(f'bad inputs: joint_states {inputs.get("bad_joint_states", "?")}, emg '
          f'{inputs.get("bad_emg", "?")}; time jumps {inputs.get("time_jumps", "?")}; '
          f'EMG clock anchors {inputs.get("emg_clock_anchors", "?")}')
    print(f'identifier updates {ident.get("updates", "?")} (accepted '
          f'{ident.get("accepted", "?")}, rejected {ident.get("rejected", "?")}), errors '
          f'{ident.get("errors", "?")}, queue dropped {ident.get("queue_dropped", "?")}, '
          f'buffer resets {ident.get("buffer_resets", "?")}, last update took '
          f'{ident.get("update_s", "?")} s')
    print(f'torque step (ms): p50 {tq.get("step_ms_p50", "?")}, p99 '
          f'{tq.get("step_ms_p99", "?")}, max {tq.get("step_ms_max", "?")} '
          '(last 2000 samples)')
    print(f'wall time {wall:.1f} s for {k / ENCODER_RATE:g} s of session time: '
          f'{k / ENCODER_RATE / max(wall, 1e-9):.2f} x real time')
    print(f'CPU use (% of one core; {os.cpu_count()} cores): node {cpu[0]:.0f}, identifier '
          f'{cpu[1]:.0f}, this publisher {cpu[2]:.0f}, everything else on the machine '
          f'{max(0.0, cpu[3] - sum(cpu[:3])):.0f}')
    counts, first = log_summary(log_path)
    print(f'node log {log_path}: ' + ', '.join(f'{n} {key}' for key, n in counts.items()))
    for line in first:
        print(f'  {line}')
    print(f'node exit code {code}')
    if crashed:
        print(f'CRASH: {crashed}')
    failed = bool(crashed) or not passed or code != 0
    workdir.finish(work, args.keep or failed)
    if failed:
        sys.exit(1)


if __name__ == '__main__':
    main()
