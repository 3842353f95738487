"""The one executor from plan to joints (control/executor.py): chunk timing, joins, limits, workspace,
and that every path (codi eval's world, the action nodes) runs it."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

from codi_ros.config import load_world_config
from codi_ros.control.executor import ArmExecutor, Chunk, ChunkError, ChunkExecutor, JointCommandLimiter
from codi_ros.control.kinematics import ArmKinematics
from codi_ros.control.smoothness import MotionGeneratorCheck, joint_profile
from codi_ros.control.workspace import WorkspaceBounds
from codi_ros.robot.fr3 import JOINT_ACCELERATION_LIMIT, JOINT_JERK_LIMIT, JOINT_VELOCITY_LIMIT
from codi_ros.ros.arm_interface import ArmInterface
from codi_ros.sim.world import TwoArmWorld

WORLD = load_world_config()
H, DT = WORLD.horizon.prediction, WORLD.control.dt
PACKAGE = Path(__file__).resolve().parents[1] / "codi_ros"


def chunk_of(twist, n: int = H, start: float = 0.0, width: float = 0.08, committed: int = 0) -> Chunk:
    return Chunk(start, DT, np.tile(np.r_[twist, width], (n, 1)), committed)


def texts(lines) -> list[str]:
    return [t for _, t in lines]


def ramp_chunk(start: float, committed: int = 0, offset: float = 0.0) -> Chunk:
    """Action k has vx = k + offset: which action is executed is readable off the command."""
    actions = np.zeros((H, 7))
    actions[:, 0] = np.arange(H) + offset
    return Chunk(start, DT, actions, committed)


# ---------------------------------------------------------------------------------------------- chunk executor

def test_executor_holds_each_action_for_dt_and_skips_the_planning_latency():
    ex = ChunkExecutor(blend_time=0.0)
    actions = np.zeros((H, 7))
    actions[:, 0] = np.arange(H)                           # action k has vx = k
    ex.accept(Chunk(5.0, DT, actions), now=5.25)           # arrives 0.25 s after its plan started
    assert ex.command(5.25).twist[0] == 2                  # enters at the action due now
    assert ex.command(5.299).twist[0] == 2 and ex.command(5.301).twist[0] == 3
    assert ex.command(5.0 + H * DT - 0.001).twist[0] == H - 1


def test_executor_blends_across_chunk_boundaries():
    ex = ChunkExecutor(blend_time=0.1)
    ex.accept(chunk_of([0.2, 0, 0, 0, 0, 0]), now=0.0)
    ex.command(0.0)
    ex.command(0.2)
    ex.accept(chunk_of([-0.2, 0.1, 0, 0, 0, 0], start=0.3), now=0.3)
    vx = [ex.command(0.3 + 0.01 * k).twist[0] for k in range(15)]
    assert vx[0] == pytest.approx(0.2) and vx[5] == pytest.approx(0.0) and vx[10] == pytest.approx(-0.2)
    assert max(abs(np.diff(vx))) <= 0.4 * 0.01 / 0.1 + 1e-9   # |jump| / blend_time per 10 ms step


def test_executor_runs_out_then_holds_and_reports_once_keeping_the_gripper():
    ex = ChunkExecutor()
    ex.accept(chunk_of([0.1, 0, 0, 0, 0, 0], n=8, width=0.03), now=0.0)
    assert not ex.command(0.79).hold
    cmds = [ex.command(0.8 + 0.01 * k) for k in range(30)]
    assert all(c.hold and not np.any(c.twist) and c.gripper_width == 0.03 for c in cmds)
    events = texts(ex.events)
    assert len(events) == 1 and "ran out" in events[0]


def test_stop_holds_and_rejects_chunks_planned_before_it():
    ex = ChunkExecutor()
    ex.accept(chunk_of([0.1, 0, 0, 0, 0, 0], start=0.0), now=0.0)
    assert ex.accept(Chunk(1.0, DT, np.zeros((0, 7))), now=1.0)        # an empty chunk means stop
    assert ex.command(1.0).hold
    assert not ex.accept(chunk_of([0.1, 0, 0, 0, 0, 0], start=0.95), now=1.05)   # planned before the stop
    assert ex.command(1.05).hold
    assert ex.accept(chunk_of([0.1, 0, 0, 0, 0, 0], start=1.1), now=1.1) and not ex.command(1.1).hold


def test_executor_rejects_late_and_out_of_order_chunks():
    ex = ChunkExecutor()
    assert not ex.accept(chunk_of(np.zeros(6), start=0.0), now=5.0)            # ended 3.4 s ago
    assert ex.accept(chunk_of(np.zeros(6), start=4.9), now=5.0)
    assert not ex.accept(chunk_of(np.zeros(6), start=4.8), now=5.0)            # older than the current one
    events = texts(ex.events)
    assert len(events) == 2 and "ended 3.40 s ago" in events[0] and "older" in events[1]


@pytest.mark.parametrize("chunk", [Chunk(5.0, 1e300, np.zeros((4, 7))), Chunk(1e9, DT, np.zeros((4, 7)))],
                         ids=["huge dt", "far future start"])
def test_a_chunk_ending_far_ahead_is_refused_before_any_trajectory_is_built(chunk):
    """(Found by the topic fuzz test: a fuzzed dt made the action node compute a trajectory without end.)"""
    ex = ArmExecutor(WORLD, "left", ArmKinematics())
    assert not ex.accept(chunk, now=5.0)
    assert "wrong dt or start stamp" in texts(ex.pop_events())[0]
    assert len(ex.trajectory(5.0, np.array(WORLD.home_qpos)).times) == 2      # at rest: one point (and the one before)


@pytest.mark.parametrize("kwargs, field_name", [
    ({"actions": np.zeros((4, 6))}, "actions"), ({"actions": np.full((4, 7), np.nan)}, "actions"),
    ({"dt": 0.0}, "dt"), ({"start": math.nan}, "start")])
def test_malformed_chunks_name_the_field(kwargs, field_name):
    args = {"start": 0.0, "dt": DT, "actions": np.zeros((4, 7)), **kwargs}
    with pytest.raises(ChunkError, match=field_name):
        Chunk(**args)


# ---------------------------------------------------------------------------------------------- limits

def test_limiter_keeps_velocity_and_acceleration_limits():
    v_max, a_max = np.array(WORLD.control.joint_velocity_limit), np.array(WORLD.control.joint_acceleration_limit)
    dt = 0.01
    lim = JointCommandLimiter(v_max, a_max, dt)
    rng = np.random.default_rng(0)
    prev = np.zeros(7)
    for _ in range(300):
        out = lim.limit(rng.uniform(-3, 3, 7) * v_max)
        assert np.all(np.abs(out) <= v_max + 1e-12)
        assert np.all(np.abs(out - prev) <= a_max * dt + 1e-12)
        prev = out


def test_limiter_ramps_to_zero_within_its_limits_and_holds():
    """A hold from faster than a_max * stop_time allows to stop: a monotone ramp at the acceleration limit
    (never above it: the FR3 would abort), at rest once v / a_max has passed, then zero."""
    v_max, a_max = np.array(WORLD.control.joint_velocity_limit), np.array(WORLD.control.joint_acceleration_limit)
    lim = JointCommandLimiter(v_max, a_max, dt=0.01, stop_time=0.1)
    lim.last = 0.9 * v_max
    outs = [lim.limit(np.ones(7), hold=True) for _ in range(40)]
    norms = [np.abs(o).max() for o in outs]
    assert all(b <= a for a, b in zip(norms, norms[1:], strict=False))    # monotone ramp, no jump
    steps = np.abs(np.diff(np.vstack([lim.last * 0 + 0.9 * v_max, *outs]), axis=0)) / 0.01
    assert np.all(steps <= a_max + 1e-9)                                   # within the acceleration limit
    slowest = int(np.ceil((0.9 * v_max / a_max).max() / 0.01))             # the fastest joint's ramp, steps
    assert all(np.all(o == 0) for o in outs[slowest:])                     # then at rest
    assert np.all(lim.limit(np.full(7, np.nan)) == 0)                      # NaN command: hold


def test_limiter_keeps_the_jerk_at_1khz_and_lands_on_the_target():
    """With world.yaml's jerk limit, a stream of jumping targets stays within velocity, acceleration and
    jerk as a 1 kHz controller interpolating the 100 Hz commands sees them; a constant target is reached
    exactly; a stop from 0.8 rad/s keeps the jerk limit and is at rest within stop_time + 30 ms."""
    c = WORLD.control
    v_max, a_max, j_max = (np.array(x) for x in (c.joint_velocity_limit, c.joint_acceleration_limit,
                                                 c.joint_jerk_limit))
    lim = JointCommandLimiter(v_max, a_max, 0.01, 0.1, j_max, c.servo_rate_hz)
    rng = np.random.default_rng(1)
    out = [lim.limit(rng.uniform(-1.5, 1.5, 7) * v_max) for _ in range(20) for _ in range(10)]
    profile = joint_profile(np.array(out), 0.01, c.servo_rate_hz)
    assert np.all(np.abs(out) <= v_max + 1e-9)
    assert np.all(profile["acceleration"] <= a_max + 1e-6) and np.all(profile["jerk"] <= j_max + 1e-3)
    target = 0.3 * v_max
    assert np.array_equal([lim.limit(target) for _ in range(80)][-1], target)
    lim.reset()
    moving = [lim.limit(np.full(7, 0.8)) for _ in range(30)]
    stop = [lim.limit(np.zeros(7), hold=True) for _ in range(20)]
    assert np.all(stop[13] == 0) and all(np.all(o == 0) for o in stop[13:])
    assert np.all(joint_profile(np.array(moving + stop), 0.01, c.servo_rate_hz)["jerk"] <= j_max + 1e-3)


@pytest.mark.parametrize("twist", [[0, 0, 0, 0, 0, 1.0], [0, 0, 0, 0, 0, -1.0]],
                         ids=["wrist turning left", "wrist turning right"])
def test_joints_driven_into_their_position_limits_brake_there_within_the_fr3s_limits(twist):
    """9 s of turning the tool run joints into their position limits: each brakes to a stop at its limit (less the IK's
    margin) instead of being cut short there, so the trajectory a controller splines at 1 kHz keeps the FR3's
    velocity, acceleration and jerk limits (a cut is a jump: 345 rad/s^2 on the wrist before)."""
    ex = ArmExecutor(WORLD, "left", ArmKinematics())
    ex.sync(np.array(WORLD.home_qpos))
    assert ex.accept(chunk_of(twist, n=90), 0.0)
    trajectory = ex.trajectory(0.0)
    commands = trajectory.sample_many(np.arange(trajectory.start, trajectory.end, 1e-3))[0]
    check = MotionGeneratorCheck(JOINT_VELOCITY_LIMIT, JOINT_ACCELERATION_LIMIT, JOINT_JERK_LIMIT)
    check.reset(commands[0])
    assert check.check(commands) is None, check.peaks
    assert np.all((commands >= ex.ik.q_lower - 1e-9) & (commands <= ex.ik.q_upper + 1e-9))
    room = np.minimum(commands[-1] - ex.ik.q_lower, ex.ik.q_upper - commands[-1])
    assert room.min() < 0.02, room                         # some joint got to its limit


def test_workspace_bounds_never_let_the_tool_leave_the_box():
    box = WorkspaceBounds([-0.5, -0.5, 0.01], [0.5, 0.5, 0.8], lookahead=0.1)
    p = np.array([0.0, 0.0, 0.2])
    for _ in range(500):                                  # push down and out at 0.3 m/s for 5 s
        p = p + 0.01 * box.limit(p, np.array([0.3, 0.0, -0.3]))
    assert 0.01 <= p[2] < 0.011 and 0.49 < p[0] <= 0.5
    outside = np.array([0.7, 0.0, 0.2])
    assert box.limit(outside, np.array([0.1, 0, 0]))[0] == 0 and box.limit(outside, np.array([-0.1, 0, 0]))[0] == -0.1


# ---------------------------------------------------------------------------------------------- latency-aware joins

def test_a_latency_aware_chunk_takes_over_exactly_at_its_first_new_action():
    """Committed d = 3: the current chunk's actions run until start + 3 dt, then the new one from action 3."""
    ex = ChunkExecutor()
    ex.accept(ramp_chunk(0.0), now=0.0)
    ex.accept(ramp_chunk(0.4, committed=3, offset=100.0), now=0.62)     # planned from t = 0.4, done at 0.62
    assert ex.command(0.62).twist[0] == 6                              # still the old chunk's action 6
    assert ex.command(0.69).twist[0] == 6
    assert ex.command(0.70).twist[0] == 103                            # the new chunk's action 3, on time
    assert ex.command(0.81).twist[0] == 104


def test_the_upcoming_actions_are_the_current_chunks_until_a_waiting_one_takes_over():
    """What a plan must treat as committed (the coordinator's and the evaluation's commitment): the current
    chunk's actions, then the waiting chunk's from its takeover on, also when the takeover lies beyond them."""
    ex = ChunkExecutor()
    ex.accept(ramp_chunk(0.0), now=0.0)
    ex.accept(ramp_chunk(0.4, committed=3, offset=100.0), now=0.62)     # takes over at 0.7
    assert ex.upcoming(0.5, 2)[:, 0].tolist() == [5, 6]                # both before the takeover
    assert ex.upcoming(0.5, 4)[:, 0].tolist() == [5, 6, 103, 104]


def test_a_late_latency_aware_plan_is_dropped_the_committed_actions_finish_then_the_arm_holds():
    ex = ChunkExecutor(late_tolerance=0.02)
    ex.accept(ramp_chunk(0.0), now=0.0)
    assert not ex.accept(ramp_chunk(0.4, committed=2, offset=100.0), now=0.65)   # due at 0.6: 50 ms late
    events = texts(ex.events)
    assert len(events) == 1 and "dropped a late plan" in events[0]
    assert [ex.command(t).twist[0] for t in (0.65, 1.0, 1.55)] == [6, 10, 15]     # the old chunk to its end
    assert ex.command(1.6).hold and not np.any(ex.command(1.7).twist)


def test_chunk_committed_must_leave_new_actions():
    with pytest.raises(ChunkError, match="committed"):
        Chunk(0.0, DT, np.zeros((4, 7)), committed=4)
    assert np.array_equal(ramp_chunk(0.0).remaining(0.25, 3)[:, 0], [2, 3, 4])
    assert np.array_equal(ramp_chunk(0.0).remaining(1.45, 3)[:, 0], [14, 15, 15])   # the last one held


# ---------------------------------------------------------------------------------------------- one path

def test_the_world_and_the_action_node_run_the_same_executor_class():
    world = TwoArmWorld(WORLD)
    assert all(type(e) is ArmExecutor for e in world.executors.values())
    assert type(ArmInterface(WORLD, "left", ArmKinematics()).executor) is ArmExecutor


def test_no_second_ik_or_workspace_path_in_the_package():
    """DifferentialIK, WorkspaceBounds and JointCommandLimiter are built in control/executor.py only:
    a second place that turns twists into joint commands fails here."""
    builders = {"DifferentialIK", "WorkspaceBounds", "JointCommandLimiter"}
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in builders:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found and all(f.startswith("control/executor.py:") for f in found), found


def test_world_apply_action_is_a_one_step_chunk_through_the_executor():
    """apply_action (data generation, the physics cost model) and execute(chunk) give the same motion."""
    action = np.array([0.05, 0.02, -0.03, 0.0, 0.0, 0.2, 0.04])
    a, b = TwoArmWorld(WORLD), TwoArmWorld(WORLD)
    b.execute("left", Chunk(0.0, DT, np.tile(action, (8, 1))))
    for _ in range(8):
        a.apply_action("left", action)
        a.step_control()
        b.step_control()
    np.testing.assert_allclose(a.joint_positions("left"), b.joint_positions("left"), atol=1e-9)
    moved = np.linalg.norm(a.arm_state("left").ee_pos - a.home_tcp["left"][0])
    assert 0.03 < moved < 0.08                                       # ~0.06 m/s for 0.8 s, accelerating


def test_predict_runs_a_copy_ahead_with_the_limits_lag_and_leaves_the_executor_alone():
    """ArmExecutor.predict from rest under 0.3 m/s along base x for 0.3 s: the tool where the same executor
    takes it with joints that follow its commands with the tracking lag (behind the first-order 9 cm: the
    joint limits and the lag ramp the speed up); the executor's own next commands are unchanged by it."""
    kin = ArmKinematics()
    ex, twin = ArmExecutor(WORLD, "left", kin), ArmExecutor(WORLD, "left", kin)
    q0 = np.array(WORLD.home_qpos)
    for e in (ex, twin):
        e.accept(chunk_of([0.3, 0, 0, 0, 0, 0]), now=0.0)
    predicted = ex.predict(0.0, q0, np.zeros(7), 0.3, gripper_width=0.08)
    q, qdot, dt = q0.copy(), np.zeros(7), 1 / WORLD.control.ik_rate_hz
    for k in range(round(0.3 * WORLD.control.ik_rate_hz)):
        command = twin.step(k * dt, q).qdot
        qdot += dt / (WORLD.control.tracking_time_constant + dt) * (command - qdot)   # the arm's tracking lag
        q = q + qdot * dt
    frame = WORLD.base_frame("left")
    np.testing.assert_allclose(predicted.ee_pos, frame.point_to_world(kin.forward(q)[0]), atol=1e-9)
    np.testing.assert_allclose(predicted.ee_linvel, frame.vec_to_world(kin.jacobian(q)[:3] @ qdot), atol=1e-9)
    start = frame.point_to_world(kin.forward(q0)[0])
    moved = frame.vec_to_base(predicted.ee_pos - start)[0]
    assert 0.03 < moved < 0.07                                     # behind first order (0.09 m)
    fresh = ArmExecutor(WORLD, "left", kin)
    fresh.accept(chunk_of([0.3, 0, 0, 0, 0, 0]), now=0.0)
    np.testing.assert_array_equal(ex.step(0.0, q0).qdot, fresh.step(0.0, q0).qdot)
