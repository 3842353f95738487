"""coordinator_node: holds the CoDi planner; serves /codi/plan, /codi/stop, /codi/start, /codi/recover; runs the
receding-horizon loop in autonomous mode and publishes one action chunk per arm. An arm state with a fault
(a reflex) stops every arm; /codi/recover calls ``/<arm>/action_node/recover`` (franka's error recovery and the
controller's reactivation) of each arm in a fault and then waits for the arms' states to report no fault.

Subscribes ``/<arm>/arm_state``, ``/codi/cube_detections`` (fused, see perception/fusion.py) and
``/codi/goal`` (latched); publishes ``/<arm>/action_chunk``, the fused ``/codi/cube_pose`` and, for RViz, the
planned tool paths of the chunks sent (``/codi/planned_paths``, visualization_msgs/MarkerArray).

Two threads, each with rclpy's single-threaded executor. The node's own plans (the receding-horizon
ticks at the control rate, also right after a plan that took the execution horizon or longer, and the
/codi/plan requests) and takes the states between plans. A second node, ``coordinator_services`` (no
parameters; the process's topic and service remaps apply to it, its name and namespace are its own),
serves /codi/stop, /codi/start and /codi/plan in a thread of its own at any moment: /codi/stop stops
the arms and cancels a running plan at once, also mid-plan; /codi/plan hands its request to the
planning thread and answers "busy" while a plan runs (autonomous mode, another request, the
warm-up). That thread sleeps in rclpy's wait until a request comes, so the planner never competes
with it for the GIL (states taken by a second thread during plans made them about 2x slower in the
simulated graph on 2 cores; rclpy's multi-threaded executor about 3x). ``cost_backend: service`` has
the guidance evaluate the cost J through ``/codi/evaluate_cost`` (cost_service_node); its client is
on the services node, whose thread receives the answers while the planning thread waits for them.
"""

from __future__ import annotations

import queue
import sys
import threading

import numpy as np
import rclpy
from codi_msgs.msg import ActionChunk, ArmState, CubeDetection
from codi_msgs.srv import EvaluateCost, Plan
from geometry_msgs.msg import PointStamped, PoseStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.task import Future
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

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
    within,
    world_config,
)
from codi_ros.perception.fusion import FusionConfig
from codi_ros.ros.coordinator import Coordinator, CoordinatorConfig
from codi_ros.ros.messages import Msg, header, pose_msg
from codi_ros.ros.msg_dict import fill, to_dict
from codi_ros.ros.remote_cost import (
    COST_BACKENDS,
    DEFAULT_TIMEOUT_S,
    EVALUATE_COST,
    RemoteCost,
    wait_for_answer,
)
from codi_ros.ros.services import failure

SERVICE_WAIT_S = 10.0   # how long start-up waits for /codi/evaluate_cost before going on without it
RECOVER_TIMEOUT_S = 40.0   # an arm's whole recovery (three steps, each up to the action node's 10 s)
RECOVER_SERVICE_WAIT_S = 2.0   # for an action node's ~/recover service to be discovered
FRESH_STATES_S = 0.3       # after the arms recovered: their states since then must report no fault


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
        self.service_node = Node("coordinator_services", context=self.context, start_parameter_services=False,
                                 use_global_arguments=False, cli_args=remap_args(sys.argv))
        planner = load_planner(world, param(self, "planner_config"), param(self, "checkpoint"), self.cost_client())
        self.logic = Coordinator(world, planner, config, fusion, planner.config.realtime)
        if param(self, "autonomous"):
            self.logic.start()
        self.chunk_pubs = {a: self.create_publisher(ActionChunk, f"/{a}/action_chunk", COMMAND_QOS)
                           for a in world.arm_names}
        self.cube_pub = self.create_publisher(PoseStamped, "/codi/cube_pose", SENSOR_QOS)
        self.paths_pub = self.create_publisher(MarkerArray, "/codi/planned_paths", SENSOR_QOS)
        for a in world.arm_names:
            self.create_subscription(ArmState, f"/{a}/arm_state", self.on_arm_state,
                                     LATEST_QOS)   # the newest state first after a plan
        self.create_subscription(CubeDetection, "/codi/cube_detections",
                                 lambda m: self.logic.on_cube_detection(to_dict(m)),
                                 LATEST_QOS)   # the newest pose first after a plan, as for the arms
        self.create_subscription(PointStamped, "/codi/goal",
                                 lambda m: self.logic.on_goal(np.array([m.point.x, m.point.y, m.point.z])),
                                 LATCHED_QOS)
        self.busy = threading.Lock()            # held while a plan runs (a tick, a request, the warm-up)
        self.requests: queue.Queue = queue.Queue()   # (/codi/plan request dict, its time, future of the response)
        self.create_timer(world.control.dt, self.on_tick)
        # after a plan that leaves the next one due, tick again as soon as the states that queued meanwhile are taken
        # (the executor runs ready timers, then subscriptions, then guard conditions), not a control period later
        self.tick_again = self.create_guard_condition(self.on_tick)
        self.plan_requested = self.create_guard_condition(self.on_plan_request)
        # its own reentrant group: a request awaiting the planning thread must not hold the services node's
        # default group (in which /codi/stop and the cost client's answers are taken), nor keep a second request
        # from being answered "busy"
        self.service_node.create_service(Plan, "/codi/plan", self.on_plan, callback_group=ReentrantCallbackGroup())
        self.service_node.create_service(Trigger, "/codi/stop", self.on_stop)
        self.service_node.create_service(Trigger, "/codi/start", self.on_start)
        self.recover_clients = {a: self.service_node.create_client(Trigger, f"/{a}/action_node/recover")
                                for a in world.arm_names}
        self.service_node.create_service(Trigger, "/codi/recover", self.on_recover,
                                         callback_group=ReentrantCallbackGroup())
        self.services_executor = SingleThreadedExecutor(context=self.context)
        self.services_executor.add_node(self.service_node)
        # busy from before the services thread starts: a /codi/plan queued meanwhile is answered "busy". Taken after
        # it, a request could take it first and wait for this thread's executor, which spins only after the warm-up
        # that waits for the lock: a start-up that never ends (seen twice in graphs polled from the start).
        self.busy.acquire()
        threading.Thread(target=self.serve, daemon=True).start()
        try:
            self.warm_up(planner)
        finally:
            self.busy.release()

    def serve(self) -> None:
        """The services thread: spin the services node until shutdown (Ctrl-C ends it quietly)."""
        try:
            self.services_executor.spin()
        except Exception:
            if rclpy.ok():
                raise

    def warm_up(self, planner: Planner) -> None:
        """The start-up plan (a process's first plan pays one-off costs), before any tick, ``busy`` held; /codi/plan
        answers "busy" meanwhile, /codi/stop is served (the services thread, which also takes a cost service's
        answers)."""
        try:
            self.get_logger().info(f"planner warmed up in {planner.warm_up():.2f} s")
        except PlanningError as e:   # e.g. the cost service is not up yet: the first plans pay the one-off costs
            self.get_logger().warning(f"planner warm-up failed: {e}")

    def cost_client(self) -> Cost | None:
        """None for the in-process cost; for ``cost_backend: service`` the /codi/evaluate_cost client."""
        backend = param(self, "cost_backend")
        if backend not in COST_BACKENDS:
            raise ConfigError(f"cost_backend: must be one of {', '.join(COST_BACKENDS)}, got {backend!r}")
        if backend == "in_process":
            return None
        transport = CostServiceTransport(self.service_node)
        self.get_logger().info(f"cost_backend service: waiting up to {SERVICE_WAIT_S:.0f} s for {EVALUATE_COST}")
        if not transport.client.wait_for_service(timeout_sec=SERVICE_WAIT_S):
            self.get_logger().warning(f"{EVALUATE_COST} is not available; plans fail until it is")
        return RemoteCost(transport, param(self, "cost_service_timeout"))

    def publish_chunks(self, chunks: list[dict]) -> None:
        for chunk in chunks:
            self.chunk_pubs[chunk["arm"]].publish(fill(ActionChunk(), chunk))
        if chunks:
            self.paths_pub.publish(fill(MarkerArray(), {"markers": self.logic.planned_paths(chunks)}))

    async def on_plan(self, request: Plan.Request, response: Plan.Response) -> Plan.Response:
        """(services thread) Hand the request to the planning thread and wait for it without blocking this
        thread; "busy" at once while a plan runs."""
        if not self.busy.acquire(blocking=False):
            mode = "autonomous mode is on (/codi/stop first)" if self.logic.autonomous else "another plan or warm-up"
            return fill(response, failure(f"busy: the coordinator is planning ({mode}); try again"))
        done = Future(executor=self.services_executor)
        done.add_done_callback(lambda _: None)   # wakes the services executor when the planning thread answers
        self.requests.put((to_dict(request), now_sec(self), done))
        self.plan_requested.trigger()
        return fill(response, await done)

    def on_plan_request(self) -> None:
        """(planning thread) Plan the queued /codi/plan request; ``busy`` was taken for it by on_plan."""
        request, now, done = self.requests.get()
        result = failure("the coordinator failed on this request (see its log)")
        try:
            result, chunks = self.logic.handle_plan(request, now)
            self.publish_chunks(chunks)
        finally:
            self.busy.release()
            done.set_result(result)
            log_lines(self, self.logic.pop_log())

    def on_tick(self) -> None:
        """(planning thread) The fused cube pose, and the receding-horizon tick when one is due, unless a
        /codi/plan request holds the planner (``busy`` is taken only then: a request meanwhile is not refused)."""
        now = now_sec(self)
        cube = self.logic.cube_pose(now)
        if cube is not None:
            self.cube_pub.publish(fill(PoseStamped(), {"header": header(cube.stamp, "world"),
                                                       "pose": pose_msg(cube.pos, cube.quat)}))
        if self.logic.due(now) and self.busy.acquire(blocking=False):
            try:
                self.publish_chunks(self.logic.tick(now))
            finally:
                self.busy.release()
            if self.logic.replan_now(now_sec(self)):
                self.tick_again.trigger()
        log_lines(self, self.logic.pop_log())

    def on_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.publish_chunks(self.logic.stop(now_sec(self)))
        log_lines(self, self.logic.pop_log())
        response.success, response.message = True, "stopping both arms; autonomous mode off"
        return response

    def on_start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.logic.start()
        log_lines(self, self.logic.pop_log())
        return response

    def on_arm_state(self, msg: ArmState) -> None:
        self.publish_chunks(self.logic.on_arm_state(to_dict(msg)))   # a new fault: every arm's stop
        log_lines(self, self.logic.pop_log())

    async def on_recover(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """(services thread) The recovery of every arm in a fault, then fresh arm states without a fault."""
        since = now_sec(self)
        clients = {arm: self.recover_clients[arm] for arm in self.logic.faulted()}
        for _ in range(int(RECOVER_SERVICE_WAIT_S / 0.1)):   # a service just started may not be discovered yet
            if all(client.service_is_ready() for client in clients.values()):
                break
            await within(self.service_node, Future(), 0.1)
        for arm, client in clients.items():
            if not client.service_is_ready():
                return fill(response, failure(f"arm {arm}: no service {client.srv_name} (is its action_node "
                                              "running?)"))
        answers = {arm: within(self.service_node, client.call_async(Trigger.Request()), RECOVER_TIMEOUT_S)
                   for arm, client in clients.items()}
        failed = []
        for arm, answer in answers.items():
            result = await answer
            if result is None or not result.success:
                failed.append(f"arm {arm}: {'no answer' if result is None else result.message}")
        if failed:
            response.success, response.message = False, "; ".join(failed)
            return response
        await within(self.service_node, Future(), FRESH_STATES_S)   # the arms' states after the recovery
        response.success, response.message = self.logic.recovered(since)
        log_lines(self, self.logic.pop_log())
        return response

    def destroy_node(self) -> None:
        self.logic.stop(now_sec(self))          # cancels a running plan
        self.services_executor.shutdown()
        self.service_node.destroy_node()
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


def remap_args(argv: list[str]) -> list[str]:
    """The topic and service remaps (``-r from:=to``) among ``argv``'s --ros-args, as --ros-args of their own,
    without the node name and namespace ones (``__node``, ``__ns``: the launch's, meant for the main node)."""
    rules, ros, i = [], False, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--ros-args":
            ros = True
        elif arg == "--":
            ros = False
        elif ros and arg in ("-r", "--remap") and i + 1 < len(argv):
            i += 1
            if not argv[i].split(":=")[0].split(":")[-1].startswith("__"):
                rules += ["-r", argv[i]]
        i += 1
    return ["--ros-args", *rules] if rules else []


def load_planner(world: WorldConfig, planner_config: str, checkpoint: str, cost: Cost | None = None) -> Planner:
    """The CoDi planner of planner.yaml (default: the installed one) with the given (or shipped) checkpoint;
    ``cost``: evaluate J with it instead of in-process."""
    return Planner.load(world, planner_config or None, checkpoint or None, cost=cost)


def main(args: list[str] | None = None) -> None:
    run(CoordinatorNode, args=args)


if __name__ == "__main__":
    main()
