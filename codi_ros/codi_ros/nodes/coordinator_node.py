"""coordinator_node: holds the CoDi planner; serves /codi/plan, /codi/stop, /codi/start; runs the
receding-horizon loop in autonomous mode and publishes one action chunk per arm.

Subscribes ``/<arm>/arm_state``, ``/codi/cube_detections`` (fused, see perception/fusion.py) and
``/codi/goal`` (latched); publishes ``/<arm>/action_chunk`` and the fused ``/codi/cube_pose``.

Two threads. The executor's (rclpy's single-threaded executor) takes the states and serves every
service at any moment: /codi/stop stops the arms and cancels a running plan at once, also mid-plan
and during warm-up; /codi/plan hands its request to the planning thread and answers "busy" while that
thread plans (autonomous mode, another request, the warm-up). The planning thread (a plain Python
thread, not an executor thread: rclpy's multi-threaded executor kept a core busy and made plans about
3x slower here) warms the planner up once, then runs the receding-horizon ticks and the plan
requests. ``cost_backend: service`` has the guidance evaluate the cost J through
``/codi/evaluate_cost`` (cost_service_node): the executor thread receives its answers while the
planning thread waits for them.
"""

from __future__ import annotations

import queue
import threading
import traceback

import numpy as np
import rclpy
from codi_msgs.msg import ActionChunk, ArmState, CubeDetection
from codi_msgs.srv import EvaluateCost, Plan
from geometry_msgs.msg import PointStamped, PoseStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.task import Future
from std_srvs.srv import Trigger

from codi_ros.config import ConfigError, WorldConfig
from codi_ros.core.cost import Cost
from codi_ros.core.planner import Planner, PlanningError
from codi_ros.nodes._ros import (
    COMMAND_QOS,
    LATCHED_QOS,
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
from codi_ros.nodes.logic.services import failure
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
        self.logic = Coordinator(world, planner, config, fusion, planner.config.realtime)
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
        # its own reentrant group: a request awaiting the planning thread must not hold the node's default
        # (mutually exclusive) group, in which states, /codi/stop and the cost client's answers are taken, nor
        # keep a second request from being answered "busy"
        self.create_service(Plan, "/codi/plan", self.on_plan, callback_group=ReentrantCallbackGroup())
        self.create_service(Trigger, "/codi/stop", self.on_stop)
        self.create_service(Trigger, "/codi/start", self.on_start)
        self.create_timer(world.control.dt, self.publish_cube_pose)
        self.period = world.control.dt
        self.busy = threading.Lock()            # held while the planning thread plans (a tick, a request, warm-up)
        self.requests: queue.Queue = queue.Queue()   # (/codi/plan request dict, its time, future of the response)
        self.closing = threading.Event()
        self.planning = threading.Thread(target=self.planning_loop, args=(planner,), daemon=True)
        self.planning.start()

    def planning_loop(self, planner: Planner) -> None:
        """The planning thread: warm up once (a process's first plan pays one-off costs), then plan requests
        as they come and the receding-horizon ticks whenever one is due. An error in one cycle is logged and
        the loop goes on (the arms finish their chunk and hold); after Ctrl-C it just ends."""
        with self.busy:
            try:
                self.get_logger().info(f"planner warmed up in {planner.warm_up():.2f} s")
            except PlanningError as e:   # e.g. the cost service is not up yet: the first plans pay the one-off costs
                self.get_logger().warning(f"planner warm-up failed: {e}")
        while not self.closing.is_set():
            try:
                self.planning_cycle()
            except Exception:
                if not rclpy.ok():       # Ctrl-C: the context is gone, publishing fails; that is the shutdown
                    return
                self.get_logger().error(f"planning thread: {traceback.format_exc()}")

    def planning_cycle(self) -> None:
        """One plan request (waiting up to a control period for one unless a tick is due), then a due tick."""
        try:
            request, now, future = self.requests.get(timeout=0.0 if self.logic.due(now_sec(self)) else self.period)
        except queue.Empty:
            pass
        else:
            result = failure("the planning thread failed on this request (see the node's log)")
            try:
                result, chunks = self.logic.handle_plan(request, now)
                self.publish_chunks(chunks)
            finally:
                self.busy.release()              # taken by on_plan for this request
                future.set_result(result)
        if self.logic.due(now_sec(self)) and self.busy.acquire(blocking=False):
            try:
                self.publish_chunks(self.logic.tick(now_sec(self)))
            finally:
                self.busy.release()
        log_lines(self, self.logic.pop_log())

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

    async def on_plan(self, request: Plan.Request, response: Plan.Response) -> Plan.Response:
        """Hand the request to the planning thread and wait for it without blocking this (the executor's)
        thread; "busy" at once while that thread plans."""
        if not self.busy.acquire(blocking=False):
            mode = "autonomous mode is on (/codi/stop first)" if self.logic.autonomous else "another plan or warm-up"
            return fill(response, failure(f"busy: the coordinator is planning ({mode}); try again"))
        done = Future(executor=self.executor)
        done.add_done_callback(lambda _: None)   # the executor is woken when the planning thread sets the result
        self.requests.put((to_dict(request), now_sec(self), done))
        return fill(response, await done)

    def publish_cube_pose(self) -> None:
        cube = self.logic.cube_pose(now_sec(self))
        if cube is not None:
            self.cube_pub.publish(fill(PoseStamped(), {"header": header(cube.stamp, "world"),
                                                       "pose": pose_msg(cube.pos, cube.quat)}))

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

    def destroy_node(self) -> None:
        self.closing.set()
        self.logic.stop(now_sec(self))          # cancels a running plan: the planning thread ends within a step
        self.planning.join(timeout=2.0)
        super().destroy_node()


class CostServiceTransport:
    """RemoteCost's transport over an rclpy client of /codi/evaluate_cost.

    The executor thread completes its futures while the planning thread blocks in :func:`wait_for_answer`.
    """

    def __init__(self, node: Node):
        self.client = node.create_client(EvaluateCost, EVALUATE_COST)

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
