"""action_node (one per arm, namespaced): each action chunk -> one joint trajectory for the arm's controller.

Subscribes ``action_chunk`` (codi_msgs/ActionChunk; an empty one means stop) and ``joint_states``;
publishes ``joint_trajectory_controller/joint_trajectory`` (trajectory_msgs/JointTrajectory, as a
ros2_control JointTrajectoryController takes it, with the finger joints for the simulated Franka's):
the executor's setpoints at the IK rate from just after the chunk arrived until the arm is at rest
after it. Nothing is sent between plans; the controller interpolates. A watchdog (every 50 ms) stops
the arm on stale or NaN joint states. All behaviour is in
:class:`codi_ros.ros.arm_interface.ArmInterface`, around the same
:class:`codi_ros.control.executor.ArmExecutor` that ``codi eval`` runs.
"""

from __future__ import annotations

from codi_msgs.msg import ActionChunk
from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from codi_ros.control.kinematics import ArmKinematics
from codi_ros.control.trajectory import JointTrajectory as Trajectory
from codi_ros.nodes._ros import (
    COMMAND_QOS,
    SENSOR_QOS,
    describe,
    log_lines,
    now_sec,
    param,
    run,
    stamp_sec,
    world_config,
)
from codi_ros.robot.fr3 import ARM_JOINTS, FINGER_JOINTS
from codi_ros.ros.arm_interface import ArmInterface, JointStateReader
from codi_ros.ros.messages import trajectory_msg
from codi_ros.ros.msg_dict import fill, to_dict

WATCHDOG_PERIOD_S = 0.05   # the joint states are checked this often


class ActionNode(Node):
    def __init__(self) -> None:
        super().__init__("action_node")
        self.declare_parameter("arm", "left", describe("arm name from world.yaml"))
        self.declare_parameter("joint_names", list(ARM_JOINTS), describe("the 7 arm joints, in command order"))
        self.declare_parameter("finger_joint_names", list(FINGER_JOINTS),
                               describe("finger joints in the trajectory (each half the gripper width); [] for none"))
        self.declare_parameter("state_timeout", 0.2, describe("older joint states: stop the arm, s"))
        world = world_config(self)   # executor settings, workspace and limits: world.yaml, as in codi eval
        self.arm = param(self, "arm")
        self.controller = ArmInterface(world, self.arm, ArmKinematics(), param(self, "state_timeout"))
        self.joints, self.fingers = list(param(self, "joint_names")), list(param(self, "finger_joint_names"))
        self.reader = JointStateReader(self.joints, ())
        self.pub = self.create_publisher(JointTrajectory, "joint_trajectory_controller/joint_trajectory", COMMAND_QOS)
        self.create_subscription(ActionChunk, "action_chunk", self.on_chunk, COMMAND_QOS)
        self.create_subscription(JointState, "joint_states", self.on_joint_state, SENSOR_QOS)
        self.create_timer(WATCHDOG_PERIOD_S, lambda: self.send(self.controller.check(now_sec(self))))

    def on_chunk(self, msg: ActionChunk) -> None:
        self.send(self.controller.on_chunk(to_dict(msg), now_sec(self)))

    def on_joint_state(self, msg: JointState) -> None:
        stamp = stamp_sec(msg.header.stamp)
        if self.reader.update(msg.name, msg.position, msg.velocity, stamp):
            self.controller.on_joint_positions(self.reader.q, stamp, self.reader.qdot)

    def send(self, trajectory: Trajectory | None) -> None:
        if trajectory is not None:
            self.pub.publish(fill(JointTrajectory(), trajectory_msg(trajectory, self.joints, self.fingers)))
        log_lines(self, self.controller.pop_log())


def main(args: list[str] | None = None) -> None:
    run(ActionNode, args=args)


if __name__ == "__main__":
    main()
