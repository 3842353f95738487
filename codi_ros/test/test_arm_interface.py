"""The arm nodes' behaviour: joint states -> arm state, chunk -> joint trajectory (no rclpy)."""

from __future__ import annotations

from dataclasses import replace

import mujoco
import numpy as np
import pytest
from logic_fakes import DT, WORLD, H, chunk_of, left_arm_interface, texts

from codi_ros.control.executor import Chunk
from codi_ros.control.kinematics import arm_state_from_joints
from codi_ros.control.smoothness import MotionGeneratorCheck
from codi_ros.control.trajectory import TrajectoryFollower
from codi_ros.robot.fr3 import (
    FINGER_JOINTS,
    JOINT_ACCELERATION_LIMIT,
    JOINT_JERK_LIMIT,
    JOINT_VELOCITY_LIMIT,
    arm_joint_names,
)
from codi_ros.ros.arm_interface import SEND_LEAD_S, ArmInterface, JointStateReader
from codi_ros.ros.messages import chunk_msg
from codi_ros.sim.tasks import HANDOVER
from codi_ros.sim.world import TwoArmWorld


def test_arm_state_from_joint_states_matches_the_simulator(world, kinematics):
    world.reset()
    rng = np.random.default_rng(3)
    for arm in WORLD.arm_names:
        world.execute(arm, Chunk(world.time, DT, np.tile(np.r_[rng.uniform(-0.1, 0.1, 6), 0.05], (5, 1))))
    world.step(0.2)
    mujoco.mj_forward(world.model, world.data)            # site poses of the current qpos (mj_step leaves the last)
    for arm in WORLD.arm_names:
        reader = JointStateReader(arm_joint_names(arm))
        names, q = [*FINGER_JOINTS, *reversed(arm_joint_names(arm))], world.joint_positions(arm)
        half = world.gripper_width(arm) / 2
        assert reader.update(names, [half, half, *q[::-1]], [0, 0, *world.joint_velocities(arm)[::-1]], 1.0)
        est = arm_state_from_joints(kinematics, WORLD.base_frame(arm), reader.q, reader.qdot, reader.gripper_width)
        true = world.arm_state(arm)
        np.testing.assert_allclose(est.ee_pos, true.ee_pos, atol=1e-9)
        np.testing.assert_allclose(est.ee_rot, true.ee_rot, atol=1e-9)
        np.testing.assert_allclose(est.ee_linvel, true.ee_linvel, atol=1e-9)
        np.testing.assert_allclose(est.ee_angvel, true.ee_angvel, atol=1e-9)
        assert est.gripper_width == pytest.approx(true.gripper_width)


def test_joint_state_reader_handles_split_and_foreign_messages():
    r = JointStateReader(arm_joint_names("left"))
    assert not r.update(["other_joint"], [1.0], [], 0.0) and r.q is None and not r.take()
    assert not r.update(list(FINGER_JOINTS), [0.01, 0.02], [], 0.0) and r.gripper_width == pytest.approx(0.03)
    assert not r.update(list(arm_joint_names("right")), list(range(7)), [], 1.0)   # the other arm's
    assert r.update(list(arm_joint_names("left")), list(range(7)), [], 2.0)         # no velocities: zero
    assert r.take() and not r.take() and np.all(r.qdot == 0) and r.stamp == 2.0


def drive(world, ctl, seconds, chunks=(), states=True, state_period=0.04, watchdog_period=0.05, after_step=None):
    """The action node's loop on the simulated arm: joint states every ``state_period`` (unless ``states`` is
    False; "nan": NaN joints), chunk messages at their (arrival time, message) or, if ``chunks`` is a function,
    the messages it returns for the time, the watchdog every ``watchdog_period``; each trajectory the controller
    returns goes to the world's trajectory follower, then ``after_step(t, trajectories)`` runs once per 10 ms
    step. Returns the trajectories sent and the arm's measured joint velocities every IK period."""
    due = chunks if callable(chunks) else None
    chunks, sent, qdots = ([] if due else sorted(chunks, key=lambda c: c[0])), [], []
    t0, dt = world.time, world.cfg.control.dt / 10
    next_state, next_check = t0, t0
    while world.time < t0 + seconds - 1e-9:
        t = world.time
        if t >= next_state - 1e-9 and states:
            q = world.joint_positions("left") if states is True else np.full(7, np.nan)
            ctl.on_joint_positions(q, t, world.joint_velocities("left"))
            next_state += state_period
        messages = due(t) if due else []
        while chunks and chunks[0][0] <= t + 1e-9:
            messages.append(chunks.pop(0)[1])
        out = [ctl.on_chunk(m, t) for m in messages]
        if t >= next_check - 1e-9:
            out.append(ctl.check(t))
            next_check += watchdog_period
        out = list(filter(None, out))
        for trajectory in out:
            world.follow("left", trajectory)
            sent.append(trajectory)
        world.step(dt)
        qdots.append(world.joint_velocities("left"))
        if after_step:
            after_step(t, out)
    return sent, np.array(qdots)


def test_action_node_tracks_a_chunk_on_the_simulated_arm_then_stops(world, kinematics):
    """Closed loop on the MuJoCo arm: 0.1 m/s along the base x axis for 1.6 s, then the chunk runs out. One
    trajectory for the whole chunk, ending at rest."""
    world.reset()
    ctl = left_arm_interface(kinematics)
    start = world.arm_state("left").ee_pos
    msg = chunk_msg("left", chunk_of([0.1, 0, 0, 0, 0, 0], start=world.time, width=0.05))
    sent, qdots = drive(world, ctl, 2.5, chunks=[(world.time + 0.01, msg)])
    moved = WORLD.base_frame("left").vec_to_base(world.arm_state("left").ee_pos - start)
    assert 0.13 < moved[0] < 0.165 and abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01, moved
    assert len(sent) == 1 and np.all(sent[0].widths == 0.05) and not np.any(sent[0].velocities[-1])
    end = round(H * DT / 0.01)                             # the chunk ends at 1.6 s
    assert sent[0].end - (world.time - 2.5 + H * DT) <= 2 * ctl.executor.limiter.stop_time + 1e-9  # commanded to rest
    speed = np.abs(qdots).max(axis=1)
    assert speed[end - 1] > 0.05 and speed[end + 40:].max() < 0.01   # at rest within 0.4 s of the end


@pytest.mark.parametrize("fault", ["stale", "nan"])
def test_action_node_stops_the_arm_on_stale_or_nan_joint_states_and_logs_once(world, kinematics, fault):
    world.reset()
    ctl = left_arm_interface(kinematics)
    msg = chunk_msg("left", chunk_of([0.2, 0, 0, 0, 0, 0], n=50, start=world.time))
    sent, moving = drive(world, ctl, 0.5, chunks=[(world.time, msg)])      # 0.5 s of normal operation
    assert np.abs(moving[-1]).max() > 0.05 and len(sent) == 1
    late = chunk_msg("left", chunk_of([0.2, 0, 0, 0, 0, 0], n=50, start=world.time + 0.3))
    sent, outs = drive(world, ctl, 1.0, chunks=[(world.time + 0.3, late)], states=fault == "nan" and "nan")
    detect = 0.2 if fault == "stale" else 0.0              # stale: detected once older than 0.2 s
    begins = world.time - 1.0 + detect + 0.05 + ctl.delivery_margin + 0.01   # a watchdog tick, the margin, mid-period
    assert len(sent) == 1 and not np.any(sent[0].velocities[-1]) and sent[0].start <= begins
    stopped = round((detect + 0.05 + ctl.delivery_margin + 2 * ctl.executor.limiter.stop_time + 0.3) / 0.01)
    assert np.abs(outs[stopped:]).max() < 0.01             # at rest, and no new plan moves it while the fault lasts
    log = ctl.pop_log()
    assert len([t for lvl, t in log if lvl == "warn" and "joint states" in t and "arm left" in t]) == 1
    assert any("rejected a chunk: the joint states are stale or NaN" in t for t in texts(log))


def test_workspace_box_stops_the_tool_above_the_table(world, kinematics):
    world.reset()
    ctl = left_arm_interface(kinematics, replace(WORLD, workspace=replace(WORLD.workspace, lower=(-0.9, -0.6, 0.30))))
    drive(world, ctl, 3.0, chunks=[(world.time, chunk_msg("left", chunk_of([0, 0, -0.3, 0, 0, 0], n=30,
                                                                          start=world.time)))])
    assert 0.298 < world.arm_state("left").ee_pos[2] < 0.31


def test_a_new_trajectory_continues_the_one_sent_before_it(world, kinematics):
    """Smooth chunk joins: a chunk arriving mid-motion makes a trajectory that continues the one sent before it,
    so that the FR3's 1 kHz command stream (the trajectory controller's splines, each trajectory taken on
    arrival) stays within the executor's limits, below the FR3's own, across the join."""
    world.reset()
    ctl = left_arm_interface(kinematics)
    t0 = world.time
    first = chunk_msg("left", chunk_of([0.1, 0, 0, 0, 0, 0], start=t0))
    second = chunk_msg("left", chunk_of([0, 0.1, 0.05, 0, 0, 0], start=t0 + 0.5))
    sent, _ = drive(world, ctl, 1.0, chunks=[(t0, first), (t0 + 0.5, second)])
    a, b = sent
    follower, check = TrajectoryFollower(), MotionGeneratorCheck(*(np.array(x) * 1.001 for x in (
        WORLD.control.joint_velocity_limit, WORLD.control.joint_acceleration_limit, WORLD.control.joint_jerk_limit)))
    follower.hold(a.positions[0] - a.velocities[0] * ctl.executor.dt / 2)
    check.reset(follower.positions(np.array([t0]))[0])
    follower.replace(a, now=t0)
    assert check.check(follower.positions(np.arange(t0, t0 + 0.5, 1e-3))) is None, check.peaks
    follower.replace(b, now=t0 + 0.5)
    assert check.check(follower.positions(np.arange(t0 + 0.5, b.end + 0.1, 1e-3))) is None, check.peaks
    assert check.peaks["velocity"] > 0.05                 # it moved


def replanning_session(seed: int, kinematics, seconds: float) -> tuple[list, dict]:
    """The action node's life on the simulated arm as the coordinator makes it: a plan every 0.3-0.5 s,
    latency-aware (4 committed steps, planned 0.25 s before it arrives) or not, now and then a new twist up to
    the IK's speed limits (joints run into their position limits), a stop with 2 s of rest, or 6 s without a
    plan (the chunk runs out) and then a stop (/codi/stop after a handover completed); joint states
    every 40 ms (a delivery margin behind the commands), the watchdog every 50 ms. Returns the FR3's 1 kHz
    check of the controller's commands over the session: (violations, peaks); a trajectory that does not end
    at rest counts as one (the controller would hold its last point: a stop within one period)."""
    rng = np.random.default_rng(seed)
    world = TwoArmWorld(WORLD)
    HANDOVER.reset(world, seed, 0)
    ctl = left_arm_interface(kinematics)
    check = MotionGeneratorCheck(JOINT_VELOCITY_LIMIT, JOINT_ACCELERATION_LIMIT, JOINT_JERK_LIMIT)
    check.reset(world.joint_positions("left"))
    scale = [0.15, 0.15, 0.1, 1.0, 1.0, 1.5]
    plan = {"twist": rng.uniform(-1, 1, 6) * scale, "stop_next": False, "next": world.time + 0.3}
    violations = []

    def plans(t: float) -> list:
        if t < plan["next"] - 1e-9:
            return []
        stop, plan["stop_next"] = plan["stop_next"] or rng.uniform() < 0.08, False
        pause = not stop and rng.uniform() < 0.06
        twist = plan["twist"] = rng.uniform(-1, 1, 6) * scale if rng.uniform() < 0.3 else plan["twist"]
        actions, start = np.tile(np.r_[twist, 0.08], (H, 1)), t - 0.25 + ctl.delivery_margin
        committed = ctl.executor.chunks.upcoming(start, 4)
        if stop:
            chunk = Chunk(t, DT, np.zeros((0, 7)))
        elif committed is not None and rng.uniform() < 0.9:
            actions[:4] = committed
            chunk = Chunk(start, DT, actions, committed=4)
        else:
            chunk = Chunk(t, DT, actions)
        plan["next"] += rng.uniform(0.3, 0.5) + 2.0 * stop + 6.0 * pause
        plan["stop_next"] = pause
        return [chunk_msg("left", chunk)]

    def check_1khz(t: float, trajectories: list) -> None:
        violations.extend((round(t, 2), "a trajectory that ends moving")
                          for trajectory in trajectories if np.any(trajectory.velocities[-1]))
        commands = world.arms["left"].follower.positions(t + np.arange(1, 11) * 1e-3)
        problem = check.check(commands)
        if problem:
            violations.append((round(t, 2), problem))
            check.restart(commands[-3:])
        ctl.pop_log()

    drive(world, ctl, seconds, chunks=plans, after_step=check_1khz)
    return violations, check.peaks


@pytest.mark.parametrize("seed", [0, 3])
def test_replanning_stopping_and_joint_limits_keep_the_fr3s_limits_at_1khz(kinematics, seed):
    """Zero reflexes by construction: every trajectory continues the one the controller runs (predicted from
    the measured joints without taking their delay for a blocked arm), stops ramp down, joints brake at their
    limits; the FR3's own check of the 1 kHz command stream finds nothing over 20 s of replanning."""
    violations, peaks = replanning_session(seed, kinematics, 20.0)
    assert not violations, violations[:3]
    assert peaks["velocity"] > 1.0 and peaks["acceleration"] > 5.0     # it moved, briskly


def test_a_motion_after_a_rest_ramps_its_acceleration_up_from_zero(kinematics):
    """The wrist turns one way, ramps down to rest (the limiter lands with deceleration in its state), rests,
    then turns back: the new trajectory's first acceleration is one jerk step from zero, not that deceleration
    carried over (a 9 rad/s^2 jump at 1 kHz: the reflex the simulated FR3 found)."""
    ctl = left_arm_interface(kinematics)
    ctl.on_joint_positions(np.array(WORLD.home_qpos), 0.0)
    turn = ctl.on_chunk(chunk_msg("left", chunk_of([0, 0, 0, 0, 0, 1.0], n=5, start=0.0)), 0.0)
    ctl.on_joint_positions(turn.positions[-1], 3.0)
    back = ctl.on_chunk(chunk_msg("left", chunk_of([0, 0, 0, 0, 0, -1.0], n=5, start=3.0)), 3.0)
    first = np.abs(back.velocities[1] - back.velocities[0]) / ctl.executor.dt
    c = WORLD.control
    assert np.all(first <= np.array(c.joint_jerk_limit) / c.servo_rate_hz + 1e-9), first


def test_an_arm_at_rest_starts_from_its_held_command_unless_it_was_moved(kinematics):
    """At rest the controller holds the last point sent: the next trajectory starts there even if the arm sags
    a little under load (a jump otherwise); an arm measured far from it was moved without us (a simulator reset,
    franka's move_to_start controller) and starts where it is, with a warning. A stop with nothing running
    sends nothing."""
    ctl = left_arm_interface(kinematics)
    ctl.on_joint_positions(np.array(WORLD.home_qpos), 0.0)
    held = ctl.on_chunk(chunk_msg("left", chunk_of([0.05, 0, 0, 0, 0, 0], n=3, start=0.0)), 0.0).positions[-1]
    assert ctl.on_chunk(chunk_msg("left", Chunk(2.0, DT, np.zeros((0, 7)))), 2.0) is None
    ctl.on_joint_positions(held + 0.04, 5.0)
    after_sag = ctl.on_chunk(chunk_msg("left", chunk_of(np.zeros(6), n=3, start=5.0)), 5.0)
    np.testing.assert_allclose(after_sag.positions[0], held, atol=1e-9)
    moved = held + np.r_[0.3, np.zeros(6)]
    ctl.on_joint_positions(moved, 10.0)
    ctl.pop_log()
    after_move = ctl.on_chunk(chunk_msg("left", chunk_of(np.zeros(6), n=3, start=10.0)), 10.0)
    np.testing.assert_allclose(after_move.positions[0], moved, atol=1e-9)
    assert any("moved by another controller or a simulator reset" in t for t in texts(ctl.pop_log()))


def test_trajectories_run_the_same_motion_as_the_executor_in_lockstep(kinematics):
    """One execution path: the chunks sent as trajectories (action node -> trajectory controller) move the
    arm as the world's own executor stepped in lockstep does (codi eval), a latency-aware join included:
    the same IK, limits and joins, the measured joints (closed loop in lockstep) predicted in a trajectory."""
    lockstep, graph = TwoArmWorld(WORLD), TwoArmWorld(WORLD)
    for w in (lockstep, graph):
        HANDOVER.reset(w, 0, 0)
    t0, d = lockstep.time, 3
    actions = np.tile(np.r_[0.1, 0, -0.05, 0, 0, 0.2, 0.05], (H, 1))
    later = actions.copy()
    later[d:, :3] = [0.0, 0.08, 0.02]
    chunks = [Chunk(t0, DT, actions), Chunk(t0 + 0.4, DT, later, committed=d)]
    margin = WORLD.executor.delivery_margin
    arrival = [t0, t0 + 0.4 - margin]                 # the second reaches the arm at its stamp
    ctl, start_q = left_arm_interface(kinematics), graph.joint_positions("left")
    messages = [(t, chunk_msg("left", c)) for t, c in zip(arrival, chunks, strict=True)]
    drive(graph, ctl, 1.2, chunks=messages, state_period=0.01)
    for t, c in zip(arrival, chunks, strict=True):
        lockstep.step(t + margin - lockstep.time)
        assert lockstep.execute("left", c)
    lockstep.step(graph.time - lockstep.time)
    graph_q = graph.joint_positions("left")
    tool_gap = np.linalg.norm(graph.arm_state("left").ee_pos - lockstep.arm_state("left").ee_pos)
    assert tool_gap < 3e-3, tool_gap    # 2 mm after 1.2 s: the prediction's error, the controller's splines
    np.testing.assert_allclose(graph_q, lockstep.joint_positions("left"), atol=6e-3)
    assert np.abs(graph_q - start_q).max() > 0.05          # it did move


def test_action_node_rejects_chunks_for_another_arm_or_without_joint_states_and_clamps_the_gripper(kinematics):
    ctl = left_arm_interface(kinematics)
    assert ctl.on_chunk(chunk_msg("left", chunk_of(np.zeros(6))), now=0.0) is None
    assert any("no joint states yet" in t for t in texts(ctl.pop_log()))
    ctl.on_joint_positions(np.array(WORLD.home_qpos), 0.0)
    assert ctl.on_chunk(chunk_msg("right", chunk_of(np.zeros(6))), now=0.0) is None
    assert any("rejected" in t for t in texts(ctl.pop_log()))
    trajectory = ctl.on_chunk(chunk_msg("left", chunk_of(np.zeros(6), width=0.5)), now=0.0)
    assert np.all(trajectory.widths == WORLD.control.gripper_max_width)
    malformed = chunk_msg("left", chunk_of(np.zeros(6)))
    malformed["gripper_widths"] = malformed["gripper_widths"][:3]
    assert ctl.on_chunk(malformed, now=0.1) is None
    assert any("malformed" in t for t in texts(ctl.pop_log()))


def test_action_node_reopens_the_hand_when_the_measured_fingers_show_a_lost_grasp(kinematics):
    """The joint states' finger width reaches the gripper commander: a held grasp whose fingers close past the
    cube (it slipped out) is followed by a move to open."""
    ctl = left_arm_interface(kinematics)
    ctl.on_joint_positions(np.array(WORLD.home_qpos), 0.0, gripper_width=0.08)
    ctl.on_chunk(chunk_msg("left", chunk_of(np.zeros(6), width=0.0)), now=0.0)
    grasp = ctl.gripper_goal(0.3)
    assert grasp.action == "grasp" and ctl.gripper_result(grasp.seq, True, "", 0.5) is None
    ctl.on_joint_positions(np.array(WORLD.home_qpos), 0.55, gripper_width=WORLD.cube.size - 0.004)
    assert ctl.gripper_goal(0.6) is None                     # holding
    ctl.on_joint_positions(np.array(WORLD.home_qpos), 0.65, gripper_width=0.003)
    reopen = ctl.gripper_goal(0.7)
    assert (reopen.action, reopen.width) == ("move", WORLD.control.gripper_max_width)
    assert any("slipped out" in t for t in texts(ctl.pop_log()))


def timed_arm_interface(world, kinematics, compute_seconds: list[float]) -> ArmInterface:
    """The left arm's interface, a 0.1 s delivery margin, its trajectories taking ``compute_seconds`` in turn to
    compute; joint states from the reset world at t = 1.0."""
    ticks = iter([t for seconds in compute_seconds for t in (0.0, seconds)])
    ctl = ArmInterface(replace(WORLD, executor=replace(WORLD.executor, delivery_margin=0.1)), "left", kinematics,
                       compute_clock=lambda: next(ticks))
    world.reset()
    ctl.on_joint_positions(world.joint_positions("left"), 1.0)
    return ctl


def test_a_chunk_whose_trajectory_is_computed_late_is_dropped_and_the_arm_runs_on_in_what_it_has(world, kinematics):
    """Computing took longer than the delivery margin (a loaded machine): sent, its points already due would make
    the controller join its motion to the first point left with a jump (a reflex in the graph's simulated FR3).
    The chunk is dropped with a warning, the executor goes back to where it was, and the next chunk computed in
    time continues the trajectory the controller runs, without a jump."""
    ctl = timed_arm_interface(world, kinematics, [0.0, 0.12, 0.0])   # the second takes 0.12 s, the margin 0.1 s
    first = ctl.on_chunk(chunk_msg("left", chunk_of([0.1, 0, 0, 0, 0, 0], start=1.0)), now=1.0)
    ctl.on_joint_positions(first.sample(1.4)[0], 1.4)      # the arm follows what it was sent
    assert ctl.on_chunk(chunk_msg("left", chunk_of([0, 0.1, 0, 0, 0, 0], start=1.4)), now=1.4) is None
    assert any("computed late" in t and "dropped" in t for t in texts(ctl.pop_log()))
    ctl.on_joint_positions(first.sample(1.8)[0], 1.8)
    third = ctl.on_chunk(chunk_msg("left", chunk_of([0, 0, 0.1, 0, 0, 0], start=1.8)), now=1.8)
    switch = 1.8 + 0.1                                      # where third's own points begin
    assert third.start <= 1.8 + 1e-9 and third.times[third.times > switch - 1e-9][0] < switch + 0.011
    ts = np.arange(1.8, switch + 0.006, 0.001)                # first's points, then third's first own ones
    gap = np.abs(third.sample_many(ts)[0] - first.sample_many(ts)[0]).max(axis=1)
    assert gap[ts < switch - 0.01].max() < 1e-9 and gap.max() < 1e-3, gap   # without the rollback: 0.11 rad


def test_a_stop_computed_late_is_sent_without_its_points_already_due(world, kinematics):
    """A stop must go out even when computed late (stale joint states on a loaded machine): the points due
    before it is sent go, the controller joins the motion it runs to the first point left."""
    ctl = timed_arm_interface(world, kinematics, [0.0, 0.06])   # the stop takes 0.06 s: sent 0.01 s after its point
    assert ctl.on_chunk(chunk_msg("left", chunk_of([0.1, 0, 0, 0, 0, 0], start=1.0)), now=1.0) is not None
    stop = ctl.check(1.5)                                   # no joint states since 1.0: stale
    assert 1.5 + 0.06 + SEND_LEAD_S <= stop.start < 1.5 + 0.06 + SEND_LEAD_S + 0.01
    assert any("computed late" in t and "stops sent" in t for t in texts(ctl.pop_log()))
