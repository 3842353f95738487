"""arm_state_node (one per arm, namespaced): joint states -> codi_msgs/ArmState in the world frame.

Subscribes ``joint_states`` (sensor_msgs/JointState), publishes ``arm_state`` at ``publish_rate_hz``: the
first joint state of each 1 / publish_rate_hz slot of absolute time, stamped with its time (the simulator
thins its true cube pose on the same grid). Driven by the joint states, not a timer of its own: half the
callbacks (rclpy's executor costs most of an idle node's CPU). 25 Hz, not the joint states' 100 Hz: the
coordinator plans from the latest state a few times a second and predicts it forward from its stamp, and
each message costs the coordinator's single thread about a millisecond.
"""

from __future__ import annotations

from codi_msgs.msg import ArmState
from rclpy.node import Node
from sensor_msgs.msg import JointState

from codi_ros.control.kinematics import ArmKinematics, arm_state_from_joints
from codi_ros.nodes._ros import SENSOR_QOS, describe, param, run, stamp_sec, world_config
from codi_ros.robot.fr3 import FINGER_JOINTS, arm_joint_names
from codi_ros.ros.arm_interface import JointStateReader
from codi_ros.ros.messages import arm_state_msg
from codi_ros.ros.msg_dict import fill
from codi_ros.ros.watchdog import RateGrid


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

    def on_joint_state(self, msg: JointState) -> None:
        stamp = stamp_sec(msg.header.stamp)
        held = self.reader.update(list(msg.name), list(msg.position), list(msg.velocity), stamp)
        if held and self.grid.due(stamp):
            self.publish()

    def publish(self) -> None:
        r = self.reader
        state = arm_state_from_joints(self.kinematics, self.frame, r.q, r.qdot, r.gripper_width)
        self.pub.publish(fill(ArmState(), arm_state_msg(self.arm, state, r.stamp, joints=(r.q, r.qdot))))


def main(args: list[str] | None = None) -> None:
    run(ArmStateNode, args=args)


if __name__ == "__main__":
    main()
