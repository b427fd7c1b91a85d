"""
Message conversion between ROS 2 messages and the arrays the node computes with.

Inputs are checked here: a message that cannot be used raises ``InputError`` with a short
reason (the node counts it, reports it on /diagnostics and logs it, throttled).
"""

import array
import math
import time

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from diffmsm_ros.bad_input import BadInput
import numpy as np
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension


class InputError(BadInput):
    """A message that cannot be used (see ``BadInput`` for the codes)."""


def publish_wall(info):
    """Publish time (ns, wall clock) of a message from its MessageInfo, if known."""
    if not info:
        return None
    value = info.get('source_timestamp') if isinstance(info, dict) else None
    return int(value) if value else None


def stamp_to_ns(stamp):
    """Nanoseconds of a builtin_interfaces/Time."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns):
    """builtin_interfaces/Time of nanoseconds."""
    ns = int(ns)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _field(msg, name, count, index, required):
    values = getattr(msg, name)
    if len(values) == 0:
        if required:
            raise InputError(f'joint_states without {name}', 'missing_field')
        return None
    if len(values) != count:
        raise InputError(f'joint_states {name} has {len(values)} values for '
                         f'{count} names', 'length_mismatch')
    out = np.asarray(values, dtype=float)[index]
    if not np.isfinite(out).all():
        raise InputError(f'joint_states {name} is not finite', 'non_finite')
    return out


class JointReader:
    """
    (stamp ns, q, qd or None, tau) for the model joints from JointState messages.

    Joints are matched by name; extra names are ignored; missing, duplicated names or
    arrays whose length differs from the names are refused.  Missing effort means no
    exoskeleton torque (zeros).  The name lookup is kept while the names repeat.
    """

    def __init__(self, joints):
        self.joints = list(joints)
        self.names = None
        self.index = None
        self.no_effort = np.zeros(len(self.joints))

    def _lookup(self, names):
        names = list(names)
        if len(set(names)) != len(names):
            raise InputError('joint_states has duplicated joint names', 'duplicate_names')
        try:
            index = [names.index(j) for j in self.joints]
        except ValueError:
            missing = [j for j in self.joints if j not in names]
            raise InputError(f'joint_states lacks joints {missing}', 'missing_names') from None
        self.names, self.index = names, np.array(index)

    def __call__(self, msg):
        if msg.name != self.names:
            self._lookup(msg.name)
        count, index = len(self.names), self.index
        q = _field(msg, 'position', count, index, True)
        qd = _field(msg, 'velocity', count, index, False)
        tau = _field(msg, 'effort', count, index, False)
        stamp = msg.header.stamp
        return (stamp.sec * 1_000_000_000 + stamp.nanosec, q, qd,
                self.no_effort.copy() if tau is None else tau)


def joint_sample(msg, joints):
    """Return (stamp ns, q, qd or None, tau) of one JointState (see ``JointReader``)."""
    return JointReader(joints)(msg)


def emg_chunk(msg, channels):
    """Return the samples [S, channels] of a Float64MultiArray (contract layout)."""
    data = np.asarray(msg.data, dtype=float)
    dims = list(msg.layout.dim)
    if not dims:
        if data.size != channels:
            raise InputError(f'emg without layout has {data.size} values for '
                             f'{channels} channels', 'channel_count')
        return data.reshape(1, channels)
    if len(dims) != 2:
        raise InputError(f'emg layout has {len(dims)} dimensions, expected 2 '
                         '(samples, channels)', 'layout')
    samples, width = int(dims[0].size), int(dims[1].size)
    if width != channels:
        raise InputError(f'emg has {width} channels, expected {channels}', 'channel_count')
    offset = int(msg.layout.data_offset)
    if samples < 1 or data.size < offset + samples * width:
        raise InputError(f'emg data holds {data.size} values, layout needs '
                         f'{offset + samples * width}', 'layout')
    return data[offset:offset + samples * width].reshape(samples, width)


def emg_joint_state(msg, channel_names):
    """
    Return (stamp ns, samples [1, C]) of EMG sent as a JointState (name = channels).

    ``channel_names`` lists every channel in order; '' marks an unused one (value 0).
    """
    names = list(msg.name)
    if len(set(names)) != len(names):
        raise InputError('emg has duplicated channel names', 'duplicate_names')
    if len(msg.position) != len(names):
        raise InputError(f'emg has {len(msg.position)} values for {len(names)} names',
                         'length_mismatch')
    missing = [c for c in channel_names if c and c not in names]
    if missing:
        raise InputError(f'emg lacks channels {missing}', 'missing_names')
    position = np.asarray(msg.position, dtype=float)
    values = np.array([position[names.index(c)] if c else 0.0 for c in channel_names])
    return stamp_to_ns(msg.header.stamp), values.reshape(1, -1)


def joint_message(stamp_ns, names, position, velocity, effort):
    """Build a JointState with the given stamp and arrays."""
    msg = JointState()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.name = list(names)
    msg.position = [float(v) for v in position]
    msg.velocity = [float(v) for v in velocity]
    msg.effort = [float(v) for v in effort]
    return msg


class JointStateFiller:
    """
    One JointState per publisher, names set once; each sample fills stamp and arrays.

    Nothing is built or sent while the topic has no subscriber (checked every
    ``SUBSCRIBERS_CHECK`` s): a volatile topic's messages reach nobody then anyway.
    """

    SUBSCRIBERS_CHECK = 0.2

    def __init__(self, publisher, names):
        self.publisher = publisher
        self.msg = JointState()
        self.msg.name = list(names)
        self.listened = True
        self.checked = -1.0

    def publish(self, stamp_ns, position, velocity, effort):
        now = time.monotonic()
        if now - self.checked > self.SUBSCRIBERS_CHECK:
            self.checked = now
            self.listened = self.publisher.get_subscription_count() > 0
        if not self.listened:
            return
        msg = self.msg
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        msg.position = _doubles(position)
        msg.velocity = _doubles(velocity)
        msg.effort = _doubles(effort)
        self.publisher.publish(msg)


def _doubles(values):
    """array('d') of a float array: rclpy takes it without checking every element."""
    return array.array('d', np.ascontiguousarray(values, dtype=float).tobytes())


def emg_message(chunk):
    """Build a Float64MultiArray of samples [S, C] (for publishers and tests)."""
    chunk = np.asarray(chunk, dtype=float)
    msg = Float64MultiArray()
    msg.layout.dim = [
        MultiArrayDimension(label='samples', size=chunk.shape[0], stride=chunk.size),
        MultiArrayDimension(label='channels', size=chunk.shape[1], stride=chunk.shape[1])]
    msg.data = chunk.reshape(-1).tolist()
    return msg


LEVELS = {'OK': DiagnosticStatus.OK, 'WARN': DiagnosticStatus.WARN,
          'ERROR': DiagnosticStatus.ERROR, 'STALE': DiagnosticStatus.STALE}


def _value(v):
    if isinstance(v, float):
        return 'nan' if not math.isfinite(v) else f'{v:.6g}'
    return str(v)


def diagnostics(stamp, hardware_id, statuses):
    """Build a DiagnosticArray from [(name, level, message, {key: value})]."""
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    for name, level, text, values in statuses:
        status = DiagnosticStatus(level=LEVELS[level], name=name, message=text,
                                  hardware_id=hardware_id)
        status.values = [KeyValue(key=str(k), value=_value(v)) for k, v in values.items()]
        msg.status.append(status)
    return msg
