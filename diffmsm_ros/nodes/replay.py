"""
Publish a rosbag2 (mcap or sqlite3) with ``/clock``, for machines without ``ros2 bag``.

Messages are published as the serialized bytes the bag holds, with the types the bag
names; ``/clock`` is set to a message's bag time just before it is published (before every
EMG-like message without a header stamp, otherwise at most every ``clock_period`` of bag
time), so a node with ``use_sim_time`` sees the recorded time line without a flood of
clock messages.  ``rate`` scales the pace (2.0 = twice as
fast); the wall-clock pacing is the only waiting done.
"""

import importlib
import time

from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock


def message_class(msgtype):
    """Return the rclpy class of 'pkg/msg/Name'."""
    package, kind, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{package}.{kind}'), name)


class BagReplayer:
    """Replays one bag through publishers of ``node`` (see the module docstring)."""

    def __init__(self, node, path, rate=1.0, topics=None, clock=True, qos_depth=1000,
                 clock_period=0.005, clock_topics=('/emg',)):
        if not rate > 0:
            raise ValueError('rate must be positive')
        self.node = node
        self.path = str(path)
        self.rate = float(rate)
        self.clock_period_ns = int(clock_period * 1e9)
        self.clock_topics = set(clock_topics)
        self.clock = node.create_publisher(Clock, '/clock', 10) if clock else None
        self.publishers = {}
        self.published = 0
        with Reader(self.path) as reader:
            for conn in reader.connections:
                if topics is not None and conn.topic not in topics:
                    continue
                if conn.topic in self.publishers:
                    continue
                cls = message_class(conn.msgtype)
                qos = QoSProfile(depth=qos_depth, reliability=ReliabilityPolicy.RELIABLE)
                self.publishers[conn.topic] = node.create_publisher(cls, conn.topic, qos)
        if not self.publishers:
            raise ValueError(f'{self.path}: no topics to replay')

    def wait_for_subscribers(self, timeout=5.0):
        """Wait until every topic (and /clock) has a subscriber, at most ``timeout`` s."""
        pubs = list(self.publishers.values()) + ([self.clock] if self.clock else [])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in pubs):
                return True
            time.sleep(0.01)
        return False

    def play(self, should_stop=lambda: False):
        """Publish the bag once, paced; returns the number of messages published."""
        self.wait_for_subscribers()
        count = 0
        started = None
        last_clock = None
        with Reader(self.path) as reader:
            conns = [c for c in reader.connections if c.topic in self.publishers]
            for conn, stamp, raw in reader.messages(connections=conns):
                if should_stop():
                    break
                if started is None:
                    started, first = time.monotonic(), stamp
                due = started + (stamp - first) * 1e-9 / self.rate
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if self.clock is not None and (
                        last_clock is None or conn.topic in self.clock_topics
                        or stamp - last_clock >= self.clock_period_ns):
                    last_clock = stamp
                    msg = Clock()
                    msg.clock.sec, msg.clock.nanosec = divmod(int(stamp), 1_000_000_000)
                    self.clock.publish(msg)
                # the bag holds the serialized message: published as it is, no conversion
                self.publishers[conn.topic].publish(bytes(raw))
                count += 1
        self.published += count
        return count
