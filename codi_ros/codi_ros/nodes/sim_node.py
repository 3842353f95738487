"""sim_node: the two-arm MuJoCo world in real time, with the topics the real arms would have.

Per arm, the interfaces of a Franka under franka_ros2: subscribes
``/<arm>/joint_trajectory_controller/joint_trajectory`` (trajectory_msgs/JointTrajectory, as a ros2_control
JointTrajectoryController); serves ``/<arm>/franka_gripper/{move,grasp,homing}`` (franka_msgs actions, see
:class:`codi_ros.ros.sim_bridge.SimulatedHand`); publishes ``/<arm>/joint_states`` (arm and fingers) at
``joint_state_rate_hz`` and, when offscreen rendering works (MUJOCO_GL=egl or osmesa),
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
import threading

import rclpy
from codi_msgs.msg import CubeDetection
from franka_msgs.action import Grasp, Homing, Move
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
from codi_ros.ros.messages import header, vec3_msg
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
        self.bridge = SimBridge(self.world)
        self.seed, self.episode = param(self, "seed"), param(self, "episode")
        self.task = load_task(param(self, "task_file") or None)
        self.size = (param(self, "image_width"), param(self, "image_height"))
        self.images, self.truth = param(self, "publish_images"), param(self, "publish_true_cube_pose")
        self.truth_grid = RateGrid(param(self, "cube_pose_rate_hz"))
        self.state_grid = RateGrid(param(self, "joint_state_rate_hz"))
        arms = self.world.cfg.arm_names
        self.joint_pubs = {a: self.create_publisher(JointState, f"/{a}/joint_states", SENSOR_QOS) for a in arms}
        self.image_pubs = {a: self.create_publisher(Image, f"/{a}/wrist_camera/image_raw", SENSOR_QOS) for a in arms}
        self.info_pubs = {a: self.create_publisher(CameraInfo, f"/{a}/wrist_camera/camera_info", SENSOR_QOS)
                          for a in arms}
        self.truth_pub = self.create_publisher(CubeDetection, "/codi/cube_detections", SENSOR_QOS)
        self.goal_pub = self.create_publisher(PointStamped, "/codi/goal", LATCHED_QOS)
        for a in arms:
            self.create_subscription(JointTrajectory, f"/{a}/joint_trajectory_controller/joint_trajectory",
                                     lambda m, a=a: self.on_trajectory(a, m), COMMAND_QOS)
            for kind, action_type in (("move", Move), ("grasp", Grasp), ("homing", Homing)):
                ActionServer(self, action_type, f"/{a}/franka_gripper/{kind}",   # a partial stays a coroutine
                             functools.partial(self.on_gripper_goal, a, kind, action_type))   # function for rclpy
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
            self.bridge.reset(self.task, self.seed, self.episode)
        self.goal_pub.publish(fill(PointStamped(), {"header": header(now_sec(self), "world"),
                                                    "point": vec3_msg(self.world.goal)}))
        cube = self.world.cube_state().pos.round(3).tolist()
        self.get_logger().info(f"seed {self.seed} episode {self.episode}: cube at {cube}, "
                               f"goal {self.world.goal.round(3).tolist()}")

    def on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.episode += 1
        self.reset()
        response.success, response.message = True, f"seed {self.seed} episode {self.episode}"
        return response

    def on_trajectory(self, arm: str, msg: JointTrajectory) -> None:
        with self.lock:
            self.bridge.command_trajectory(arm, to_dict(msg))

    async def on_gripper_goal(self, arm: str, kind: str, action_type: type, handle):
        """A franka_gripper goal: runs on the simulated hand until its fingers stop (or a newer goal or a reset
        aborts it)."""
        goal, future = handle.request, Future()
        width = self.world.cfg.control.gripper_max_width if kind == "homing" else goal.width
        epsilon = max(goal.epsilon.inner, goal.epsilon.outer) if kind == "grasp" else 0.0
        with self.lock:
            self.bridge.hands[arm].start("grasp" if kind == "grasp" else "move", width, epsilon, now_sec(self),
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
            truth = self.bridge.truth_detection(now) if self.truth and self.truth_grid.due(now) else None
        stamp = Time(nanoseconds=round(now * 1e9)).to_msg()
        for arm, (names, q, qdot) in states.items():   # built directly: fill() costs 5x as much at this rate
            msg = JointState(name=names, position=q, velocity=qdot)
            msg.header.stamp = stamp
            self.joint_pubs[arm].publish(msg)
        if truth is not None:   # stamped as the joint states: the planner sees cube and arms at one time
            self.truth_pub.publish(fill(CubeDetection(), truth))
        log_lines(self, self.bridge.pop_log())

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
