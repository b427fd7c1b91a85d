"""The node's live path without ROS: the input time line, the torque path, velocities."""
