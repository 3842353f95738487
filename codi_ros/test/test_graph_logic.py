"""The graph without ROS: the nodes' classes wired together by hand."""

from __future__ import annotations

import numpy as np
from logic_fakes import STILL, WORLD, FakePlanner

from codi_ros.control.kinematics import arm_state_from_joints
from codi_ros.robot.fr3 import arm_joint_names
from codi_ros.ros.arm_interface import ArmInterface, JointStateReader
from codi_ros.ros.coordinator import Coordinator
from codi_ros.ros.messages import (
    arm_state_msg,
    trajectory_msg,
)
from codi_ros.ros.sim_bridge import SimBridge
from codi_ros.sim.tasks import HANDOVER


def test_sim_graph_wired_like_the_launch_file_moves_both_arms_and_stops(world, kinematics):
    """The nodes' logic wired as two_arm_sim.launch.py wires the nodes (messages as dicts, one clock):
    sim -> joint states (25 Hz) -> arm states -> coordinator (true cube pose, fake planner) -> chunks -> action
    nodes -> joint trajectories and gripper goals (every 50 ms) -> sim. Each arm follows its plan (0.05 m/s
    along its base x, the hand opened once); /codi/stop stops both."""
    bridge = SimBridge(world)
    bridge.reset(HANDOVER, seed=1, index=0)
    coord = Coordinator(WORLD, FakePlanner())
    coord.start()
    readers = {a: JointStateReader(arm_joint_names(a)) for a in WORLD.arm_names}
    actions = {a: ArmInterface(WORLD, a, kinematics, compute_clock=STILL) for a in WORLD.arm_names}
    start = {a: world.arm_state(a).ee_pos for a in WORLD.arm_names}

    def send(chunk: dict, t: float) -> None:
        trajectory = actions[chunk["arm"]].on_chunk(chunk, t)
        if trajectory is not None:
            bridge.command_trajectory(chunk["arm"], trajectory_msg(trajectory, arm_joint_names(chunk["arm"])), t)

    def grip(arm: str, goal, t: float) -> None:           # the action node's franka_gripper client
        if goal is not None:
            world.hands[arm].start(goal.action, goal.width, goal.epsilon,
                                   lambda ok, err, w: grip(arm, actions[arm].gripper_result(goal.seq, ok, err, t), t))

    def run(k0: int, steps: int) -> None:
        for k in range(k0, k0 + steps):                   # 100 Hz
            t = 50.0 + k * 0.01
            bridge.advance(t)
            for arm in WORLD.arm_names if k % 5 == 0 else ():
                grip(arm, actions[arm].gripper_goal(t), t)
            for arm in WORLD.arm_names:
                if k % 4:
                    continue
                r = readers[arm]
                r.update(*bridge.joint_state(arm), t)
                actions[arm].on_joint_positions(r.q, t)
                coord.on_arm_state(arm_state_msg(arm, arm_state_from_joints(kinematics, WORLD.base_frame(arm), r.q,
                                                                            r.qdot, r.gripper_width), t))
            if k % 10 == 0:                                # 10 Hz: true cube pose, receding-horizon tick
                coord.on_cube_detection(bridge.truth_detection(t))
                for chunk in coord.tick(t):
                    send(chunk, t)

    run(0, 300)
    for arm in WORLD.arm_names:
        moved = WORLD.base_frame(arm).vec_to_base(world.arm_state(arm).ee_pos - start[arm])
        assert 0.12 < moved[0] < 0.16 and np.abs(moved[1:]).max() < 0.01, (arm, moved)
    assert [t for lvl, t in coord.pop_log() if lvl == "warn"] == []
    assert all(actions[a].gripper.done.action == "move" and actions[a].gripper.running is None for a in WORLD.arm_names)
    assert [t for a in WORLD.arm_names for lvl, t in actions[a].pop_log() if lvl == "warn"] == []
    for chunk in coord.stop(50.0 + 300 * 0.01):
        send(chunk, 50.0 + 300 * 0.01)
    run(300, 50)                                   # the trajectory's margin, the jerk-limited ramp, the servos settle
    assert all(np.abs(world.joint_velocities(a)).max() < 0.02 for a in WORLD.arm_names)
