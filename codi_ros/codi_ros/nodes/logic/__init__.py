"""ROS-free behaviour of the ROS 2 nodes: every rule a node follows lives here, with tests.

Messages appear here as the nested dicts of ``rosidl_runtime_py`` (``message_to_ordereddict`` /
``set_message_fields``), so the rclpy nodes in ``codi_ros.nodes`` only copy and forward.
"""
