"""What every node shares: QoS profiles, message <-> dict copying, clock, logging, and a clean spin.

Written against rclpy of ROS 2 Humble (3.3) and Jazzy (7.1). Ctrl-C: ``spin`` returns through
KeyboardInterrupt or, in Humble, rclpy.executors.ExternalShutdownException; both are caught, the
node destroyed and ``rclpy.try_shutdown()`` called (ROS_NOTES.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosidl_runtime_py import message_to_ordereddict, set_message_fields

from codi_ros.config import WorldConfig, load_world_config

SENSOR_QOS = qos_profile_sensor_data                         # best effort, keep last 5: joint states, images, poses
COMMAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)   # the goal: late joiners get the last one


def describe(text: str) -> ParameterDescriptor:
    """A read-only parameter (read once at start-up) with a description; rclpy types it from its default."""
    return ParameterDescriptor(description=text, read_only=True)


def param(node: Node, name: str) -> Any:
    """The value of a declared parameter (array values as lists)."""
    value = node.get_parameter(name).value
    return list(value) if isinstance(value, (list, tuple)) or hasattr(value, "tolist") else value


def now_sec(node: Node) -> float:
    return node.get_clock().now().nanoseconds * 1e-9


def to_dict(msg: Any) -> dict:
    return message_to_ordereddict(msg)


def fill(msg: Any, values: dict) -> Any:
    """Copy a message dict (codi_ros.nodes.logic.messages) into a message object; returns it."""
    set_message_fields(msg, values)
    return msg


def log_lines(node: Node, lines: Iterable[tuple[str, str]]) -> None:
    logger = node.get_logger()
    for level, text in lines:
        (logger.warning if level == "warn" else logger.info)(text)


def world_config(node: Node) -> WorldConfig:
    """Declare the node's ``world_config`` parameter and load the world config it names ("" = the installed one)."""
    node.declare_parameter("world_config", "", describe("path of world.yaml; empty: the installed one"))
    return load_world_config(param(node, "world_config") or None)


def run(make_node: Callable[[], Node], multithreaded: bool = False, args: list[str] | None = None) -> None:
    """Init, spin until Ctrl-C / shutdown, then destroy the node and shut down cleanly."""
    rclpy.init(args=args)
    node = None
    # at least 2 threads: a planning callback waiting on a service answer needs another thread to receive it
    executor = MultiThreadedExecutor(num_threads=max(2, os.cpu_count() or 1)) if multithreaded else None
    try:
        node = make_node()
        if executor is None:
            rclpy.spin(node)
        else:
            executor.add_node(node)
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
