"""action_node (one per arm, namespaced): the current action chunk -> joint velocity commands at the IK rate.

Subscribes ``action_chunk`` (codi_msgs/ActionChunk; an empty one means stop) and ``joint_states``;
publishes ``velocity_controller/commands`` (std_msgs/Float64MultiArray, 7 joint velocities, as a
ros2_control JointGroupVelocityController takes them) and ``gripper_controller/commands`` (one
width, m), once per IK period (1 / ``control.ik_rate_hz``, world.yaml) of the joint states' stamps,
as they arrive, and every 50 ms without them (the stale-state hold). All behaviour is in
:class:`codi_ros.nodes.logic.arm_control.ArmController`, around the same
:class:`codi_ros.control.executor.ArmExecutor` that ``codi eval`` runs.
"""

from __future__ import annotations

import numpy as np
from codi_msgs.msg import ActionChunk
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from codi_ros.control.kinematics import ArmKinematics
from codi_ros.nodes._ros import COMMAND_QOS, SENSOR_QOS, describe, log_lines, now_sec, param, run, world_config
from codi_ros.nodes.logic.arm_control import ARM_JOINTS, ArmController, JointStateReader
from codi_ros.nodes.logic.msg_dict import to_dict

WATCHDOG_PERIOD_S = 0.05   # without joint states, commands still go out (holding) this often


class ActionNode(Node):
    def __init__(self) -> None:
        super().__init__("action_node")
        self.declare_parameter("arm", "left", describe("arm name from world.yaml"))
        self.declare_parameter("joint_names", list(ARM_JOINTS), describe("the 7 arm joints, in command order"))
        self.declare_parameter("state_timeout", 0.2, describe("older joint states: ramp to zero, s"))
        world = world_config(self)   # executor settings, workspace and limits: world.yaml, as in codi eval
        self.arm = param(self, "arm")
        self.controller = ArmController(world, self.arm, ArmKinematics(world), param(self, "state_timeout"))
        self.reader = JointStateReader(list(param(self, "joint_names")), ())
        self.qdot_pub = self.create_publisher(Float64MultiArray, "velocity_controller/commands", COMMAND_QOS)
        self.gripper_pub = self.create_publisher(Float64MultiArray, "gripper_controller/commands", COMMAND_QOS)
        self.create_subscription(ActionChunk, "action_chunk", self.on_chunk, COMMAND_QOS)
        self.create_subscription(JointState, "joint_states", self.on_joint_state, SENSOR_QOS)
        self.last_step = -1.0
        self.create_timer(WATCHDOG_PERIOD_S, self.watchdog)

    def on_chunk(self, msg: ActionChunk) -> None:
        self.controller.on_chunk(to_dict(msg), now_sec(self))

    def on_joint_state(self, msg: JointState) -> None:
        stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        if self.reader.update(list(msg.name), list(msg.position), list(msg.velocity), stamp) \
                and self.controller.on_joint_positions(self.reader.q, stamp):   # one command per IK period
            self.step(now_sec(self))

    def watchdog(self) -> None:
        """No joint states for a while: step anyway, so the stale-state hold is commanded."""
        now = now_sec(self)
        if now - self.last_step > WATCHDOG_PERIOD_S:
            self.step(now)

    def step(self, now: float) -> None:
        self.last_step = now
        qdot, width = self.controller.step(now)
        self.qdot_pub.publish(Float64MultiArray(data=np.asarray(qdot, dtype=float).tolist()))
        if width is not None:
            self.gripper_pub.publish(Float64MultiArray(data=[width]))
        log_lines(self, self.controller.pop_log())


def main(args: list[str] | None = None) -> None:
    run(ActionNode, args=args)


if __name__ == "__main__":
    main()
