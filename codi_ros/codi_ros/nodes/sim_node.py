"""sim_node: the two-arm MuJoCo world in real time, with the topics the real arms would have.

Per arm, the interfaces of a Franka under franka_ros2: subscribes
``/<arm>/joint_trajectory_controller/joint_trajectory`` (trajectory_msgs/JointTrajectory, as a ros2_control
JointTrajectoryController, splined at 1 kHz and checked against the FR3's limits: beyond them a simulated
reflex); serves ``/<arm>/franka_gripper/{move,grasp,homing}`` (franka_msgs actions, see
:class:`codi_ros.sim.hand.SimulatedHand`), ``/<arm>/action_server/error_recovery`` (franka_msgs
ErrorRecovery) and ``/<arm>/controller_manager/{set_hardware_component_state,switch_controller}``
(controller_manager_msgs: the recovery's reactivation, :class:`codi_ros.ros.sim_bridge.SimulatedFranka`);
publishes ``/<arm>/joint_states`` (arm and fingers) and
``/<arm>/franka_robot_state_broadcaster/robot_state`` (franka_msgs/FrankaRobotState: header and robot_mode
only; the real broadcaster's 1 kHz would cost this process too much) at ``joint_state_rate_hz`` and, when
offscreen rendering works (MUJOCO_GL=egl or osmesa),
``/<arm>/wrist_camera/image_raw`` + ``camera_info``. With ``publish_true_cube_pose`` it
publishes the true cube pose on ``/codi/cube_detections`` at ``cube_pose_rate_hz``, on the arm states'
time grid (the same joint-state stamps as arm_state_node picks at the same rate), instead of needing
the cameras. The goal
goes out latched on ``/codi/goal``. ``~/reset`` (std_srvs/Trigger) starts the next episode of the task
(``codi_ros.sim.tasks``: episode i of ``seed`` starts exactly as ``codi eval``'s episode i).
"""

from __future__ import annotations

import array
import functools
import json
import threading

import rclpy
from codi_msgs.msg import CubeDetection
from controller_manager_msgs.srv import SetHardwareComponentState, SwitchController
from franka_msgs.action import ErrorRecovery, Grasp, Homing, Move
from franka_msgs.msg import FrankaRobotState
from geometry_msgs.msg import PointStamped
from rclpy.action import ActionServer
from rclpy.node import Node
from rclpy.task import Future
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from codi_ros.nodes._ros import (
    COMMAND_QOS,
    LATCHED_QOS,
    SENSOR_QOS,
    describe,
    log_lines,
    now_sec,
    param,
    run,
    world_config,
)
from codi_ros.perception.aruco import CubeMarkerLayout, mujoco_face_images
from codi_ros.robot.fr3 import TRAJECTORY_CONTROLLER, hardware_component_name
from codi_ros.ros.messages import header, sec_to_ns, vec3_msg
from codi_ros.ros.msg_dict import fill, to_dict
from codi_ros.ros.sim_bridge import SimBridge, camera_fovy, camera_in_tcp, camera_info_msg
from codi_ros.ros.watchdog import RateGrid
from codi_ros.sim.tasks import load_task
from codi_ros.sim.world import SnapshotCameras, TwoArmWorld


class SimNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_node")
        self.declare_parameter("seed", 0, describe("task seed: episode i starts as codi eval's episode i of this seed"))
        self.declare_parameter("episode", 0, describe("index of the first episode; each ~/reset starts the next"))
        self.declare_parameter("task_file", "", describe("task YAML (codi_ros.sim.tasks.HandoverTask); '': handover"))
        self.declare_parameter("step_rate_hz", 100.0, describe("physics rate in real time, Hz"))
        self.declare_parameter("joint_state_rate_hz", 25.0,
                               describe("joint_states rate, Hz: arm_state_node's publish_rate_hz (same instants)"))
        self.declare_parameter("camera_rate_hz", 10.0, describe("wrist image rate, Hz"))
        self.declare_parameter("simulate_reflexes", True,
                               describe("a command beyond the FR3's limits stops the arm until /codi/recover "
                                        "(false: it is logged as a warning and the arm goes on)"))
        self.declare_parameter("image_width", 640, describe("wrist image width, px (<= 640)"))
        self.declare_parameter("image_height", 480, describe("wrist image height, px (<= 480)"))
        self.declare_parameter("publish_images", True, describe("render and publish the wrist cameras"))
        self.declare_parameter("publish_true_cube_pose", False,
                               describe("publish the true cube pose on /codi/cube_detections (no cameras needed)"))
        self.declare_parameter("cube_pose_rate_hz", 25.0,
                               describe("true cube pose rate, Hz: arm_state_node's publish_rate_hz (same instants)"))
        cfg = world_config(self)
        # the cube wears the default marker layout (the aruco_node's defaults) so the cameras can see it
        faces = mujoco_face_images(CubeMarkerLayout(cube_size=cfg.cube.size)) if param(self, "publish_images") else None
        self.world = TwoArmWorld(cfg, cube_faces=faces)
        self.bridge = SimBridge(self.world, reflexes=param(self, "simulate_reflexes"))
        self.seed, self.episode = param(self, "seed"), param(self, "episode")
        self.task = load_task(param(self, "task_file") or None)
        self.size = (param(self, "image_width"), param(self, "image_height"))
        self.images, self.truth = param(self, "publish_images"), param(self, "publish_true_cube_pose")
        self.truth_grid = RateGrid(param(self, "cube_pose_rate_hz"))
        self.state_grid = RateGrid(param(self, "joint_state_rate_hz"))
        arms = self.world.cfg.arm_names
        self.joint_pubs = {a: self.create_publisher(JointState, f"/{a}/joint_states", SENSOR_QOS) for a in arms}
        self.robot_state_pubs = {a: self.create_publisher(FrankaRobotState,
                                                          f"/{a}/franka_robot_state_broadcaster/robot_state",
                                                          COMMAND_QOS) for a in arms}   # reliable, as franka's
        self.image_pubs = {a: self.create_publisher(Image, f"/{a}/wrist_camera/image_raw", SENSOR_QOS) for a in arms}
        self.info_pubs = {a: self.create_publisher(CameraInfo, f"/{a}/wrist_camera/camera_info", SENSOR_QOS)
                          for a in arms}
        self.truth_pub = self.create_publisher(CubeDetection, "/codi/cube_detections", SENSOR_QOS)
        self.goal_pub = self.create_publisher(PointStamped, "/codi/goal", LATCHED_QOS)
        for a in arms:
            self.create_subscription(JointTrajectory, f"/{a}/{TRAJECTORY_CONTROLLER}/joint_trajectory",
                                     lambda m, a=a: self.on_trajectory(a, m), COMMAND_QOS)
            for kind, action_type in (("move", Move), ("grasp", Grasp), ("homing", Homing)):
                ActionServer(self, action_type, f"/{a}/franka_gripper/{kind}",   # a partial stays a coroutine
                             functools.partial(self.on_gripper_goal, a, kind, action_type))   # function for rclpy
            ActionServer(self, ErrorRecovery, f"/{a}/action_server/error_recovery",
                         functools.partial(self.on_error_recovery, a))
            self.create_service(SetHardwareComponentState, f"/{a}/controller_manager/set_hardware_component_state",
                                functools.partial(self.on_component_state, a))
            self.create_service(SwitchController, f"/{a}/controller_manager/switch_controller",
                                functools.partial(self.on_switch_controller, a))
            t, q = camera_in_tcp(self.world, a)
            self.get_logger().info(f"wrist_{a} hand-eye (aruco_node parameters): hand_eye_translation "
                                   f"{t.round(4).tolist()}, hand_eye_quaternion_xyzw {q.round(6).tolist()}")
        self.create_service(Trigger, "~/reset", self.on_reset)
        self.create_timer(1.0 / param(self, "step_rate_hz"), self.step)
        self.lock, self._closing = threading.Lock(), threading.Event()
        self.camera_period = 1.0 / param(self, "camera_rate_hz")
        self._renderer_thread = threading.Thread(target=self.render_loop, daemon=True) if self.images else None
        if self._renderer_thread is not None:
            self._renderer_thread.start()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.bridge.reset(self.task, self.seed, self.episode, now_sec(self))
        self.goal_pub.publish(fill(PointStamped(), {"header": header(now_sec(self), "world"),
                                                    "point": vec3_msg(self.world.goal)}))
        cube = self.world.cube_state().pos.round(3).tolist()
        self.get_logger().info(f"seed {self.seed} episode {self.episode}: cube at {cube}, "
                               f"goal {self.world.goal.round(3).tolist()}")

    def on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """The next episode; the answer ends with the last one's 1 kHz motion report (JSON, SimBridge.pop_motion)."""
        with self.lock:
            motion = self.bridge.pop_motion()
        self.episode += 1
        self.reset()
        response.success = True
        response.message = f"seed {self.seed} episode {self.episode}; motion before: {json.dumps(motion)}"
        return response

    def on_trajectory(self, arm: str, msg: JointTrajectory) -> None:
        with self.lock:
            self.bridge.command_trajectory(arm, to_dict(msg), now_sec(self))

    async def on_gripper_goal(self, arm: str, kind: str, action_type: type, handle):
        """A franka_gripper goal: runs on the simulated hand until its fingers stop (or a newer goal or a reset
        aborts it)."""
        goal, future = handle.request, Future()
        width = self.world.cfg.control.gripper_max_width if kind == "homing" else goal.width
        epsilon = max(goal.epsilon.inner, goal.epsilon.outer) if kind == "grasp" else 0.0
        with self.lock:
            self.world.hands[arm].start("grasp" if kind == "grasp" else "move", width, epsilon,
                                        lambda ok, err, w: future.set_result((ok, err)))
        success, error = await future
        (handle.succeed if success else handle.abort)()
        return action_type.Result(success=success, error=error)

    def step(self) -> None:
        now = now_sec(self)
        with self.lock:
            self.bridge.advance(now)
            states = {arm: self.bridge.joint_state(arm) for arm in self.joint_pubs} if self.state_grid.due(now) \
                else {}
            modes = {arm: int(self.bridge.robots[arm].mode) for arm in states}
            truth = self.bridge.truth_detection(now) if self.truth and self.truth_grid.due(now) else None
        stamp = Time(nanoseconds=sec_to_ns(now)).to_msg()
        for arm, (names, q, qdot) in states.items():   # built directly: fill() costs 5x as much at this rate
            msg = JointState(name=names, position=q, velocity=qdot)
            msg.header.stamp = stamp
            self.joint_pubs[arm].publish(msg)
            robot_state = FrankaRobotState(robot_mode=modes[arm])
            robot_state.header.stamp = stamp
            self.robot_state_pubs[arm].publish(robot_state)
        if truth is not None:   # stamped as the joint states: the planner sees cube and arms at one time
            self.truth_pub.publish(fill(CubeDetection(), truth))
        log_lines(self, self.bridge.pop_log())

    def on_error_recovery(self, arm: str, handle) -> ErrorRecovery.Result:
        with self.lock:
            ok, _ = self.bridge.error_recovery(arm)
        (handle.succeed if ok else handle.abort)()
        return ErrorRecovery.Result()

    def on_component_state(self, arm: str, request, response):
        """Only the arm's own hardware component, to active or inactive (lifecycle_msgs/State ids 3, 2)."""
        state = request.target_state
        active = state.id == 3 or state.label == "active"
        if request.name != hardware_component_name(arm) or not (active or state.id == 2 or state.label == "inactive"):
            response.ok = False
            return response
        with self.lock:
            response.ok, _ = self.bridge.set_component_active(arm, active)
        response.state.id, response.state.label = (3, "active") if active and response.ok else (2, "inactive")
        return response

    def on_switch_controller(self, arm: str, request, response):
        names = {*request.activate_controllers, *request.deactivate_controllers}
        if names - {TRAJECTORY_CONTROLLER}:
            response.ok, response.message = False, f"unknown controllers {sorted(names)}"
            return response
        with self.lock:
            response.ok, response.message = self.bridge.switch_controller(arm, bool(request.activate_controllers))
        return response

    def render_loop(self) -> None:
        """The wrist cameras, in a thread of their own at camera_rate_hz: rendering never delays the physics
        or the joint states (it renders a snapshot of the state taken under the stepping lock)."""
        width, height = self.size
        cameras = SnapshotCameras(self.world, width, height)
        arms = list(self.world.cfg.arm_names)
        try:
            while not self._closing.wait(self.camera_period):
                with self.lock:
                    qpos, now = self.world.data.qpos.copy(), now_sec(self)
                images = cameras.render(qpos, [f"wrist_{a}" for a in arms])
                if images is None:
                    hint = "" if self.truth else "; set publish_true_cube_pose:=true, or no cube pose will be published"
                    self.get_logger().error("offscreen rendering is unavailable (try MUJOCO_GL=egl or "
                                            f"MUJOCO_GL=osmesa): no wrist images{hint}")
                    return
                for arm in arms:
                    self.publish_image(arm, images[f"wrist_{arm}"], now)
        except Exception:
            if rclpy.ok():   # after Ctrl-C the context is gone and publishing fails: that is the shutdown
                raise
        finally:
            cameras.close()

    def publish_image(self, arm: str, rgb, now: float) -> None:
        width, height = self.size
        camera = f"wrist_{arm}"
        hdr = header(now, f"{camera}_optical")
        self.info_pubs[arm].publish(fill(CameraInfo(), camera_info_msg(now, hdr["frame_id"], width, height,
                                                                       camera_fovy(self.world, camera))))
        image = Image(height=height, width=width, encoding="rgb8", is_bigendian=0, step=3 * width)
        image.header = fill(image.header, hdr)
        image.data = array.array("B", rgb.tobytes())
        self.image_pubs[arm].publish(image)

    def destroy_node(self) -> None:
        self._closing.set()
        if self._renderer_thread is not None:
            self._renderer_thread.join(timeout=2.0)
        self.world.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    run(SimNode, args=args)


if __name__ == "__main__":
    main()
