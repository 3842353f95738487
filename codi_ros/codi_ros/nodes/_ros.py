"""What every node shares: QoS profiles, parameters, clock, logging, and a clean spin
(message <-> dict copying: ros/msg_dict.py).

Written against rclpy of ROS 2 Humble (3.3) and Jazzy (7.1). Ctrl-C: ``spin`` returns through
KeyboardInterrupt or, in Humble, rclpy.executors.ExternalShutdownException; both are caught, the
node destroyed and ``rclpy.try_shutdown()`` called. A node with services only can hang at shutdown
(its executor never wakes to notice): keep a periodic timer in such a node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.task import Future

from codi_ros.config import WorldConfig, load_world_config

SENSOR_QOS = qos_profile_sensor_data                         # best effort, keep last 5: joint states, images, poses
# best effort, keep only the newest: for a state read by a node that is busy for a while (the planning
# coordinator). rclpy takes one message per subscription per executor cycle, so after a 0.3 s plan a keep-last-5
# queue of 25 Hz arm states handed over first a state 0.2 s old: the tick saw it stale and stopped the arms
LATEST_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
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


def stamp_sec(stamp: Any) -> float:
    """A builtin_interfaces/Time in seconds."""
    return stamp.sec + 1e-9 * stamp.nanosec


async def within(node: Node, future: Future, seconds: float) -> Any:
    """(in a coroutine callback) ``future``'s result, or None when it has none after ``seconds``."""
    done = Future(executor=node.executor)

    def finish(result: Any) -> None:
        if not done.done():
            done.set_result(result)

    future.add_done_callback(lambda f: finish(f.result()))
    timer = node.create_timer(seconds, lambda: finish(None))
    try:
        return await done
    finally:
        node.destroy_timer(timer)


def log_lines(node: Node, lines: Iterable[tuple[str, str]]) -> None:
    """Log (level, text) pairs. One call site per severity: rclpy refuses a call site whose severity changes."""
    logger = node.get_logger()
    for level, text in lines:
        if level == "error":
            logger.error(text)
        elif level == "warn":
            logger.warning(text)
        else:
            logger.info(text)


def world_config(node: Node) -> WorldConfig:
    """Declare the node's ``world_config`` parameter and load the world config it names ("" = the installed one)."""
    node.declare_parameter("world_config", "", describe("path of world.yaml; empty: the installed one"))
    return load_world_config(param(node, "world_config") or None)


def torch_threads(node: Node) -> int:
    """Declare the node's ``torch_threads`` parameter and set torch's thread count to it. Explicit, not torch's
    default of one thread per core: beside MuJoCo and the other nodes on few cores, default threads
    oversubscribe them (two torch processes with default threads ran ~20x slower on 2 cores than with one
    thread each)."""
    import torch

    node.declare_parameter("torch_threads", 1, describe("torch threads of this process (>= 1)"))
    threads = param(node, "torch_threads")
    if threads < 1:
        raise ValueError(f"torch_threads: must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    return threads


def run(make_node: Callable[[], Node], args: list[str] | None = None) -> None:
    """Init, spin until Ctrl-C / shutdown, then destroy the node and shut down cleanly.

    Every node is spun by a SingleThreadedExecutor. (rclpy's MultiThreadedExecutor costs a busy main
    thread that competes for the GIL: a coordinator spun by it planned about 3x slower in the simulated
    graph on 2 cores, one-off check; the coordinator plans in a thread of its own instead.)
    """
    rclpy.init(args=args)
    node, executor = None, None
    try:
        node = make_node()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # Ctrl-C at any moment: rclpy's signal handler invalidates the context, and a timer or take that was
        # already running then fails (RCLError "context is invalid", "Unable to convert call argument").
        # That is a shutdown, not a crash; anything else while the context is valid is a real error.
        if rclpy.ok():
            raise
    finally:
        _quietly(executor.shutdown if executor is not None else None)
        _quietly(node.destroy_node if node is not None else None)
        rclpy.try_shutdown()


def _quietly(step: Callable[[], Any] | None) -> None:
    """Run a shutdown step; once the context is gone, its errors are the shutdown's, not ours."""
    if step is None:
        return
    try:
        step()
    except Exception:
        if rclpy.ok():
            raise
