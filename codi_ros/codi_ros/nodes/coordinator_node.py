"""coordinator_node: holds the CoDi planner; serves /codi/plan, /codi/stop, /codi/start; runs the
receding-horizon loop at the control rate in autonomous mode and publishes one action chunk per arm.

Subscribes ``/<arm>/arm_state``, ``/codi/cube_detections`` (fused, see perception/fusion.py) and
``/codi/goal`` (latched); publishes ``/<arm>/action_chunk`` and the fused ``/codi/cube_pose``.
Planning runs in its own callback group of a multi-threaded executor, so /codi/stop and the state
subscriptions are served while a plan is being computed.
"""

from __future__ import annotations

import numpy as np
from codi_msgs.msg import ActionChunk, ArmState, CubeDetection
from codi_msgs.srv import Plan
from geometry_msgs.msg import PointStamped, PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_srvs.srv import Trigger

from codi_ros.config import WorldConfig
from codi_ros.core.planner import Planner
from codi_ros.nodes._ros import (
    COMMAND_QOS,
    LATCHED_QOS,
    SENSOR_QOS,
    describe,
    fill,
    log_lines,
    now_sec,
    param,
    run,
    to_dict,
    world_config,
)
from codi_ros.nodes.logic.coordinator import Coordinator, CoordinatorConfig
from codi_ros.nodes.logic.messages import header, pose_msg
from codi_ros.perception.fusion import FusionConfig


class CoordinatorNode(Node):
    def __init__(self) -> None:
        super().__init__("coordinator_node")
        c, f = CoordinatorConfig(), FusionConfig()
        self.declare_parameter("planner_config", "", describe("path of planner.yaml; empty: the installed one"))
        self.declare_parameter("checkpoint", "", describe("policy checkpoint folder; empty: the shipped model"))
        self.declare_parameter("autonomous", False, describe("start the receding-horizon loop right away"))
        self.declare_parameter("arm_timeout", c.arm_timeout, describe("older arm states: no plan, s"))
        self.declare_parameter("cube_timeout", c.cube_timeout, describe("older cube poses: no plan, s"))
        self.declare_parameter("max_reprojection_error", f.max_reprojection_error,
                               describe("cube detections with a worse RMS corner error are ignored, px"))
        self.declare_parameter("max_position_gap", f.max_position_gap,
                               describe("cube detections further from the consensus are outliers, m"))
        self.declare_parameter("max_angle_gap", f.max_angle_gap,
                               describe("cube detections rotated further from the consensus are outliers, rad"))
        world = world_config(self)
        config = CoordinatorConfig(arm_timeout=param(self, "arm_timeout"), cube_timeout=param(self, "cube_timeout"))
        fusion = FusionConfig(max_age=config.cube_timeout, max_reprojection_error=param(self, "max_reprojection_error"),
                              max_position_gap=param(self, "max_position_gap"),
                              max_angle_gap=param(self, "max_angle_gap"))
        planner = load_planner(world, param(self, "planner_config"), param(self, "checkpoint"))
        self.logic = Coordinator(world, planner, config, fusion)
        if param(self, "autonomous"):
            self.logic.start()
        self.chunk_pubs = {a: self.create_publisher(ActionChunk, f"/{a}/action_chunk", COMMAND_QOS)
                           for a in world.arm_names}
        self.cube_pub = self.create_publisher(PoseStamped, "/codi/cube_pose", SENSOR_QOS)
        for a in world.arm_names:
            self.create_subscription(ArmState, f"/{a}/arm_state", lambda m: self.logic.on_arm_state(to_dict(m)),
                                     SENSOR_QOS)
        self.create_subscription(CubeDetection, "/codi/cube_detections",
                                 lambda m: self.logic.on_cube_detection(to_dict(m)), SENSOR_QOS)
        self.create_subscription(PointStamped, "/codi/goal",
                                 lambda m: self.logic.on_goal(np.array([m.point.x, m.point.y, m.point.z])),
                                 LATCHED_QOS)
        planning = MutuallyExclusiveCallbackGroup()
        self.create_service(Plan, "/codi/plan", self.on_plan, callback_group=planning)
        self.create_timer(world.control.dt, self.on_tick, callback_group=planning)
        self.create_service(Trigger, "/codi/stop", self.on_stop)
        self.create_service(Trigger, "/codi/start", self.on_start)

    def publish_chunks(self, chunks: list[dict]) -> None:
        for chunk in chunks:
            self.chunk_pubs[chunk["arm"]].publish(fill(ActionChunk(), chunk))

    def on_plan(self, request: Plan.Request, response: Plan.Response) -> Plan.Response:
        result, chunks = self.logic.handle_plan(to_dict(request), now_sec(self))
        self.publish_chunks(chunks)
        log_lines(self, self.logic.pop_log())
        return fill(response, result)

    def on_tick(self) -> None:
        now = now_sec(self)
        self.publish_chunks(self.logic.tick(now))
        cube = self.logic.cube_pose(now)
        if cube is not None:
            self.cube_pub.publish(fill(PoseStamped(), {"header": header(cube.stamp, "world"),
                                                       "pose": pose_msg(cube.pos, cube.quat)}))
        log_lines(self, self.logic.pop_log())

    def on_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.publish_chunks(self.logic.stop(now_sec(self)))
        log_lines(self, self.logic.pop_log())
        response.success, response.message = True, "stopping both arms; autonomous mode off"
        return response

    def on_start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.logic.start()
        log_lines(self, self.logic.pop_log())
        response.success, response.message = True, "autonomous mode on"
        return response


def load_planner(world: WorldConfig, planner_config: str, checkpoint: str) -> Planner:
    """The CoDi planner of planner.yaml (default: the installed one) with the given (or shipped) checkpoint."""
    return Planner.load(world, planner_config or None, checkpoint or None)


def main(args: list[str] | None = None) -> None:
    run(CoordinatorNode, multithreaded=True, args=args)


if __name__ == "__main__":
    main()
