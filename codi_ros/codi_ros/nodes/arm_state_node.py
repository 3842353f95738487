"""arm_state_node (one per arm, namespaced): joint states -> codi_msgs/ArmState in the world frame.

Subscribes ``joint_states`` (sensor_msgs/JointState), publishes ``arm_state`` at ``publish_rate_hz``: the
first joint state of each 1 / publish_rate_hz slot of absolute time, stamped with its time (the simulator
thins its true cube pose on the same grid). Driven by the joint states, not a timer of its own: half the
callbacks (rclpy's executor costs most of an idle node's CPU). 25 Hz, not the joint states' 100 Hz: the
coordinator plans from the latest state a few times a second and predicts it forward from its stamp, and
each message costs the coordinator's single thread about a millisecond.

Also subscribes ``franka_robot_state_broadcaster/robot_state`` (franka_msgs/FrankaRobotState, reliable): an arm
in a reflex or user-stopped says so in its ArmState's ``fault`` (the coordinator then stops every arm until
/codi/recover). Without that topic (``use_fake_hardware``: franka_ros2 runs no broadcaster) it logs so once and
reports no faults; a reflex then shows only as joint states that stop.
"""

from __future__ import annotations

from codi_msgs.msg import ArmState
from franka_msgs.msg import FrankaRobotState
from rclpy.node import Node
from sensor_msgs.msg import JointState

from codi_ros.control.kinematics import ArmKinematics, arm_state_from_joints
from codi_ros.nodes._ros import COMMAND_QOS, SENSOR_QOS, describe, log_lines, param, run, stamp_sec, world_config
from codi_ros.robot.fr3 import FINGER_JOINTS, arm_joint_names
from codi_ros.ros.arm_interface import JointStateReader, robot_mode_fault
from codi_ros.ros.messages import arm_state_msg
from codi_ros.ros.msg_dict import fill
from codi_ros.ros.watchdog import RateGrid

ROBOT_STATE_GRACE_S = 5.0   # s without a robot state after start-up: say that faults are not seen


class ArmStateNode(Node):
    def __init__(self) -> None:
        super().__init__("arm_state_node")
        self.declare_parameter("arm", "left", describe("arm name from world.yaml"))
        self.declare_parameter("publish_rate_hz", 25.0, describe("arm_state rate, Hz (the joint-state rate at most)"))
        world = world_config(self)
        self.arm = param(self, "arm")
        self.frame = world.base_frame(self.arm)
        self.kinematics = ArmKinematics()
        self.reader = JointStateReader(arm_joint_names(self.arm), FINGER_JOINTS)
        self.pub = self.create_publisher(ArmState, "arm_state", SENSOR_QOS)
        self.create_subscription(JointState, "joint_states", self.on_joint_state, SENSOR_QOS)
        self.grid = RateGrid(param(self, "publish_rate_hz"))
        self.fault, self.robot_states = "", 0
        self.create_subscription(FrankaRobotState, "franka_robot_state_broadcaster/robot_state", self.on_robot_state,
                                 COMMAND_QOS)
        self.no_robot_state = self.create_timer(ROBOT_STATE_GRACE_S, self.check_robot_state)

    def on_robot_state(self, msg: FrankaRobotState) -> None:
        fault = robot_mode_fault(msg.robot_mode)
        if fault != self.fault:   # one call site per severity (rclpy refuses a changing one)
            text = f"arm {self.arm}: {'fault: ' + fault if fault else 'no fault'} (robot_mode {msg.robot_mode})"
            log_lines(self, [("error" if fault else "info", text)])
        self.fault, self.robot_states = fault, self.robot_states + 1

    def check_robot_state(self) -> None:
        self.no_robot_state.cancel()
        if not self.robot_states:
            topic = self.resolve_topic_name("franka_robot_state_broadcaster/robot_state")
            self.get_logger().warning(f"arm {self.arm}: no {topic} after {ROBOT_STATE_GRACE_S:.0f} s "
                                      "(use_fake_hardware, or the broadcaster not running): no reflex detection but "
                                      "stale joint states")

    def on_joint_state(self, msg: JointState) -> None:
        stamp = stamp_sec(msg.header.stamp)
        held = self.reader.update(list(msg.name), list(msg.position), list(msg.velocity), stamp)
        if held and self.grid.due(stamp):
            self.publish()

    def publish(self) -> None:
        r = self.reader
        state = arm_state_from_joints(self.kinematics, self.frame, r.q, r.qdot, r.gripper_width)
        self.pub.publish(fill(ArmState(), arm_state_msg(self.arm, state, r.stamp, joints=(r.q, r.qdot),
                                                        fault=self.fault)))


def main(args: list[str] | None = None) -> None:
    run(ArmStateNode, args=args)


if __name__ == "__main__":
    main()
