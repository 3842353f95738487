"""The rclpy nodes (``*_node.py``): thin adapters over codi_ros.ros, the ROS layer without rclpy.

A node process Ctrl-C'd while it still imports its dependencies (rclpy, torch, MuJoCo: seconds after
``ros2 launch`` starts it) exits 0 quietly, as one Ctrl-C'd while it runs does: until rclpy.init()
installs rclpy's own handler, SIGINT ends such a process with exit status 0. Only in a node's own
process (its console script is named ``*_node``), never in a program that merely imports this package.
The exit is immediate (``os._exit``): a SystemExit raised inside a C extension's initialisation
(rclpy's pybind11 module) became an ImportError with a traceback instead.
"""

import os
import signal
import sys
from pathlib import Path

if Path(sys.argv[0] if sys.argv else "").name.endswith("_node"):
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))   # nothing has started yet: nothing to clean up
