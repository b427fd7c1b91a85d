"""
Talking to a running diffmsm node over DDS: start/stop it, listen, call its services.

Used by ``diffmsm demo``, the integration tests and the benchmarks.
"""

import collections
import os
import signal
import subprocess
import sys
import threading

from diffmsm_ros.nodes import sensor_loop
import yaml

SERVICE_TIMEOUT = 30.0
DIAGNOSTICS_KEPT = 300      # most recent /diagnostics messages kept by a Listener


class JointStateTaker:
    """
    JointState messages of one topic handed to ``callback(msg, info)`` as they come.

    On a sensor loop of its own (``SensorLoop``, a node of its own in ``node``'s context)
    where rclpy offers one, else through ``node``'s executor.  At 1 kHz a Python client
    keeps up only on the loop: through the executor its own handling (about 0.4 ms of CPU
    per message) fell behind beside the diffmsm node and counted its backlog as the node's
    latency (p50 283 ms in bench/latency.py).
    """

    def __init__(self, node, topic, callback, suffix):
        from sensor_msgs.msg import JointState
        self.loop = None
        if not sensor_loop.available():
            node.create_subscription(JointState, topic, callback, 1000)
            return
        import rclpy
        self.node = rclpy.create_node(node.get_name() + suffix, context=node.context)
        sub = self.node.create_subscription(JointState, topic, callback, 1000,
                                            event_callbacks=sensor_loop.no_event_callbacks())
        self.loop = sensor_loop.SensorLoop(node.context, [(sub, callback)])
        self.loop.start()

    def close(self):
        """Stop the loop and its node (before rclpy shuts down)."""
        if self.loop is not None:
            self.loop.stop()
            self.node.destroy_node()
            self.loop = None


class Listener:
    """
    Subscriptions of the demo: subject models, torques, diagnostics (thread-safe).

    The torques (one per encoder sample, up to 1 kHz) come through a ``JointStateTaker``.
    """

    def __init__(self, node, ns='/diffmsm', torques=True):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy)
        from std_msgs.msg import String
        self.lock = threading.Lock()
        self.models = []
        self.torques = []
        self.diagnostics = None
        self.diagnostics_count = 0
        self.diagnostics_history = collections.deque(maxlen=DIAGNOSTICS_KEPT)
        self.ready = threading.Event()
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(String, f'{ns}/subject_model', self._model, latched)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._diag, 10)
        self.taker = None
        if torques:                 # else the caller takes the torques itself
            self.taker = JointStateTaker(node, f'{ns}/joint_torque', self._torque, '_torques')

    def close(self):
        """Stop the torque loop (before rclpy shuts down)."""
        if self.taker is not None:
            self.taker.close()
            self.taker = None

    def _model(self, msg):
        with self.lock:
            self.models.append(msg.data)
        self.ready.set()

    def _torque(self, msg, info=None):
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.torques.append((stamp, list(msg.effort)))

    def _diag(self, msg):
        values = {}
        for status in msg.status:
            values[status.name] = {kv.key: kv.value for kv in status.values}
            values[status.name]['message'] = status.message
            values[status.name]['level'] = int.from_bytes(bytes(status.level), 'little') \
                if isinstance(status.level, (bytes, bytearray)) else int(status.level)
        with self.lock:
            self.diagnostics = values
            self.diagnostics_history.append(values)
            self.diagnostics_count += 1


def start_node(params_file, log_path, extra_env=None, use_sim_time=True):
    """Start ``diffmsm run`` in its own process (the real node over DDS)."""
    env = dict(os.environ, **(extra_env or {}))
    log = open(log_path, 'w', encoding='utf-8')
    cmd = [sys.executable, '-m', 'diffmsm_ros.cli.main', 'run', '--params-file', params_file]
    if use_sim_time:
        cmd.append('--use-sim-time')
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def stop_node(proc, timeout=20.0):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def call_trigger(node, name, timeout=SERVICE_TIMEOUT):
    """Call a std_srvs/Trigger service; return the response (None if it fails)."""
    from std_srvs.srv import Trigger
    client = node.create_client(Trigger, name)
    if not client.wait_for_service(timeout_sec=timeout):
        return None
    future = client.call_async(Trigger.Request())
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    if not done.wait(timeout):
        return None
    return future.result()


def call_set_bool(node, name, value, timeout=SERVICE_TIMEOUT):
    """Call a std_srvs/SetBool service; return the response (None if it fails)."""
    from std_srvs.srv import SetBool
    client = node.create_client(SetBool, name)
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            return None
        future = client.call_async(SetBool.Request(data=bool(value)))
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        return future.result() if done.wait(timeout) else None
    finally:
        node.destroy_client(client)


def write_params(path, template_spec, output_path, emg_rate, extra=None):
    """Write a node parameters file; return its path."""
    params = {'model.template': template_spec, 'model.output_path': output_path,
              'emg.sample_rate': float(emg_rate)}
    params.update(extra or {})
    with open(path, 'w', encoding='utf-8') as fh:
        yaml.safe_dump({'diffmsm': {'ros__parameters': params}}, fh, sort_keys=False)
    return path
