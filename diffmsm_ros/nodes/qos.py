"""The node's QoS profiles."""

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, qos_profile_sensor_data, QoSProfile,
                       ReliabilityPolicy)

SENSOR_DEPTH = 1000         # messages kept per sensor subscription (1 s at 1 kHz)

# sensor data: best effort, keep last, deep enough for a stall of a second at 1 kHz
SENSOR = QoSProfile(depth=SENSOR_DEPTH, history=HistoryPolicy.KEEP_LAST,
                    reliability=ReliabilityPolicy.BEST_EFFORT,
                    durability=qos_profile_sensor_data.durability)

# the subject model: reliable and latched, so a late subscriber gets the current one
LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
