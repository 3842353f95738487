"""ROS-free behaviour of the ROS 2 nodes: every rule a node follows lives here, with tests.

Messages appear here as plain nested dicts (``msg_dict.to_dict`` / ``msg_dict.fill`` convert them), so
the rclpy nodes in ``codi_ros.nodes`` only copy and forward.
"""
