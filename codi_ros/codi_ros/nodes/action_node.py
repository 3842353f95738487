"""action_node (one per arm, namespaced): each action chunk -> one joint trajectory for the arm's controller,
and the hand's franka_gripper goals.

Subscribes ``action_chunk`` (codi_msgs/ActionChunk; an empty one means stop) and ``joint_states``;
publishes ``joint_trajectory_controller/joint_trajectory`` (trajectory_msgs/JointTrajectory of the 7 arm
joints, as a ros2_control JointTrajectoryController takes it): the executor's setpoints at the IK rate
from just after the chunk arrived until the arm is at rest after it. Nothing is sent between plans; the
controller interpolates. The widths those setpoints command become goals of the ``franka_gripper/move``
and ``franka_gripper/grasp`` actions (franka_msgs; served by franka_gripper on the arms, by sim_node in
simulation), one at a time. Every 50 ms a tick sends the gripper goal due and stops the arm on stale or NaN
joint states (the watchdog). ``~/recover`` (std_srvs/Trigger; /codi/recover calls it for every arm) restarts
the arm after a reflex as franka_ros2 wants it: ``action_server/error_recovery`` (franka_msgs ErrorRecovery),
then ``controller_manager/set_hardware_component_state`` (the arm's hardware component back to active) and
``controller_manager/switch_controller`` (the trajectory controller active again), each answer awaited
at most RECOVERY_STEP_TIMEOUT_S; then the executor starts again from the measured joints. All behaviour is in
:class:`codi_ros.ros.arm_interface.ArmInterface`, around the same
:class:`codi_ros.control.executor.ArmExecutor` that ``codi eval`` runs.
"""

from __future__ import annotations

from action_msgs.msg import GoalStatus
from builtin_interfaces.msg import Duration
from codi_msgs.msg import ActionChunk
from controller_manager_msgs.srv import SetHardwareComponentState, SwitchController
from franka_msgs.action import ErrorRecovery, Grasp, Move
from lifecycle_msgs.msg import State
from rclpy.action import ActionClient
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from codi_ros.control.gripper import GripperGoal
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
    within,
    world_config,
)
from codi_ros.robot.fr3 import TRAJECTORY_CONTROLLER, arm_joint_names, hardware_component_name
from codi_ros.ros.arm_interface import ArmInterface, JointStateReader
from codi_ros.ros.messages import trajectory_msg
from codi_ros.ros.msg_dict import fill, to_dict

TICK_PERIOD_S = 0.05   # the joint states are checked, and gripper goals sent, this often
RECOVERY_STEP_TIMEOUT_S = 10.0   # longest wait for each answer of the error recovery (libfranka's can take seconds)


class ActionNode(Node):
    def __init__(self) -> None:
        super().__init__("action_node")
        self.declare_parameter("arm", "left", describe("arm name from world.yaml"))
        self.declare_parameter("state_timeout", 0.2, describe("older joint states: stop the arm, s"))

        world = world_config(self)   # executor settings, workspace and limits: world.yaml, as in codi eval
        self.arm = param(self, "arm")
        self.controller = ArmInterface(world, self.arm, ArmKinematics(), param(self, "state_timeout"))
        self.joints = list(arm_joint_names(self.arm))   # franka_bringup's with arm_prefix:=<arm>, as the sim's
        self.reader = JointStateReader(self.joints)   # and the fingers (franka_ros2 merges them in): a lost grasp
        self.pub = self.create_publisher(JointTrajectory, f"{TRAJECTORY_CONTROLLER}/joint_trajectory", COMMAND_QOS)
        self.gripper = {"move": ActionClient(self, Move, "franka_gripper/move"),
                        "grasp": ActionClient(self, Grasp, "franka_gripper/grasp")}
        self.create_subscription(ActionChunk, "action_chunk", self.on_chunk, COMMAND_QOS)
        self.create_subscription(JointState, "joint_states", self.on_joint_state, SENSOR_QOS)
        self.error_recovery = ActionClient(self, ErrorRecovery, "action_server/error_recovery")
        self.component_state = self.create_client(SetHardwareComponentState,
                                                  "controller_manager/set_hardware_component_state")
        self.switch_controller = self.create_client(SwitchController, "controller_manager/switch_controller")
        # a group of its own: awaiting the recovery's answers, it must not hold the default group, in which the
        # clients take them
        self.create_service(Trigger, "~/recover", self.on_recover, callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(TICK_PERIOD_S, self.tick)

    def tick(self) -> None:
        now = now_sec(self)
        self.send(self.controller.check(now))
        self.send_gripper(self.controller.gripper_goal(now))

    def on_chunk(self, msg: ActionChunk) -> None:
        self.send(self.controller.on_chunk(to_dict(msg), now_sec(self)))

    def on_joint_state(self, msg: JointState) -> None:
        stamp = stamp_sec(msg.header.stamp)
        if self.reader.update(msg.name, msg.position, msg.velocity, stamp):
            self.controller.on_joint_positions(self.reader.q, stamp, self.reader.qdot, self.reader.gripper_width)

    def send(self, trajectory: Trajectory | None) -> None:
        if trajectory is not None:
            self.pub.publish(fill(JointTrajectory(), trajectory_msg(trajectory, self.joints)))
        log_lines(self, self.controller.pop_log())

    def send_gripper(self, goal: GripperGoal | None) -> None:
        if goal is None:
            return
        client = self.gripper[goal.action]
        if not client.server_is_ready():
            name = self.resolve_topic_name(f"franka_gripper/{goal.action}")
            self.gripper_done(goal.seq, False, f"no action server {name} (franka_gripper not running, or "
                                               "use_fake_hardware)")
            return
        if goal.action == "grasp":
            msg = Grasp.Goal(width=goal.width, speed=goal.speed, force=goal.force)
            msg.epsilon.inner = msg.epsilon.outer = goal.epsilon
        else:
            msg = Move.Goal(width=goal.width, speed=goal.speed)
        client.send_goal_async(msg).add_done_callback(lambda f, seq=goal.seq: self.on_goal_response(seq, f))

    def on_goal_response(self, seq: int, future) -> None:
        handle = future.result()
        if handle is None or not handle.accepted:
            self.gripper_done(seq, False, "goal rejected")
            return
        handle.get_result_async().add_done_callback(
            lambda f: self.gripper_done(seq, bool(f.result().result.success), str(f.result().result.error)))

    async def on_recover(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = await self.recover()
        if response.success:
            self.controller.resync()
        log_lines(self, [("info" if response.success else "error", f"arm {self.arm}: recovery: {response.message}"),
                         *self.controller.pop_log()])
        return response

    async def recover(self) -> tuple[bool, str]:
        """franka_ros2's recovery after a reflex: error recovery, hardware component active, controller active."""
        if not self.error_recovery.server_is_ready():
            return False, (f"no action server {self.resolve_topic_name('action_server/error_recovery')} (franka_ros2 "
                           "not running, or use_fake_hardware: nothing to recover)")
        handle = await within(self, self.error_recovery.send_goal_async(ErrorRecovery.Goal()), RECOVERY_STEP_TIMEOUT_S)
        if handle is None or not handle.accepted:
            return False, "error recovery: the goal was not accepted"
        result = await within(self, handle.get_result_async(), RECOVERY_STEP_TIMEOUT_S)
        if result is None or result.status != GoalStatus.STATUS_SUCCEEDED:
            return False, ("error recovery failed: the robot still reports an error (user stop pressed? brakes "
                           "locked? see Franka Desk)")
        component = hardware_component_name(self.arm)
        steps = ((self.component_state, SetHardwareComponentState.Request(
                      name=component, target_state=State(id=State.PRIMARY_STATE_ACTIVE, label="active")),
                  f"hardware component {component} active"),
                 (self.switch_controller, SwitchController.Request(
                     activate_controllers=[TRAJECTORY_CONTROLLER], strictness=SwitchController.Request.BEST_EFFORT,
                     activate_asap=True, timeout=Duration(sec=2)), f"{TRAJECTORY_CONTROLLER} active"))
        for client, req, what in steps:
            if not client.service_is_ready():
                return False, f"{what}: no service {client.srv_name}"
            answer = await within(self, client.call_async(req), RECOVERY_STEP_TIMEOUT_S)
            if answer is None or not answer.ok:
                return False, f"{what}: {'no answer' if answer is None else 'refused'}"
        return True, "error recovery done, hardware component and trajectory controller active"

    def gripper_done(self, seq: int, success: bool, error: str) -> None:
        self.send_gripper(self.controller.gripper_result(seq, success, error, now_sec(self)))
        log_lines(self, self.controller.pop_log())


def main(args: list[str] | None = None) -> None:
    run(ActionNode, args=args)


if __name__ == "__main__":
    main()
