"""
rosbag2 files (mcap or sqlite3) with the ``rosbags`` package: write, read, load sessions.

No ROS installation is needed.  Messages are built with the ``ros2_kilted`` typestore; the
wire format (CDR) is the same for Humble and Jazzy for the types used here.
"""

import dataclasses
import os

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

JOINT_STATE = 'sensor_msgs/msg/JointState'
FLOAT_ARRAY = 'std_msgs/msg/Float64MultiArray'
CLOCK = 'rosgraph_msgs/msg/Clock'
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}

_TYPESTORE = None


def typestore():
    global _TYPESTORE
    if _TYPESTORE is None:
        _TYPESTORE = get_typestore(Stores.ROS2_KILTED)
    return _TYPESTORE


def _time(ts, stamp_ns):
    cls = ts.types['builtin_interfaces/msg/Time']
    return cls(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))


def joint_state(stamp_ns, names, position=(), velocity=(), effort=()):
    """Build a sensor_msgs/JointState for the bag writer."""
    ts = typestore()
    header = ts.types['std_msgs/msg/Header'](stamp=_time(ts, stamp_ns), frame_id='')
    return ts.types[JOINT_STATE](
        header=header, name=list(names), position=np.asarray(position, dtype=np.float64),
        velocity=np.asarray(velocity, dtype=np.float64),
        effort=np.asarray(effort, dtype=np.float64))


def emg_array(chunk):
    """Build a std_msgs/Float64MultiArray holding samples x channels, row-major."""
    ts = typestore()
    chunk = np.asarray(chunk, dtype=np.float64)
    dim = ts.types['std_msgs/msg/MultiArrayDimension']
    layout = ts.types['std_msgs/msg/MultiArrayLayout'](
        dim=[dim(label='samples', size=chunk.shape[0], stride=chunk.size),
             dim(label='channels', size=chunk.shape[1], stride=chunk.shape[1])],
        data_offset=0)
    return ts.types[FLOAT_ARRAY](layout=layout, data=chunk.reshape(-1))


def write_bag(path, messages, storage='mcap'):
    """Write (topic, msgtype, time_ns, message) tuples, in time order, to a new bag."""
    if storage not in STORAGES:
        raise ValueError(f'storage must be one of {sorted(STORAGES)}, got {storage!r}')
    ts = typestore()
    connections = {}
    with Writer(os.fspath(path), version=9, storage_plugin=STORAGES[storage]) as writer:
        for topic, msgtype, time_ns, msg in messages:
            conn = connections.get(topic)
            if conn is None:
                conn = writer.add_connection(topic, msgtype, typestore=ts)
                connections[topic] = conn
            writer.write(conn, int(time_ns), ts.serialize_cdr(msg, msgtype))


def read_bag(path, topics=None):
    """Yield (topic, msgtype, time_ns, message) from a bag in time order."""
    ts = typestore()
    with Reader(os.fspath(path)) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        for conn, time_ns, raw in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, time_ns, ts.deserialize_cdr(raw, conn.msgtype)


def bag_summary(path):
    """{topic: (msgtype, count)} of a bag."""
    with Reader(os.fspath(path)) as reader:
        return {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}


@dataclasses.dataclass
class Recording:
    """Encoder and EMG samples of a session, matched to model joints and EMG channels."""

    joint_t: np.ndarray     # [N] s, header stamps minus t_ref
    position: np.ndarray    # [N, n_joints] rad
    velocity: np.ndarray    # [N, n_joints] rad/s (NaN where absent)
    effort: np.ndarray      # [N, n_joints] N m exo torque (0 where absent)
    emg_t: np.ndarray       # [S] s, minus t_ref
    emg: np.ndarray         # [S, C]
    t_ref: int = 0          # s: whole seconds subtracted from every time (float precision)


def stamp_seconds(header, t_ref=0):
    """Header stamp in seconds after ``t_ref`` (whole seconds), without losing precision."""
    return (header.stamp.sec - t_ref) + 1e-9 * header.stamp.nanosec


def load_recording(path, joints, emg_rate, emg_channels, joint_topic='/joint_states',
                   emg_topic='/emg'):
    """
    Read a session bag into arrays.

    ``joints`` are matched by name in each JointState; EMG arrays are expanded to samples
    evenly spaced at ``emg_rate`` (Hz) ending at the message's log time; JointState-form EMG
    is matched by channel name.
    """
    jt, pos, vel, eff = [], [], [], []
    et, ev = [], []
    t_ref = None
    for topic, msgtype, time_ns, msg in read_bag(path, {joint_topic, emg_topic}):
        if t_ref is None:
            t_ref = int(time_ns // 1_000_000_000) - 1
        if topic == joint_topic:
            index = {n: i for i, n in enumerate(msg.name)}
            if any(j not in index for j in joints):
                continue
            rows = [index[j] for j in joints]
            jt.append(stamp_seconds(msg.header, t_ref))
            pos.append(np.asarray(msg.position)[rows])
            vel.append(np.asarray(msg.velocity)[rows] if len(msg.velocity) == len(msg.name)
                       else np.full(len(rows), np.nan))
            eff.append(np.asarray(msg.effort)[rows] if len(msg.effort) == len(msg.name)
                       else np.zeros(len(rows)))
        elif msgtype == FLOAT_ARRAY:
            data = np.asarray(msg.data, dtype=float)
            channels = len(emg_channels)
            if data.size == 0 or data.size % channels:
                continue
            chunk = data.reshape(-1, channels)
            end = (time_ns - t_ref * 1_000_000_000) * 1e-9
            et.append(end - np.arange(chunk.shape[0])[::-1] / emg_rate)
            ev.append(chunk)
        elif msgtype == JOINT_STATE:
            index = {n: i for i, n in enumerate(msg.name)}
            if any(c and c not in index for c in emg_channels):
                continue
            et.append(np.array([stamp_seconds(msg.header, t_ref)]))
            ev.append(np.array([[msg.position[index[c]] if c else 0.0 for c in emg_channels]]))
    if not jt:
        raise ValueError(f'{path}: no {joint_topic} messages with joints {list(joints)}')
    if not et:
        raise ValueError(f'{path}: no usable {emg_topic} messages')
    return Recording(np.array(jt), np.array(pos), np.array(vel), np.array(eff),
                     np.concatenate(et), np.concatenate(ev), t_ref)


def infer_emg_rate(path, emg_topic='/emg', limit=200):
    """EMG sample rate (Hz) of Float64MultiArray chunks: samples per message / interval."""
    times, sizes = [], []
    for _, msgtype, time_ns, msg in read_bag(path, {emg_topic}):
        if msgtype != FLOAT_ARRAY:
            return None
        dims = list(msg.layout.dim)
        sizes.append(dims[0].size if dims else 1)
        times.append(time_ns * 1e-9)
        if len(times) >= limit:
            break
    if len(times) < 3:
        return None
    dt = np.diff(times)
    return float(np.median(np.asarray(sizes[1:]) / np.maximum(dt, 1e-9)))
