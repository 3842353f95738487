"""coordinator_node: holds the CoDi planner; serves /codi/plan, /codi/stop, /codi/start; runs the
receding-horizon loop in autonomous mode (ticks at the control rate, and right after each plan once the
states queued during it are in) and publishes one action chunk per arm.

Subscribes ``/<arm>/arm_state``, ``/codi/cube_detections`` (fused, see perception/fusion.py) and
``/codi/goal`` (latched); publishes ``/<arm>/action_chunk`` and the fused ``/codi/cube_pose``.
With the in-process cost (the default) one thread serves everything: /codi/stop and the state
subscriptions wait for a running plan (one plan latency), and plans run about 3x faster than beside
rclpy's busy multi-threaded executor (_ros.run). ``cost_backend: service`` has the planner's guidance
evaluate the cost J through ``/codi/evaluate_cost`` (cost_service_node): then planning runs in its own
callback group of a multi-threaded executor, the client in another, so its answers arrive while the
planning callback waits, and /codi/stop is served during a plan.
"""

from __future__ import annotations

import numpy as np
from codi_msgs.msg import ActionChunk, ArmState, CubeDetection
from codi_msgs.srv import EvaluateCost, Plan
from geometry_msgs.msg import PointStamped, PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from std_srvs.srv import Trigger

from codi_ros.config import ConfigError, WorldConfig
from codi_ros.core.cost import Cost
from codi_ros.core.planner import Planner, PlanningError
from codi_ros.nodes._ros import (
    COMMAND_QOS,
    LATCHED_QOS,
    LATEST_QOS,
    SENSOR_QOS,
    describe,
    log_lines,
    now_sec,
    param,
    run,
    torch_threads,
    world_config,
)
from codi_ros.nodes.logic.coordinator import Coordinator, CoordinatorConfig
from codi_ros.nodes.logic.messages import Msg, header, pose_msg
from codi_ros.nodes.logic.msg_dict import fill, to_dict
from codi_ros.nodes.logic.remote_cost import (
    COST_BACKENDS,
    DEFAULT_TIMEOUT_S,
    EVALUATE_COST,
    RemoteCost,
    wait_for_answer,
)
from codi_ros.perception.fusion import FusionConfig

SERVICE_WAIT_S = 10.0   # how long start-up waits for /codi/evaluate_cost before going on without it


class CoordinatorNode(Node):
    def __init__(self) -> None:
        super().__init__("coordinator_node")
        c, f = CoordinatorConfig(), FusionConfig()
        self.declare_parameter("planner_config", "", describe("path of planner.yaml; empty: the installed one"))
        self.declare_parameter("checkpoint", "", describe("policy checkpoint folder; empty: the shipped model"))
        self.declare_parameter("autonomous", False, describe("start the receding-horizon loop right away"))
        self.declare_parameter("cost_backend", "in_process",
                               describe(f"where the guidance evaluates the cost J: in_process (fast) | service "
                                        f"({EVALUATE_COST}, cost_service_node)"))
        self.declare_parameter("cost_service_timeout", DEFAULT_TIMEOUT_S,
                               describe(f"longest wait for one {EVALUATE_COST} answer (cost_backend service); "
                                        f"a plan without it fails, s"))
        self.declare_parameter("arm_timeout", c.arm_timeout, describe("older arm states: no plan, s"))
        self.declare_parameter("cube_timeout", c.cube_timeout, describe("older cube poses: no plan, s"))
        self.declare_parameter("max_reprojection_error", f.max_reprojection_error,
                               describe("cube detections with a worse RMS corner error are ignored, px"))
        self.declare_parameter("max_position_gap", f.max_position_gap,
                               describe("cube detections further from the consensus are outliers, m"))
        self.declare_parameter("max_angle_gap", f.max_angle_gap,
                               describe("cube detections rotated further from the consensus are outliers, rad"))
        world = world_config(self)
        torch_threads(self)
        config = CoordinatorConfig(arm_timeout=param(self, "arm_timeout"), cube_timeout=param(self, "cube_timeout"))
        fusion = FusionConfig(max_age=config.cube_timeout, max_reprojection_error=param(self, "max_reprojection_error"),
                              max_position_gap=param(self, "max_position_gap"),
                              max_angle_gap=param(self, "max_angle_gap"))
        planner = load_planner(world, param(self, "planner_config"), param(self, "checkpoint"), self.cost_client())
        # cost_backend service: a plan waits on /codi/evaluate_cost answers, which other executor threads receive;
        # they also answer /codi/stop during a plan. In process, one thread plans faster (_ros.run) and
        # /codi/stop is answered between plans, i.e. within one plan latency.
        self.multithreaded = param(self, "cost_backend") == "service"
        if not self.multithreaded:       # (the service's answers need this node spinning: warm_up_once)
            self.get_logger().info(f"planner warmed up in {planner.warm_up():.2f} s")
        self.logic = Coordinator(world, planner, config, fusion, planner.config.realtime)
        if param(self, "autonomous"):
            self.logic.start()
        self.chunk_pubs = {a: self.create_publisher(ActionChunk, f"/{a}/action_chunk", COMMAND_QOS)
                           for a in world.arm_names}
        self.cube_pub = self.create_publisher(PoseStamped, "/codi/cube_pose", SENSOR_QOS)
        for a in world.arm_names:
            self.create_subscription(ArmState, f"/{a}/arm_state", lambda m: self.logic.on_arm_state(to_dict(m)),
                                     LATEST_QOS)   # the newest state first after a plan
        self.create_subscription(CubeDetection, "/codi/cube_detections",
                                 lambda m: self.logic.on_cube_detection(to_dict(m)),
                                 LATEST_QOS)   # the newest pose first after a plan, as for the arms
        self.create_subscription(PointStamped, "/codi/goal",
                                 lambda m: self.logic.on_goal(np.array([m.point.x, m.point.y, m.point.z])),
                                 LATCHED_QOS)
        planning = MutuallyExclusiveCallbackGroup()
        if self.multithreaded:   # warm up through the cost service once spinning (its answers need the executor)
            self._warm_up = self.create_timer(0.01, lambda: self.warm_up_once(planner), callback_group=planning)
        self.create_service(Plan, "/codi/plan", self.on_plan, callback_group=planning)
        self.create_timer(world.control.dt, self.on_tick, callback_group=planning)
        # after a plan, tick again as soon as the states that queued meanwhile are taken (the executor runs ready
        # timers, then subscriptions, then guard conditions), not up to a control period later on the timer
        self.tick_again = self.create_guard_condition(self.on_tick, callback_group=planning)
        self.create_service(Trigger, "/codi/stop", self.on_stop)
        self.create_service(Trigger, "/codi/start", self.on_start)

    def warm_up_once(self, planner: Planner) -> None:
        """cost_backend service: the start-up plan, before any request or tick is served (same callback group)."""
        self._warm_up.cancel()
        try:
            self.get_logger().info(f"planner warmed up in {planner.warm_up():.2f} s (through {EVALUATE_COST})")
        except PlanningError as e:   # e.g. the service is not up yet: the first plans then pay the one-off costs
            self.get_logger().warning(f"planner warm-up through {EVALUATE_COST} failed: {e}")

    def cost_client(self) -> Cost | None:
        """None for the in-process cost; for ``cost_backend: service`` the /codi/evaluate_cost client."""
        backend = param(self, "cost_backend")
        if backend not in COST_BACKENDS:
            raise ConfigError(f"cost_backend: must be one of {', '.join(COST_BACKENDS)}, got {backend!r}")
        if backend == "in_process":
            return None
        transport = CostServiceTransport(self)
        self.get_logger().info(f"cost_backend service: waiting up to {SERVICE_WAIT_S:.0f} s for {EVALUATE_COST}")
        if not transport.client.wait_for_service(timeout_sec=SERVICE_WAIT_S):
            self.get_logger().warning(f"{EVALUATE_COST} is not available; plans fail until it is")
        return RemoteCost(transport, param(self, "cost_service_timeout"))

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
        if self.logic.planned:
            self.tick_again.trigger()
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


class CostServiceTransport:
    """RemoteCost's transport over an rclpy client of /codi/evaluate_cost.

    The client is in a reentrant callback group of its own: the executor completes its futures in another
    thread while the planning callback (a mutually exclusive group) blocks in :func:`wait_for_answer`.
    """

    def __init__(self, node: Node):
        self.client = node.create_client(EvaluateCost, EVALUATE_COST, callback_group=ReentrantCallbackGroup())

    def __call__(self, request: dict, timeout_s: float) -> Msg:
        if not self.client.service_is_ready():
            raise ConnectionError("not available (is cost_service_node running?)")
        future = self.client.call_async(fill(EvaluateCost.Request(), request))
        return to_dict(wait_for_answer(future, timeout_s))


def load_planner(world: WorldConfig, planner_config: str, checkpoint: str, cost: Cost | None = None) -> Planner:
    """The CoDi planner of planner.yaml (default: the installed one) with the given (or shipped) checkpoint;
    ``cost``: evaluate J with it instead of in-process."""
    return Planner.load(world, planner_config or None, checkpoint or None, cost=cost)


def main(args: list[str] | None = None) -> None:
    run(CoordinatorNode, args=args)


if __name__ == "__main__":
    main()
