"""The ROS layer without rclpy: message and service formats, and the behaviour of every node.

Messages appear here as plain nested dicts (``msg_dict.to_dict`` / ``msg_dict.fill`` convert them), so the
rclpy nodes in ``codi_ros.nodes`` only copy and forward, and every rule a node follows is tested without
ROS: ``coordinator`` (coordinator_node), ``arm_interface`` (arm_state_node, action_node), ``sim_bridge``
(sim_node), ``wrist_camera`` (aruco_node), ``services`` and ``remote_cost`` (/codi/plan, /codi/evaluate_cost),
``messages`` and ``msg_dict`` (formats), ``watchdog`` (staleness, log-once, the shared rate grid).
"""
