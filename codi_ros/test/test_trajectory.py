"""Joint trajectories (control/trajectory.py) and their JointTrajectory messages (ros/messages.py):
what the action nodes hand a trajectory controller once per plan, and how the simulated Franka follows them."""

from __future__ import annotations

import numpy as np
import pytest

from codi_ros.control.smoothness import MotionGeneratorCheck
from codi_ros.control.trajectory import JointTrajectory, TrajectoryError, TrajectoryFollower
from codi_ros.robot.fr3 import JOINT_ACCELERATION_LIMIT, JOINT_JERK_LIMIT, JOINT_VELOCITY_LIMIT
from codi_ros.ros.messages import parse_trajectory, trajectory_msg

JOINTS = [f"left_fr3_joint{i}" for i in range(1, 8)]
FR3 = (JOINT_VELOCITY_LIMIT, JOINT_ACCELERATION_LIMIT, JOINT_JERK_LIMIT)


def ramp(start: float = 10.0, n: int = 5, dt: float = 0.1, widths=None, q0: float = 0.0) -> JointTrajectory:
    """Joint 0 moves at 1 rad/s from q0, the others rest."""
    times = start + dt * np.arange(n)
    q = np.zeros((n, 7))
    q[:, 0] = q0 + dt * np.arange(n)
    v = np.zeros((n, 7))
    v[:, 0] = 1.0
    return JointTrajectory(times, q, v, np.full(n, np.nan) if widths is None else np.asarray(widths, float))


def test_sample_interpolates_positions_and_holds_the_ends():
    traj = ramp(widths=[0.08, 0.08, 0.0, 0.0, 0.0])
    q, v, w = traj.sample(10.15)
    assert q[0] == pytest.approx(0.15) and v[0] == pytest.approx(1.0) and w == 0.08   # a cubic: exact on a ramp
    assert traj.sample(10.2)[2] == 0.0                      # the width holds from its point on
    assert traj.sample(9.0)[0][0] == 0.0                    # before the start: the first point
    q_end, _, w_end = traj.sample(99.0)
    assert q_end[0] == pytest.approx(0.4) and w_end == 0.0  # after the end: the last point


@pytest.mark.parametrize("change, field_name", [
    (dict(positions=np.zeros((5, 6))), "positions"),
    (dict(positions=np.zeros((0, 7)), velocities=np.zeros((0, 7)), times=np.zeros(0), widths=np.zeros(0)),
     "positions"),
    (dict(velocities=np.zeros((4, 7))), "velocities"),
    (dict(times=np.arange(4.0)), "times"),
    (dict(times=np.array([0, 1, 1, 2, 3.0])), "times"),
    (dict(positions=np.full((5, 7), np.nan)), "NaN"),
])
def test_malformed_trajectories_name_the_field(change, field_name):
    good = ramp()
    fields = dict(times=good.times, positions=good.positions, velocities=good.velocities, widths=good.widths)
    with pytest.raises(TrajectoryError, match=field_name):
        JointTrajectory(**{**fields, **change})


def executor_like(start: float, n: int = 40, dt: float = 0.01, rate: float = 5.0, v0: float = 0.0, q0: float = 0.0):
    """What the executor hands a controller: joint 0's velocity command ramps at ``rate`` rad/s^2 from ``v0``,
    held over each IK period, positions integrated from it."""
    v = np.zeros((n, 7))
    v[:, 0] = v0 + rate * dt * np.arange(1, n + 1)
    q = np.zeros((n, 7))
    q[:, 0] = q0 + np.concatenate([[0.0], np.cumsum(v[:-1, 0] * dt)])
    before = np.zeros(7)
    before[0] = v0
    return JointTrajectory.from_segments(start + dt * np.arange(n), q, v, np.full(n, np.nan), before)


def servo(follower: TrajectoryFollower, t0: float, t1: float) -> np.ndarray:
    """The controller's commands at 1 kHz from t0 (included) to t1 (not)."""
    return follower.positions(t0 + 1e-3 * np.arange(round((t1 - t0) * 1e3)))


def test_executor_points_are_splined_into_the_commanded_velocity_ramp_at_1_khz():
    traj = executor_like(10.0)
    np.testing.assert_allclose(traj.times, 9.995 + 0.01 * np.arange(41))    # mid-period, the one before first
    ts = np.arange(traj.start, traj.times[-2], 1e-3)   # (the last point ends the ramp)
    _, v = traj.sample_many(ts)
    np.testing.assert_allclose(v[:, 0], 5.0 * (ts - 10.0) + 5.0 * 0.005, atol=1e-9)   # the commands, ramped
    check = MotionGeneratorCheck(*FR3)
    follower = TrajectoryFollower()
    follower.hold(np.zeros(7))
    follower.replace(traj, now=9.98)                # from rest, 20 ms before the first command
    check.reset(np.zeros(7))
    assert check.check(servo(follower, 9.98, traj.end)) is None
    assert check.peaks["acceleration"] < 6.0 and check.peaks["jerk"] < 2600.0, check.peaks   # ramp: 5 rad/s^2


def test_a_trajectory_replaces_the_old_one_on_arrival_joined_to_the_commanded_state():
    follower = TrajectoryFollower()
    assert follower.sample(10.0) is None and follower.positions(np.array([10.0])) is None
    follower.hold(np.zeros(7))
    np.testing.assert_allclose(follower.positions(np.array([10.0, 11.0])), 0.0)   # a hold: stays put
    old = executor_like(10.0)
    follower.replace(old, now=9.98)                  # arrives 20 ms before its first point: joined from the hold
    check = MotionGeneratorCheck(*FR3)
    check.reset(np.zeros(7))
    assert check.check(servo(follower, 9.98, 10.2)) is None
    # the same motion planned on from 10.2 s, arriving at 10.18 s: the join is as smooth as the rest
    q_new = old.positions[21, 0] - old.velocities[21, 0] * 0.005   # the executor's command at 10.2 s
    new = executor_like(10.2, v0=old.velocities[20, 0], q0=q_new)
    follower.replace(new, now=10.18)
    assert check.check(servo(follower, 10.2, 10.5)) is None, check.peaks
    assert check.peaks["jerk"] < 5000.0
    # one that starts elsewhere jumps: the FR3 would abort (a reflex), and the check names what
    follower.replace(executor_like(10.52, q0=q_new + 0.05), now=10.5)
    problem = check.check(servo(follower, 10.5, 10.6))
    assert problem is not None and "joint 1" in problem and "violation" in problem
    follower.shift(1.0)                                          # another clock: the same motion, later
    np.testing.assert_allclose(follower.sample(11.55)[0], follower.positions(np.array([11.55]))[0])
    follower.clear()
    assert follower.sample(11.1) is None


def test_message_round_trip_keeps_times_and_joints_and_leaves_the_gripper_out():
    traj = ramp(widths=[np.nan, 0.08, 0.08, 0.02, 0.02])
    msg = trajectory_msg(traj, JOINTS)
    assert msg["joint_names"] == JOINTS and all(len(p["positions"]) == 7 for p in msg["points"])
    back = parse_trajectory(msg, JOINTS)
    np.testing.assert_allclose(back.times, traj.times, atol=1e-9)
    np.testing.assert_allclose(back.positions, traj.positions)
    np.testing.assert_allclose(back.velocities, traj.velocities)
    assert back.accelerations is None                    # none sent: the controller splines cubically
    assert np.all(np.isnan(back.widths))                 # the hand takes gripper goals, not trajectory points
    quintic = JointTrajectory(traj.times, traj.positions, traj.velocities, traj.widths, np.ones((5, 7)))
    np.testing.assert_allclose(parse_trajectory(trajectory_msg(quintic, JOINTS), JOINTS).accelerations, 1.0)


def test_joints_in_another_order_and_missing_velocities_are_read():
    traj = ramp()
    msg = trajectory_msg(traj, JOINTS)
    order = list(reversed(range(7)))
    msg["joint_names"] = [JOINTS[i] for i in order]
    for point in msg["points"]:
        point["positions"] = [point["positions"][i] for i in order]
        point["velocities"] = []
    back = parse_trajectory(msg, JOINTS)
    np.testing.assert_allclose(back.positions, traj.positions)
    assert np.all(back.velocities == 0.0)


@pytest.mark.parametrize("edit, field_name", [
    (lambda m: m.update(joint_names=JOINTS[:6]), "joint_names"),
    (lambda m: m.update(points=[]), "points"),
    (lambda m: m["points"][1].update(positions=[0.0] * 3), r"points\[1\]"),
    (lambda m: m["points"][2].update(time_from_start=m["points"][1]["time_from_start"]), "times"),
    (lambda m: m["points"][0].update(positions=[float("nan")] * 7), "NaN"),
    (lambda m: m["points"][0].update(accelerations=[0.0] * 7), "accelerations in some points"),
])
def test_malformed_trajectory_messages_name_the_field(edit, field_name):
    msg = trajectory_msg(ramp(), JOINTS)
    edit(msg)
    with pytest.raises(TrajectoryError, match=field_name):
        parse_trajectory(msg, JOINTS)


@pytest.mark.parametrize("arrives", [10.101, 10.14, 10.18])
def test_a_trajectory_following_the_one_sent_before_is_taken_without_a_join_whenever_it_arrives(arrives):
    """The action node sends a new trajectory after the points of the previous one from the chunk's arrival on
    (10.1 s) to its own start (10.2 s): the controller, taking it at any moment in between, runs the same motion
    until then, and the new one's ramp after it, within the limits."""
    follower, check = TrajectoryFollower(), MotionGeneratorCheck(*FR3)
    follower.hold(np.zeros(7))
    check.reset(np.zeros(7))
    old = executor_like(10.0)
    follower.replace(old, now=9.9)
    assert check.check(servo(follower, 9.9, arrives)) is None
    q_new = old.positions[21, 0] - old.velocities[21, 0] * 0.005       # the executor's command at 10.2 s
    new = executor_like(10.2, v0=old.velocities[20, 0], q0=q_new, rate=-5.0).following(old, since=10.1)
    assert new.times[0] <= 10.1 < new.times[1]
    follower.replace(new, now=arrives)
    assert check.check(servo(follower, arrives, 10.45)) is None, check.peaks
