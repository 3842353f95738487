"""sim_node's bridge: trajectories in, joint states and detections out (no rclpy)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from logic_fakes import STILL, WORLD, chunk_of, texts

from codi_ros.control.executor import MAX_TARGET_LEAD
from codi_ros.frames import quat_to_mat
from codi_ros.paths import config_dir
from codi_ros.robot.fr3 import FINGER_JOINTS, RobotMode, arm_joint_names
from codi_ros.ros.arm_interface import ArmInterface
from codi_ros.ros.messages import (
    chunk_msg,
    trajectory_msg,
)
from codi_ros.ros.sim_bridge import LAG_REPORT_HOLD_S, SimBridge, camera_in_tcp
from codi_ros.sim.tasks import HANDOVER


def test_sim_bridge_steps_in_real_time_and_follows_trajectories_in_the_wall_clock(world, kinematics):
    bridge = SimBridge(world, max_lag=0.1)
    bridge.reset(HANDOVER, seed=0, index=0)
    t0 = world.time
    assert bridge.advance(100.0) == 0.0                   # first call syncs the clocks
    assert bridge.advance(100.034) == pytest.approx(0.03)  # whole 10 ms periods only
    assert bridge.advance(100.05) == pytest.approx(0.02)
    assert world.time - t0 == pytest.approx(0.05)
    ctl = ArmInterface(WORLD, "left", kinematics, compute_clock=STILL)   # the action node, in the wall clock
    ctl.on_joint_positions(world.joint_positions("left"), 100.05)
    trajectory = ctl.on_chunk(chunk_msg("left", chunk_of([0.1, 0, 0, 0, 0, 0], start=100.05)), 100.05)
    bridge.command_trajectory("left", trajectory_msg(trajectory, arm_joint_names("left")), 100.05)
    for k in range(1, 31):
        bridge.advance(100.05 + 0.01 * k)
    q_due, _, _ = trajectory.sample(100.35)
    np.testing.assert_allclose(world.arms["left"].q_target, q_due, atol=1e-9)   # the servos' targets: on time
    q = world.joint_positions("left")
    assert bridge.advance(101.0) == pytest.approx(0.01)    # 0.64 s behind: skip ahead one period, the
    q_due, _, _ = trajectory.sample(101.0)                  # trajectory kept to the wall clock, as on an arm,
    np.testing.assert_allclose(world.arms["left"].q_target,  # the targets' jump within MAX_TARGET_LEAD
                               np.clip(q_due, q - MAX_TARGET_LEAD, q + MAX_TARGET_LEAD), atol=1e-9)
    assert sum("behind real time" in t for lvl, t in bridge.pop_log() if lvl == "warn") == 1
    bad = trajectory_msg(trajectory, arm_joint_names("left"))
    bad["points"][3]["positions"] = bad["points"][3]["positions"][:5]
    bridge.command_trajectory("left", bad, 101.0)
    bridge.command_trajectory("left", trajectory_msg(trajectory, arm_joint_names("right")), 101.0)   # another arm's
    log = texts(bridge.pop_log())
    assert any("points[3]" in t for t in log) and any("joint_names: missing" in t for t in log)


def started_bridge(world, now: float = 100.0) -> SimBridge:
    """A bridge without simulated reflexes (a violation is counted, the arm goes on), reset and synced at ``now``."""
    bridge = SimBridge(world, reflexes=False)
    bridge.reset(HANDOVER, seed=0, index=0, now=now)
    bridge.advance(now)
    return bridge


def left_action_node(world, kinematics, stamp: float) -> ArmInterface:
    """The left arm's action node, with the world's joints measured at ``stamp``."""
    ctl = ArmInterface(WORLD, "left", kinematics, compute_clock=STILL)
    ctl.on_joint_positions(world.joint_positions("left"), stamp)
    return ctl


def test_the_simulated_controller_takes_trajectories_as_ros2_control_does_and_drops_the_last_episodes(world,
                                                                                                       kinematics):
    """A trajectory taken after its first point is sampled part-way, as a JointTrajectoryController samples it
    (counted when that is not the motion running: a jump, which the 1 kHz check then sees); one that starts
    before the episode reset was meant for arms that have since been moved: ignored, with a warning."""
    bridge = started_bridge(world)
    ctl = left_action_node(world, kinematics, 99.0)
    old = ctl.on_chunk(chunk_msg("left", chunk_of([0.1, 0, 0, 0, 0, 0], start=99.0)), 99.0)
    bridge.command_trajectory("left", trajectory_msg(old, arm_joint_names("left")), 100.0)
    assert not world.arms["left"].follower.active
    assert any("starts before the episode reset" in t for t in texts(bridge.pop_log()))
    ctl = left_action_node(world, kinematics, 100.0)
    late = ctl.on_chunk(chunk_msg("left", chunk_of([0.1, 0, 0, 0, 0, 0], start=100.0)), 100.0)
    for k in range(1, 31):                                  # arrives 0.3 s late: 0.1 s after its first point
        bridge.advance(100.0 + 0.01 * k)
    bridge.command_trajectory("left", trajectory_msg(late, arm_joint_names("left")), 100.3)
    assert bridge.robots["left"].late == 1
    bridge.advance(100.31)
    np.testing.assert_allclose(world.arms["left"].q_target, late.sample(100.31)[0], atol=1e-9)   # part-way
    assert bridge.pop_motion()["left"]["violations"] >= 1                                  # the jump, seen


def test_a_trajectory_is_taken_when_it_arrives_though_the_simulation_stands_behind(world, kinematics):
    """The simulation's clock stands where its last step left it (here 45 ms behind, on a busy machine). A
    trajectory that continues the running one from the action node's present is taken at its arrival, not at
    that earlier time, where it would be splined over a stretch already commanded with other accelerations (the
    graph's reflexes): the 1 kHz commands stay within the executor's limits across the join."""
    bridge = started_bridge(world)
    ctl = left_action_node(world, kinematics, 100.0)
    turn = ctl.on_chunk(chunk_msg("left", chunk_of([0, 0, 0, 0, 0, 1.0], start=100.0)), 100.0)
    bridge.command_trajectory("left", trajectory_msg(turn, arm_joint_names("left")), 100.0)
    for k in range(1, 20):
        bridge.advance(100.0 + 0.01 * k)                    # the last step: at 100.19
        ctl.on_joint_positions(world.joint_positions("left"), 100.0 + 0.01 * k)
    now = turn.start + 0.03                                  # the wrist ramps up its acceleration since 100.195
    back = ctl.on_chunk(chunk_msg("left", chunk_of([0, 0, 0, 0, 0, -1.0], start=now)), now)
    bridge.command_trajectory("left", trajectory_msg(back, arm_joint_names("left")), now + 0.005)
    for k in range(1, 60):
        bridge.advance(now + 0.005 + 0.01 * k)
    peaks = bridge.pop_motion()["left"]["peaks"]
    assert peaks["velocity"] > 0.5                          # it turned
    assert peaks["acceleration"] <= max(WORLD.control.joint_acceleration_limit) * (1 + 1e-6), peaks


def test_replanned_trajectories_at_epoch_clock_times_reach_the_simulated_fr3_without_steps(world, kinematics):
    """The graph runs in the wall clock (1.8e9 s, where a double resolves 2.4e-7 s). Each new trajectory repeats
    the running one's points up to its own (:meth:`JointTrajectory.following`), and must put them at the same
    instants: stamped by each point's own time (not the sum of a header and an offset, each rounded), and
    placed on the world's clock by one fixed offset, they do. Shifted by ~1e-7 s from one trajectory to the
    next, the points made 1e-6 rad steps, which the FR3's 1 kHz differences see as up to 1 rad/s^2 more (the
    graph's seed-0 reflex at 10.06 rad/s^2, on joint 7, where the executor commands 9)."""
    t0 = 1796685936.0
    bridge = started_bridge(world, t0)
    ctl = left_action_node(world, kinematics, t0)
    names, sent, now = arm_joint_names("left"), [], t0
    for k in range(12):                                      # the wrist turned back and forth, replanned at ~3 Hz
        plan_at = t0 + 0.3 * k + 0.0137 * (k % 3)
        while now < plan_at:
            now += 0.01
            bridge.advance(now)
            ctl.on_joint_positions(world.joint_positions("left"), now, world.joint_velocities("left"))
            for arrival, msg in [m for m in sent if m[0] <= now]:
                bridge.command_trajectory("left", msg, arrival)
                sent.remove((arrival, msg))
        twist = [0.05, 0, 0, 0, 0, 1.5 if k % 2 else -1.5]
        trajectory = ctl.on_chunk(chunk_msg("left", chunk_of(twist, start=now)), now)
        sent.append((now + 0.004, trajectory_msg(trajectory, names)))
    for _ in range(100):
        now += 0.01
        bridge.advance(now)
        for arrival, msg in [m for m in sent if m[0] <= now]:
            bridge.command_trajectory("left", msg, arrival)
            sent.remove((arrival, msg))
    peaks = bridge.pop_motion()["left"]["peaks"]
    assert peaks["velocity"] > 0.5                          # it turned
    assert peaks["acceleration"] <= max(WORLD.control.joint_acceleration_limit) * 1.01, peaks


def test_sim_bridge_reports_a_recurring_lag_once_and_its_end_after_a_quiet_spell(world):
    bridge = SimBridge(world, max_lag=0.1)
    bridge.reset(HANDOVER, seed=0, index=0)
    bridge.advance(0.0)
    t = 0.0
    for _ in range(20):                     # a slow render every 0.5 s, on time in between
        for _ in range(4):
            t += 0.01
            bridge.advance(t)
        t += 0.5
        bridge.advance(t)
    lines = bridge.pop_log()
    assert [level for level, text in lines if "behind real time" in text] == ["warn"]
    quiet_until = t + LAG_REPORT_HOLD_S + 0.1
    while t < quiet_until:                  # on time (steps shorter than max_lag) for the hold period
        t += 0.05
        bridge.advance(t)
    assert [level for level, text in bridge.pop_log() if "behind real time" in text] == ["info"]


def test_sim_task_is_seeded_and_joint_states_hold_arm_and_fingers(world):
    bridge = SimBridge(world)
    bridge.reset(HANDOVER, seed=4, index=0)
    cube, goal = world.cube_state().pos.copy(), world.goal.copy()
    assert cube[0] < 0 and WORLD.goal.x_range[0] <= goal[0] <= WORLD.goal.x_range[1]
    bridge.reset(HANDOVER, seed=4, index=0)
    np.testing.assert_allclose(world.cube_state().pos, cube)
    names, q, _ = bridge.joint_state("right")
    assert names == [*arm_joint_names("right"), *FINGER_JOINTS]
    assert q[7] + q[8] == pytest.approx(world.gripper_width("right"))


def test_sim_hand_eye_matches_the_aruco_parameters(world):
    """The aruco nodes' hand-eye parameters in ros.yaml are the simulated wrist camera's pose."""
    params = yaml.safe_load((config_dir() / "ros.yaml").read_text())
    for arm in WORLD.arm_names:
        t, q = camera_in_tcp(world, arm)
        p = params[f"/{arm}/aruco_node"]["ros__parameters"]
        np.testing.assert_allclose(p["hand_eye_translation"], t, atol=1e-4)
        R = quat_to_mat(np.roll(p["hand_eye_quaternion_xyzw"], 1))
        assert np.abs(R - quat_to_mat(np.roll(q, 1))).max() < 1e-5


@pytest.mark.parametrize("reflexes", [True, False])
def test_a_jump_beyond_the_fr3s_limits_is_a_reflex_that_recovers_in_franka_order(world, reflexes):
    """A trajectory that jumps 0.2 rad in 20 ms: with reflexes simulated the arm stops, ignores trajectories, and
    restarts only through error recovery, then its hardware component, then its controller (franka_ros2's
    order); without, the violation is counted and logged and the arm goes on."""
    bridge = SimBridge(world, reflexes=reflexes)
    bridge.reset(HANDOVER, seed=0, index=0)
    bridge.advance(100.0)
    q = world.joint_positions("left")
    jump = {"header": {"stamp": {"sec": 100, "nanosec": 20_000_000}}, "joint_names": list(arm_joint_names("left")),
            "points": [{"positions": (q + [0.2, 0, 0, 0, 0, 0, 0]).tolist(), "velocities": [0.0] * 7,
                        "time_from_start": {"sec": 0, "nanosec": 20_000_000}}]}
    bridge.command_trajectory("left", jump, 100.0)
    for k in range(1, 11):
        bridge.advance(100.0 + 0.01 * k)
    robot, log = bridge.robots["left"], texts(bridge.pop_log())
    assert robot.violations >= 1 and bridge.robots["right"].violations == 0
    if not reflexes:
        assert robot.mode != RobotMode.REFLEX and any("the FR3 would abort here" in t for t in log)
        return
    assert robot.mode == RobotMode.REFLEX and any("reflex (joint_motion_generator_" in t for t in log)
    bridge.command_trajectory("left", jump, 100.1)
    assert any("controller is inactive" in t for t in texts(bridge.pop_log()))
    assert bridge.set_component_active("left", True)[0] is False             # error recovery first
    assert bridge.switch_controller("left", True)[0] is False                # the component first
    assert bridge.error_recovery("left") == (True, "")
    assert bridge.set_component_active("left", True)[0] and bridge.switch_controller("left", True)[0]
    assert robot.mode == RobotMode.MOVE
