"""Joint trajectories (control/trajectory.py) and their JointTrajectory messages (ros/messages.py):
what the action nodes hand a trajectory controller once per plan, and how the simulated Franka follows them."""

from __future__ import annotations

import numpy as np
import pytest

from codi_ros.control.trajectory import JointTrajectory, TrajectoryError, TrajectoryFollower
from codi_ros.ros.messages import parse_trajectory, trajectory_msg

JOINTS = [f"left_fr3_joint{i}" for i in range(1, 8)]


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
    assert q[0] == pytest.approx(0.15) and v[0] == 1.0 and w == 0.08
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


def test_follower_replaces_from_the_new_start_and_keeps_the_old_before_it():
    follower = TrajectoryFollower()
    assert follower.sample(10.0) is None and not follower.active
    old, new = ramp(start=10.0), ramp(start=10.2, q0=5.0)
    follower.replace(old)
    follower.replace(new)
    assert follower.sample(10.1)[0][0] == pytest.approx(0.1)   # before the new start: the old one runs
    assert follower.sample(10.3)[0][0] == pytest.approx(5.1)   # from it on: the new one
    follower.shift(1.0)                                          # another clock: the same motion, later
    assert follower.sample(11.1)[0][0] == pytest.approx(0.1)
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
    assert np.all(np.isnan(back.widths))                 # the hand takes gripper goals, not trajectory points


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
])
def test_malformed_trajectory_messages_name_the_field(edit, field_name):
    msg = trajectory_msg(ramp(), JOINTS)
    edit(msg)
    with pytest.raises(TrajectoryError, match=field_name):
        parse_trajectory(msg, JOINTS)
