"""The node's log: ROS logging while the context lives, stderr after; throttled lines."""

import sys
import time

THROTTLE = 5.0      # s between log lines of one key


class NodeLog:
    """Log lines of one node (see the module docstring)."""

    def __init__(self, node, name):
        self.node = node
        self.name = name
        self.last = {}

    def __call__(self, level, text):
        """Log ``text`` at ``level`` ('info', 'warning' or 'error')."""
        if not self.node.context.ok():
            print(f'[{level.upper()}] [{self.name}]: {text}', file=sys.stderr, flush=True)
        elif level == 'error':       # rclpy wants one severity per call site
            self.node.get_logger().error(text)
        elif level == 'warning':
            self.node.get_logger().warning(text)
        else:
            self.node.get_logger().info(text)

    def error(self, text):
        self('error', text)

    def throttled(self, level, text, key):
        """Log, at most one line per ``key`` every ``THROTTLE`` s."""
        now = time.monotonic()
        if now - self.last.get(key, -1e9) >= THROTTLE:
            self.last[key] = now
            self(level, text)
