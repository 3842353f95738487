"""The ROS nodes' behaviour, tested on the ROS-free classes they adapt (no rclpy needed)."""

from __future__ import annotations

import array
import copy
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import mujoco
import numpy as np
import pytest
import yaml
from fakes import GaussianPolicy, small_planner_config

from codi_ros.config import load_world_config
from codi_ros.control.executor import MAX_TARGET_LEAD, Chunk, ChunkError
from codi_ros.control.kinematics import ArmKinematics, arm_state_from_joints
from codi_ros.core.planner import Planner, PlanningError, PlanOverrides, PlanResult
from codi_ros.frames import ArmState, mat_to_quat, quat_to_mat, rot_z
from codi_ros.nodes.logic.arm_control import DELIVERY_MARGIN_S, ArmController, JointStateReader
from codi_ros.nodes.logic.coordinator import Coordinator
from codi_ros.nodes.logic.messages import (
    arm_state_msg,
    chunk_msg,
    detection_msg,
    header,
    parse_arm_state,
    parse_chunk,
    parse_detection,
    pose_msg,
    trajectory_msg,
)
from codi_ros.nodes.logic.msg_dict import fill, to_dict
from codi_ros.nodes.logic.services import (
    CostService,
    RequestError,
    kinematic_cost_evaluator,
    parse_cost_request,
    parse_plan_request,
)
from codi_ros.nodes.logic.sim_bridge import LAG_REPORT_HOLD_S, SimBridge, camera_in_tcp
from codi_ros.nodes.logic.watchdog import LogOnce, RateGrid, StateMonitor
from codi_ros.paths import config_dir
from codi_ros.perception.fusion import Detection
from codi_ros.robot.fr3 import ARM_JOINTS, FINGER_JOINTS
from codi_ros.sim.tasks import HANDOVER
from codi_ros.sim.world import TwoArmWorld

WORLD = load_world_config()
H, DT = WORLD.horizon.prediction, WORLD.control.dt


@pytest.fixture(scope="module")
def kinematics() -> ArmKinematics:
    return ArmKinematics()


@pytest.fixture(scope="module")
def world() -> TwoArmWorld:
    return TwoArmWorld(WORLD)


def chunk_of(twist, n: int = H, start: float = 0.0, width: float = 0.08) -> Chunk:
    return Chunk(start, DT, np.tile(np.r_[twist, width], (n, 1)))


def texts(lines) -> list[str]:
    return [t for _, t in lines]


# ---------------------------------------------------------------------------------------------- watchdog

def test_inputs_stamped_in_the_future_are_refused_not_kept_fresh_forever():
    """A state or detection stamped beyond the timeout ahead of now (a wrong clock, a fuzzed stamp) would never
    go stale: the monitor and the cube fusion refuse it."""
    m = StateMonitor({"arm": 0.2})
    m.update("arm", 5.0)
    assert m.problems(1.0) == {"arm": "arm is stamped 4.00 s in the future (limit 0.20 s)"}
    assert m.problems(4.9) == {}                                       # within the timeout of now: fine
    coord = Coordinator(WORLD, FakePlanner())
    observe(coord, 1.0, cube_t=4e9)
    resp, _ = coord.handle_plan({}, now=1.05)
    assert not resp["success"] and "in the future" in resp["message"], resp["message"]


def test_state_monitor_reports_missing_stale_and_nan_inputs():
    m = StateMonitor({"arm": 0.2, "cube": 1.0})
    assert set(m.problems(0.0)) == {"arm", "cube"} and "no arm received" in m.problems(0.0)["arm"]
    m.update("arm", 10.0)
    m.update("cube", 10.0)
    assert m.problems(10.15) == {}
    assert set(m.problems(10.25)) == {"arm"} and "0.25 s old (limit 0.20 s)" in m.problems(10.25)["arm"]
    assert set(m.problems(11.05)) == {"arm", "cube"}
    m.update("cube", 11.0, finite=False)
    assert "NaN" in m.problems(11.05)["cube"]


def test_log_once_reports_a_fault_once_and_its_recovery_once():
    log = LogOnce()
    lines = []
    for k in range(50):                                    # a stale input for 50 cycles, its age growing
        lines += log.update({"arm": f"arm state is {0.2 + 0.01 * k:.2f} s old"})
    assert lines == [("warn", "arm state is 0.20 s old")]
    assert log.update({}) == [("info", "recovered: arm state is 0.20 s old")] and log.update({}) == []
    assert log.update({"arm": "again"}) == [("warn", "again")]


def test_rate_grids_thin_a_jittery_stream_to_the_same_instants():
    """arm_state_node and the simulator's true cube pose thin the same 100 Hz joint-state stamps to 25 Hz
    independently: they pass the same stamps, one per 40 ms slot, so the planner sees cube and arms at one
    time. A lost message moves one grid to the next stamp of that slot only."""
    stamps = 1000.0 + np.arange(400) * 0.01 + np.random.default_rng(0).uniform(0, 0.004, 400)
    arms, cube = RateGrid(25.0), RateGrid(25.0)
    picked = [t for t in stamps if arms.due(t)]
    assert picked == [t for t in stamps if cube.due(t)]
    assert len(picked) == 100 and np.all(np.abs(np.diff(picked) - 0.04) < 0.005)
    lossy = RateGrid(25.0)                                       # loses the first stamp of slot 2
    thinned = [t for t in np.delete(stamps, 8) if lossy.due(t)]
    assert thinned[2] == stamps[9] and thinned[:2] == picked[:2] and thinned[3:] == picked[3:]
    with pytest.raises(ValueError, match="rate_hz"):
        RateGrid(0.0)


def test_simulated_graph_publishes_the_true_cube_pose_at_the_arm_state_rate():
    from codi_ros.paths import config_dir

    params = yaml.safe_load((config_dir() / "ros_sim.yaml").read_text())
    cube_rate = params["/sim_node"]["ros__parameters"]["cube_pose_rate_hz"]
    assert [params[f"/{a}/arm_state_node"]["ros__parameters"]["publish_rate_hz"] for a in WORLD.arm_names] \
        == [cube_rate] * len(WORLD.arm_names)


# ---------------------------------------------------------------------------------------------- arm nodes

def test_arm_state_from_joint_states_matches_the_simulator(world, kinematics):
    world.reset()
    rng = np.random.default_rng(3)
    for arm in WORLD.arm_names:
        world.execute(arm, Chunk(world.time, DT, np.tile(np.r_[rng.uniform(-0.1, 0.1, 6), 0.05], (5, 1))))
    world.step(0.2)
    mujoco.mj_forward(world.model, world.data)            # site poses of the current qpos (mj_step leaves the last)
    for arm in WORLD.arm_names:
        reader = JointStateReader()
        names, q = [*FINGER_JOINTS, *reversed(ARM_JOINTS)], world.joint_positions(arm)
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
    r = JointStateReader()
    assert not r.update(["other_joint"], [1.0], [], 0.0) and r.q is None and not r.take()
    assert not r.update(list(FINGER_JOINTS), [0.01, 0.02], [], 0.0) and r.gripper_width == pytest.approx(0.03)
    assert r.update(list(ARM_JOINTS), list(range(7)), [], 2.0)         # no velocities: zero
    assert r.take() and not r.take() and np.all(r.qdot == 0) and r.stamp == 2.0


def controller(kinematics, world=WORLD) -> ArmController:
    return ArmController(world, "left", kinematics)


def drive(world, ctl, seconds, chunks=(), states=True, state_period=0.04, watchdog_period=0.05):
    """The action node's loop on the simulated arm: joint states every ``state_period`` (unless ``states`` is
    False; "nan": NaN joints), chunk messages at their (arrival time, message), the watchdog every
    ``watchdog_period``; each trajectory the controller returns goes to the world's trajectory follower.
    Returns the trajectories sent and the arm's measured joint velocities every IK period."""
    chunks, sent, qdots = sorted(chunks, key=lambda c: c[0]), [], []
    t0, dt = world.time, world.cfg.control.dt / 10
    next_state, next_check = t0, t0
    while world.time < t0 + seconds - 1e-9:
        t = world.time
        if t >= next_state - 1e-9 and states:
            q = world.joint_positions("left") if states is True else np.full(7, np.nan)
            ctl.on_joint_positions(q, t, world.joint_velocities("left"))
            next_state += state_period
        out = []
        while chunks and chunks[0][0] <= t + 1e-9:
            out.append(ctl.on_chunk(chunks.pop(0)[1], t))
        if t >= next_check - 1e-9:
            out.append(ctl.check(t))
            next_check += watchdog_period
        for trajectory in filter(None, out):
            world.follow("left", trajectory)
            sent.append(trajectory)
        world.step(dt)
        qdots.append(world.joint_velocities("left"))
    return sent, np.array(qdots)


def test_action_node_tracks_a_chunk_on_the_simulated_arm_then_stops(world, kinematics):
    """Closed loop on the MuJoCo arm: 0.1 m/s along the base x axis for 1.6 s, then the chunk runs out. One
    trajectory for the whole chunk, ending at rest."""
    world.reset()
    ctl = controller(kinematics)
    start = world.arm_state("left").ee_pos
    msg = chunk_msg("left", chunk_of([0.1, 0, 0, 0, 0, 0], start=world.time, width=0.05))
    sent, qdots = drive(world, ctl, 2.5, chunks=[(world.time + 0.01, msg)])
    moved = WORLD.base_frame("left").vec_to_base(world.arm_state("left").ee_pos - start)
    assert 0.14 < moved[0] < 0.165 and abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01, moved
    assert len(sent) == 1 and np.all(sent[0].widths == 0.05) and not np.any(sent[0].velocities[-1])
    end = round(H * DT / 0.01)                             # the chunk ends at 1.6 s
    assert sent[0].end - (world.time - 2.5 + H * DT) <= 2 * ctl.executor.limiter.stop_time + 1e-9  # commanded to rest
    speed = np.abs(qdots).max(axis=1)
    assert speed[end - 1] > 0.05 and speed[end + 40:].max() < 0.01   # at rest within 0.4 s of the end


@pytest.mark.parametrize("fault", ["stale", "nan"])
def test_action_node_stops_the_arm_on_stale_or_nan_joint_states_and_logs_once(world, kinematics, fault):
    world.reset()
    ctl = controller(kinematics)
    msg = chunk_msg("left", chunk_of([0.2, 0, 0, 0, 0, 0], n=50, start=world.time))
    sent, moving = drive(world, ctl, 0.5, chunks=[(world.time, msg)])      # 0.5 s of normal operation
    assert np.abs(moving[-1]).max() > 0.05 and len(sent) == 1
    late = chunk_msg("left", chunk_of([0.2, 0, 0, 0, 0, 0], n=50, start=world.time + 0.3))
    sent, outs = drive(world, ctl, 1.0, chunks=[(world.time + 0.3, late)], states=fault == "nan" and "nan")
    detect = 0.2 if fault == "stale" else 0.0              # stale: detected once older than 0.2 s
    assert len(sent) == 1 and not np.any(sent[0].velocities[-1]) and sent[0].start <= world.time - 1.0 + detect + 0.1
    stopped = round((detect + 0.1 + 2 * ctl.executor.limiter.stop_time + 0.3) / 0.01)
    assert np.abs(outs[stopped:]).max() < 0.01             # at rest, and no new plan moves it while the fault lasts
    log = ctl.pop_log()
    assert len([t for lvl, t in log if lvl == "warn" and "joint states" in t and "arm left" in t]) == 1
    assert any("rejected a chunk: the joint states are stale or NaN" in t for t in texts(log))


def test_workspace_box_stops_the_tool_above_the_table(world, kinematics):
    world.reset()
    ctl = controller(kinematics, replace(WORLD, workspace=replace(WORLD.workspace, lower=(-0.9, -0.6, 0.30))))
    drive(world, ctl, 3.0, chunks=[(world.time, chunk_msg("left", chunk_of([0, 0, -0.3, 0, 0, 0], n=30,
                                                                          start=world.time)))])
    assert 0.298 < world.arm_state("left").ee_pos[2] < 0.31


def test_a_new_trajectory_continues_the_one_sent_before_it(world, kinematics):
    """Smooth chunk joins: a chunk arriving mid-motion makes a trajectory that starts where the previous one
    is at that time (the executor ran exactly what it had sent), and the joint accelerations across the join
    stay within the limiter's."""
    world.reset()
    ctl = controller(kinematics)
    t0 = world.time
    first = chunk_msg("left", chunk_of([0.1, 0, 0, 0, 0, 0], start=t0))
    second = chunk_msg("left", chunk_of([0, 0.1, 0.05, 0, 0, 0], start=t0 + 0.5))
    sent, _ = drive(world, ctl, 1.0, chunks=[(t0, first), (t0 + 0.5, second)])
    a, b = sent
    k = int(np.argmin(np.abs(a.times - b.start)))
    assert a.times[k] == pytest.approx(b.start)
    np.testing.assert_allclose(b.positions[0], a.positions[k], atol=1e-12)
    joined = np.vstack([a.velocities[:k], b.velocities])
    acc = np.abs(np.diff(joined, axis=0)).max(axis=0) / ctl.executor.dt
    assert np.all(acc <= np.asarray(ctl.executor.limiter.a_max) + 1e-6), acc


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
    arrival = [t0, t0 + 0.4 - DELIVERY_MARGIN_S]     # the second reaches the arm at its stamp
    ctl, start_q = controller(kinematics), graph.joint_positions("left")
    messages = [(t, chunk_msg("left", c)) for t, c in zip(arrival, chunks, strict=True)]
    drive(graph, ctl, 1.2, chunks=messages, state_period=0.01)
    for t, c in zip(arrival, chunks, strict=True):
        lockstep.step(t + DELIVERY_MARGIN_S - lockstep.time)
        assert lockstep.execute("left", c)
    lockstep.step(graph.time - lockstep.time)
    graph_q = graph.joint_positions("left")
    tool_gap = np.linalg.norm(graph.arm_state("left").ee_pos - lockstep.arm_state("left").ee_pos)
    assert tool_gap < 1e-3, tool_gap                        # 0.3 mm after 1.2 s (the prediction's error)
    np.testing.assert_allclose(graph_q, lockstep.joint_positions("left"), atol=2e-3)
    assert np.abs(graph_q - start_q).max() > 0.05          # it did move


def test_action_node_rejects_chunks_for_another_arm_or_without_joint_states_and_clamps_the_gripper(kinematics):
    ctl = controller(kinematics)
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


# ---------------------------------------------------------------------------------------------- messages

class FakeMessage:
    """Mimics a rosidl-generated Python message: typed fields, a field table, setters that check types."""

    FIELDS: dict[str, str] = {}
    DEFAULTS: dict[str, object] = {}

    def __init__(self):
        for name in self.FIELDS:
            object.__setattr__(self, name, self.DEFAULTS[name]() if callable(self.DEFAULTS[name])
                               else self.DEFAULTS[name])

    @classmethod
    def get_fields_and_field_types(cls):
        return dict(cls.FIELDS)

    def __setattr__(self, name, value):
        assert name in self.FIELDS, name
        default = self.DEFAULTS[name]
        if isinstance(default, float):
            assert isinstance(value, float), f"The '{name}' field must be of type 'float'"
        object.__setattr__(self, name, value)


class FakeVector(FakeMessage):
    FIELDS = {"x": "double", "y": "double"}
    DEFAULTS = {"x": 0.0, "y": 0.0}


class FakeChunk(FakeMessage):
    FIELDS = {"arm": "string", "origin": "fake_msgs/Vector", "points": "sequence<fake_msgs/Vector>",
              "widths": "sequence<double>", "k": "double[3]"}
    DEFAULTS = {"arm": "", "origin": FakeVector, "points": list, "widths": lambda: array.array("d"),
                "k": lambda: np.zeros(3)}


def test_message_objects_convert_to_and_from_plain_dicts(monkeypatch):
    monkeypatch.setitem(sys.modules, "fake_msgs.msg", SimpleNamespace(Vector=FakeVector))
    values = {"arm": "left", "origin": {"x": 1, "y": 2.5}, "points": [{"x": 0.5}, {"y": -1.0}],
              "widths": [0.04, 0.08], "k": [1.0, 2.0, 3.0]}
    msg = fill(FakeChunk(), values)
    assert isinstance(msg.origin.x, float) and msg.origin.x == 1.0          # an int for a float field
    assert [type(p) for p in msg.points] == [FakeVector, FakeVector] and msg.points[1].y == -1.0
    assert to_dict(msg) == {**values, "origin": {"x": 1.0, "y": 2.5},
                            "points": [{"x": 0.5, "y": 0.0}, {"x": 0.0, "y": -1.0}]}
    msg.widths, msg.k = array.array("d", [0.01]), np.array([4.0, 5.0, 6.0])
    assert to_dict(msg)["widths"] == [0.01] and to_dict(msg)["k"] == [4.0, 5.0, 6.0]
    with pytest.raises(ValueError, match="FakeChunk has no field 'gripper'"):
        fill(FakeChunk(), {"gripper": 0.08})
    with pytest.raises(ValueError, match=r"FakeVector\.x: .*float"):
        fill(FakeChunk(), {"origin": {"x": [1.0]}})


def test_message_dicts_round_trip_and_use_ros_quaternion_order():
    q = mat_to_quat(rot_z(0.4))
    assert pose_msg(np.zeros(3), q)["orientation"] == pytest.approx({"x": 0, "y": 0, "z": q[3], "w": q[0]})
    c = chunk_of([0.1, -0.2, 0.3, 0.4, -0.5, 0.6], n=3, start=12.345, width=0.02)
    arm, frame, back = parse_chunk(chunk_msg("right", c))
    assert (arm, frame) == ("right", "base_right") and back.start == pytest.approx(12.345)
    np.testing.assert_allclose(back.actions, c.actions)
    d = Detection("left", 3.5, np.array([0.1, 0.2, 0.03]), q, 0.7, 2, True)
    back_d = parse_detection(detection_msg(d))
    assert back_d.source == "left" and back_d.ambiguous and back_d.num_markers == 2
    np.testing.assert_allclose(back_d.quat, q)
    with pytest.raises(ChunkError, match="gripper_widths"):
        parse_chunk({"twists": [{}], "gripper_widths": []})


def test_arm_state_message_round_trip(world):
    world.reset()
    s = world.arm_state("left")
    arm, back, stamp = parse_arm_state(arm_state_msg("left", s, 7.25))
    assert arm == "left" and stamp == pytest.approx(7.25)
    np.testing.assert_allclose(back.ee_rot, s.ee_rot, atol=1e-12)
    np.testing.assert_allclose(back.ee_pos, s.ee_pos)


# ---------------------------------------------------------------------------------------------- services

def state_msg(world_sim: TwoArmWorld | None = None, **overrides) -> dict:
    """A full codi_msgs/WorldState dict (from the simulator, or a fixed one)."""
    arms = []
    for arm in WORLD.arm_names:
        if world_sim is not None:
            s = world_sim.arm_state(arm)
        else:
            pos = np.array([WORLD.arm(arm).base_xy[0] * 0.5, 0.0, 0.3])
            s = ArmState(pos, rot_z(0.0), np.zeros(3), np.zeros(3), 0.08)
        arms.append(arm_state_msg(arm, s, 1.0))
    msg = {"arms": arms, "cube_pose": pose_msg(np.array([-0.3, 0.1, 0.025]), np.array([1.0, 0, 0, 0])),
           "goal": {"x": 0.3, "y": 0.0, "z": 0.025}}
    msg.update(overrides)
    return msg


def test_empty_plan_request_is_valid_and_means_latest_state_no_overrides():
    state, overrides = parse_plan_request({}, WORLD)
    assert state is None and overrides == PlanOverrides()
    request = {"state": state_msg(), "num_samples": 64, "temperature": 0.5, "seed": 3}
    state, overrides = parse_plan_request(request, WORLD)
    assert set(state.arms) == set(WORLD.arm_names) and overrides == PlanOverrides(64, 0.5, None, 3)


def _nan_arm() -> dict:
    msg = state_msg()
    msg["arms"][1]["ee_pose"]["position"]["x"] = math.nan
    return msg


@pytest.mark.parametrize("request_, field_name", [
    ({"state": state_msg(arms=state_msg()["arms"][:1])}, r"state\.arms: expected 2"),
    ({"state": state_msg(arms=[state_msg()["arms"][0]] * 2)}, r"state\.arms\[1\]\.arm: arm 'left' given twice"),
    ({"state": state_msg(arms=[dict(state_msg()["arms"][0], arm="mid"), state_msg()["arms"][1]])}, r"arms\[0\]\.arm"),
    ({"state": _nan_arm()}, r"state\.arms\[1\]\.ee_pose: NaN"),
    ({"state": state_msg(goal={"x": math.nan})}, r"state\.goal: NaN"),
    ({"state": state_msg(cube_pose={"orientation": {"w": 0.0}})}, r"state\.cube_pose\.orientation"),
    ({"state": {"goal": {"x": 0.3}}}, r"state\.arms: empty"),
    ({"temperature": -1.0}, "temperature"), ({"temperature": math.nan}, "temperature"),
    ({"num_samples": -4}, "num_samples"),
    ({"num_samples": 100_000_000}, r"num_samples: M, guidance samples per denoising step must be a whole number in "
                                   r"\[2, 16384\], got 100000000 \(0 = configured value\)"),
    ({"steps": 1_000_000}, r"steps: denoising steps per plan must be a whole number in \[1, 1000\]"),
    ({"seed": 2**40}, r"seed: random seed"),
])
def test_malformed_plan_requests_name_the_field(request_, field_name):
    with pytest.raises(RequestError, match=field_name):
        parse_plan_request(request_, WORLD)


def test_a_plan_request_over_the_compute_budget_is_refused_without_planning():
    """Each override within its bounds, but 8 candidates x 16384 x 1000 steps would hold the single-threaded
    coordinator (and the /codi/stop behind it) for hours: refused, the budget in the message."""
    planner = Planner(GaussianPolicy(), WORLD, small_planner_config(steps=4, num_samples=8, candidates=8))
    coord = Coordinator(WORLD, planner)
    t0 = time.perf_counter()
    resp, publish = coord.handle_plan({"state": state_msg(), "num_samples": 16384, "steps": 1000}, now=1.0)
    assert not resp["success"] and not publish and time.perf_counter() - t0 < 0.5
    assert "8 x 16384 x 1000 = 131,072,000 sample evaluations per plan exceeds the budget of 32,768" in resp["message"]
    assert coord.handle_plan({"state": state_msg(), "num_samples": 64, "steps": 12}, now=2.0)[0]["success"]


def candidates_msg(c: np.ndarray) -> dict:
    return {"layout": {"dim": [{"label": n, "size": s} for n, s in zip(("candidate", "arm", "step", "action"), c.shape,
                                                                          strict=True)]},
            "data": c.ravel().tolist()}


def test_cost_service_scores_candidates_and_rejects_malformed_ones(world):
    world.reset(cube_xy=(-0.3, 0.0))
    svc = CostService(WORLD, kinematic_cost_evaluator(WORLD))
    towards = np.zeros((2, 2, H, 7))
    towards[..., 6] = 0.08
    towards[0, :, :, 0] = 0.3                              # candidate 0: both arms drive at each other (+x in base)
    resp = svc.handle({"state": state_msg(world), "candidates": candidates_msg(towards)})
    assert resp["success"] and len(resp["costs"]) == 2
    terms = {t["name"]: t["values"] for t in resp["terms"]}
    assert terms["collision"][0] > terms["collision"][1] == 0.0
    assert resp["costs"] == pytest.approx(np.sum(list(terms.values()), axis=0).tolist(), rel=1e-5)
    bad = svc.handle({"state": state_msg(world), "candidates": candidates_msg(np.zeros((2, 2, 8, 7)))})
    assert not bad["success"] and "candidates.layout.dim[2]" in bad["message"]


@pytest.mark.parametrize("mutate, field_name", [
    (lambda c: c.update(data=c["data"][:-1]), "candidates.data"),
    (lambda c: c["data"].__setitem__(3, math.nan), r"candidates\.data: NaN"),
    (lambda c: c["layout"]["dim"].pop(), r"candidates\.layout\.dim"),
    (lambda c: c["layout"]["dim"][1].update(size=3), r"dim\[1\]: arms must be 2"),
])
def test_malformed_cost_requests_name_the_field(mutate, field_name):
    c = candidates_msg(np.zeros((3, 2, H, 7)))
    mutate(c)
    with pytest.raises(RequestError, match=field_name):
        parse_cost_request({"state": state_msg(), "candidates": c}, WORLD)


# ---------------------------------------------------------------------------------------------- coordinator

@dataclass
class FakePlanner:
    """Returns a fixed chunk per arm; records the states it was asked about."""

    latency: float = 0.05
    fail: bool = False
    during: object = None                                  # called while "planning" (e.g. a concurrent stop)
    states: list = field(default_factory=list)

    committed: list = field(default_factory=list)
    predicted: list = field(default_factory=list)
    ramp: bool = False                                     # plan i moves at 0.05 i m/s (which plan ran is visible)
    resets: int = 0

    def reset(self) -> None:
        self.resets += 1

    def plan(self, state, overrides=None, committed=None, predicted=None, cancelled=None) -> PlanResult:
        self.states.append((state, overrides))
        self.committed.append(committed)
        self.predicted.append(predicted)
        if self.during is not None:
            self.during()
        if self.fail:
            raise PlanningError("state: cube below the table")
        vx = 0.05 * len(self.states) if self.ramp else 0.05
        chunks = {a: np.tile([vx, 0, 0, 0, 0, 0, 0.08], (H, 1)) for a in WORLD.arm_names}
        d = 0 if committed is None else len(committed["left"])
        for a in chunks if d else ():
            chunks[a][:d] = committed[a]
        return PlanResult(chunks=chunks, cost=1.5, cost_terms={"goal": 1.0, "engage": 0.5}, latency_s=self.latency,
                          committed=d)


def observe(coord: Coordinator, t: float, arms_t: float | None = None, cube_t: float | None = None, nan=False):
    for arm in WORLD.arm_names:
        pos = np.array([WORLD.arm(arm).base_xy[0] * 0.5, 0.0, math.nan if nan else 0.3])
        coord.on_arm_state(arm_state_msg(arm, ArmState(pos, np.eye(3), np.zeros(3), np.zeros(3), 0.08),
                                         t if arms_t is None else arms_t))
    coord.on_cube_detection(detection_msg(Detection("sim_truth", t if cube_t is None else cube_t,
                                                    np.array([-0.3, 0.1, 0.025]), np.array([1.0, 0, 0, 0]))))


def test_latency_aware_coordinator_commits_what_the_arms_run_while_it_plans():
    """d from the recent plans' latency (0.25 s -> 3 steps): plan 2 starts with the 3 actions of plan 1 that
    the action nodes run meanwhile, and its chunks say so (committed 3: taken over at start + 0.3 s).
    /codi/start begins an episode: the planner is reset, as codi eval resets it per episode."""
    from codi_ros.core.realtime import RealtimeConfig

    planner = FakePlanner(latency=0.25, ramp=True)
    coord = Coordinator(WORLD, planner, realtime=RealtimeConfig(initial_latency=0.25))
    coord.start()
    observe(coord, 1.0)
    first = coord.tick(1.0)
    assert planner.resets == 1                                           # before its first plan
    assert planner.committed[0]["left"].shape == (3, 7) and not np.any(planner.committed[0]["left"][:, :6])  # holding
    observe(coord, 1.4)
    second = coord.tick(1.4)
    np.testing.assert_allclose(planner.committed[1]["left"][:, 0], [0.05] * 3)    # plan 1's actions 4..6
    assert all(c["committed"] == 3 for c in first + second)
    assert [c["twists"][3]["linear"]["x"] for c in second] == [0.1, 0.1]           # its own actions from step 3
    naive = Coordinator(WORLD, FakePlanner())
    naive.start()
    observe(naive, 1.0)
    assert all(c["committed"] == 0 for c in naive.tick(1.0))


def test_latency_aware_coordinator_predicts_the_tools_from_the_arms_joint_states():
    """Arm states with joints: the planner gets each tool where its mirror executor predicts it when the
    plan takes over (0.3 s of committed motion at 0.05 m/s, plus the states' age, behind first order: the
    joint limits and the tracking lag); without joints in the messages, first order (None)."""
    from codi_ros.control.kinematics import ArmKinematics
    from codi_ros.core.realtime import RealtimeConfig

    kinematics, q = ArmKinematics(), np.array(WORLD.home_qpos)
    planner = FakePlanner(latency=0.25)
    coord = Coordinator(WORLD, planner, realtime=RealtimeConfig(initial_latency=0.25))
    coord.start()
    observe(coord, 1.0)
    coord.tick(1.0)                                   # plan 1: holds still for 3 steps, then 0.05 m/s along x
    assert planner.predicted[0] is None               # observe() sends no joints
    starts = {}
    for arm in WORLD.arm_names:
        state = arm_state_from_joints(kinematics, WORLD.base_frame(arm), q, np.zeros(7), 0.08)
        starts[arm] = state.ee_pos
        coord.on_arm_state(arm_state_msg(arm, state, 1.38, joints=(q, np.zeros(7))))
    coord.tick(1.4)
    predicted = planner.predicted[1]
    for arm in WORLD.arm_names:
        moved = WORLD.base_frame(arm).vec_to_base(predicted[arm].ee_pos - starts[arm])
        assert 0.005 < moved[0] < 0.014 and abs(moved[1]) < 1e-3              # along base x, behind 1.6 cm
        assert predicted[arm].gripper_width == 0.08


def test_a_plan_slower_than_its_commitment_is_dropped_by_the_coordinator_and_its_mirrors():
    """d = 3 (0.3 s) but the plan took 0.45 s: its committed actions are over before it could be sent, so the
    action nodes would drop it; the coordinator drops it itself (logged), its mirrors keep the running chunk
    (the next plan commits to that chunk's actions, not to the dropped one's), and the slow plan raises d."""
    from codi_ros.core.realtime import RealtimeConfig

    planner = FakePlanner(latency=0.25, ramp=True)
    coord = Coordinator(WORLD, planner, realtime=RealtimeConfig(initial_latency=0.25))
    coord.start()
    observe(coord, 1.0)
    assert coord.tick(1.0)                                   # plan 1 (0.05 m/s) sent
    planner.latency = 0.45
    observe(coord, 1.4)
    assert coord.tick(1.4) == []                             # plan 2 (0.1 m/s) took 0.45 s > 3 steps: dropped
    assert any("dropped a late plan" in t and "3 committed steps" in t for t in texts(coord.pop_log()))
    observe(coord, 1.9)
    third = coord.tick(1.9)
    assert third and all(c["committed"] == 5 for c in third)                     # d now covers 0.45 s
    np.testing.assert_allclose(planner.committed[2]["left"][:, 0], [0.05] * 5)   # plan 1's, not plan 2's


def test_states_and_stops_are_taken_while_the_planner_runs():
    """While a plan runs, another thread (the node's services thread) serves /codi/stop without waiting for it
    and may feed states (the lock is not held while the planner runs); a stop during the plan drops it."""
    import threading

    coord = Coordinator(WORLD, FakePlanner(latency=0.3))
    served = []

    def executor_thread():
        observe(coord, 1.2)
        served.append(coord.stop(1.2))

    def during():
        other = threading.Thread(target=executor_thread)
        other.start()
        other.join(timeout=2.0)
        assert not other.is_alive(), "the executor thread waited for the plan"

    coord.planner.during = during
    coord.start()
    observe(coord, 1.0)
    assert coord.tick(1.0) == [] and not coord.autonomous             # stopped while planning: dropped
    assert served and all(len(c["twists"]) == 0 for c in served[0])   # the stop itself went out at once
    assert coord.observed_state(1.25).stamp == pytest.approx(1.2)     # the state taken during the plan


def test_states_queued_behind_a_long_plan_are_not_mistaken_for_stale_ones():
    """One thread: a 0.45 s plan holds back the state messages, so the tick right after it sees 0.45 s old
    states. It waits for them instead of stopping the arms (in the ROS graph this stopped the arms after
    most plans slower than 0.35 s); states that stay old still stop the arms one tick later."""
    planner = FakePlanner(latency=0.45)
    coord = Coordinator(WORLD, planner)
    coord.start()
    observe(coord, 1.0)
    assert coord.tick(1.0)                                  # plans; "finishes" at 1.45
    assert coord.tick(1.45) == [] and len(planner.states) == 1
    observe(coord, 1.45)                                    # the queued states are taken
    assert coord.tick(1.5) and len(planner.states) == 2
    assert coord.tick(1.95) == []                           # right after the plan: waits once ...
    stop = coord.tick(2.05)                                 # ... then the states really are stale: stop
    assert stop and all(len(c["twists"]) == 0 for c in stop)
    assert any("not planning" in t for t in texts(coord.pop_log()))



def test_the_next_tick_is_asked_for_at_once_only_after_a_plan_as_long_as_the_execution_horizon():
    """The node re-ticks right after a plan only when the next one is already due; after a quicker plan the
    timer's due tick plans (re-ticking until then kept the coordinator's core busy between plans)."""
    horizon = WORLD.horizon.execution * DT
    for latency, again in ((0.3 * horizon, False), (1.1 * horizon, True)):
        coord = Coordinator(WORLD, FakePlanner(latency=latency))
        coord.start()
        observe(coord, 1.0)
        assert coord.tick(1.0)
        assert coord.replan_now(1.0 + latency) is again
        assert coord.replan_now(1.0 + horizon)                  # the due time: the plan is due either way
    idle = Coordinator(WORLD, FakePlanner())
    assert not idle.replan_now(1.0)                        # not autonomous: never


def test_plan_service_fails_cleanly_without_a_state_and_keeps_serving():
    coord = Coordinator(WORLD, FakePlanner())
    resp, publish = coord.handle_plan({}, now=1.0)
    assert not resp["success"] and "no arm 'left' state received yet" in resp["message"] and not publish
    resp, _ = coord.handle_plan({"temperature": -1.0}, now=1.0)
    assert not resp["success"] and resp["message"].startswith("temperature")
    observe(coord, 2.0)
    resp, publish = coord.handle_plan({}, now=2.05)
    assert resp["success"] and not publish
    assert [c["arm"] for c in resp["chunks"]] == list(WORLD.arm_names)
    assert all(len(c["twists"]) == H and c["dt"] == DT and c["header"]["frame_id"] == f"base_{c['arm']}"
               for c in resp["chunks"])
    assert resp["cost"] == 1.5 and {t["name"] for t in resp["cost_terms"]} == {"goal", "engage"}


@pytest.mark.parametrize("arms_t, cube_t, nan, expected", [
    (1.75, None, False, r"arm 'left' state is 0\.25 s old \(limit 0\.20 s\)"),
    (None, 0.9, False, "no cube pose"),
    (None, None, True, "arm 'left' state has NaN"),
])
def test_no_plan_from_stale_or_nan_state(arms_t, cube_t, nan, expected):
    planner = FakePlanner()
    coord = Coordinator(WORLD, planner)
    observe(coord, 2.0, arms_t, cube_t, nan)
    resp, _ = coord.handle_plan({}, now=2.0)
    assert not resp["success"] and re.search(expected, resp["message"]), resp["message"]
    assert not planner.states


def test_plan_uses_fused_cube_and_goal_and_explicit_state_wins():
    planner = FakePlanner()
    coord = Coordinator(WORLD, planner)
    coord.on_goal(np.array([0.35, 0.1, 0.025]))
    observe(coord, 2.0)
    coord.handle_plan({"seed": 7}, now=2.0)
    state, overrides = planner.states[-1]
    np.testing.assert_allclose(state.cube.pos, [-0.3, 0.1, 0.025])
    np.testing.assert_allclose(state.goal, [0.35, 0.1, 0.025])
    assert overrides.seed == 7
    resp, publish = coord.handle_plan({"state": state_msg(goal={"x": -0.1, "y": 0.0, "z": 0.0}), "execute": True}, 2.0)
    assert resp["success"] and len(publish) == 2 and planner.states[-1][0].goal[0] == -0.1


def test_planning_error_is_reported_as_failure():
    coord = Coordinator(WORLD, FakePlanner(fail=True))
    resp, _ = coord.handle_plan({"state": state_msg()}, now=0.0)
    assert not resp["success"] and "cube below the table" in resp["message"]


def test_receding_horizon_replans_after_the_execution_horizon_and_reports_overruns():
    planner = FakePlanner(latency=0.05)
    coord = Coordinator(WORLD, planner)
    coord.start()
    sent = {}
    for k in range(30):                                    # 3 s at 10 Hz
        t = 10.0 + k * DT
        observe(coord, t)
        chunks = coord.tick(t)
        if chunks:
            sent[round(t, 3)] = chunks
    step = WORLD.horizon.execution * DT
    assert list(sent) == pytest.approx([10.0 + i * step for i in range(len(sent))])
    assert len(sent) == -(-30 // WORLD.horizon.execution)
    assert all(c[0]["header"]["stamp"]["sec"] == int(t) for t, c in sent.items())
    assert not [t for lvl, t in coord.pop_log() if "overrun" in t]
    left = (WORLD.horizon.prediction - WORLD.horizon.execution) * DT   # what remains of the running chunk
    planner.latency = left + 0.2                           # slower than that: the arms hold for 0.2 s
    t = max(sent) + step
    observe(coord, t)
    assert coord.tick(t)
    overruns = [t for lvl, t in coord.pop_log() if "overrun" in t]
    assert len(overruns) == 1 and "held for 0.200 s" in overruns[0]


def test_stale_state_in_autonomous_mode_stops_the_arms_once_and_recovers():
    coord = Coordinator(WORLD, FakePlanner())
    coord.start()
    observe(coord, 1.0)
    assert coord.tick(1.0)
    outs = [coord.tick(1.0 + k * DT) for k in range(1, 20)]      # no new arm states: stale from 1.2 s on
    stops = [o for o in outs if o]
    assert len(stops) == 1 and all(len(c["twists"]) == 0 for c in stops[0])
    log = coord.pop_log()
    assert len([t for lvl, t in log if lvl == "warn" and "not planning" in t]) == 1
    observe(coord, 3.0)
    assert coord.tick(3.0) and any("recovered" in t for _, t in coord.pop_log())


def test_stop_during_planning_drops_the_plan():
    coord = Coordinator(WORLD, FakePlanner())
    coord.planner.during = lambda: coord.stop(1.01)
    coord.start()
    observe(coord, 1.0)
    assert coord.tick(1.0) == [] and not coord.autonomous
    resp, publish = coord.handle_plan({"state": state_msg(), "execute": True}, now=2.0)
    assert resp["success"] and not publish and "not executed" in resp["message"]


def test_a_stop_cancels_a_running_plan_within_a_network_call(one_thread):
    """A plan of 1000 denoising steps (seconds) is cancelled by /codi/stop from another thread: the planner
    asks before every score evaluation, so the planning thread is free again within milliseconds."""
    import threading

    planner = Planner(GaussianPolicy(), WORLD, small_planner_config(steps=1000, num_samples=8))
    coord = Coordinator(WORLD, planner)
    observe(coord, 1.0)
    threading.Timer(0.2, lambda: coord.stop(1.2)).start()
    t0 = time.perf_counter()
    resp, publish = coord.handle_plan({"execute": True}, now=1.05)
    assert time.perf_counter() - t0 < 0.5 and not publish
    assert not resp["success"] and resp["message"].startswith("cancelled: /codi/stop")


def test_the_coordinator_stops_the_arms_once_the_cube_rests_at_the_goal():
    """The completion rule of codi eval: the cube rests at the goal, released, for goal.settle_seconds; then
    autonomous mode ends and both arms are told to stop; /codi/start begins the next task."""
    coord = Coordinator(WORLD, FakePlanner())
    coord.on_goal(np.array([-0.3, 0.1, 0.025]))            # where observe() puts the cube
    coord.start()
    sent, t = [], 1.0
    while coord.autonomous and t < 5.0:
        observe(coord, t)
        sent.append((t, coord.tick(t)))
        t = round(t + DT, 3)
    done_at, last = sent[-1]
    assert not coord.autonomous and done_at - 1.0 >= WORLD.goal.settle_seconds
    assert [c["arm"] for c in last] == list(WORLD.arm_names) and all(c["twists"] == [] for c in last)
    assert any("handover complete" in t for _, t in coord.pop_log())
    coord.start()
    observe(coord, t)
    assert coord.tick(t) and coord.autonomous               # a new task: the settle time starts again


def test_stop_sends_empty_chunks_to_every_arm():
    coord = Coordinator(WORLD, FakePlanner())
    coord.start()
    chunks = coord.stop(5.0)
    assert [c["arm"] for c in chunks] == list(WORLD.arm_names) and all(c["twists"] == [] for c in chunks)
    assert not coord.autonomous


def test_plan_service_with_the_real_planner(one_thread):
    planner = Planner(GaussianPolicy(), WORLD, small_planner_config(steps=4, num_samples=8))
    coord = Coordinator(WORLD, planner)
    resp, publish = coord.handle_plan({"state": state_msg(), "seed": 3, "execute": True}, now=1.0)
    assert resp["success"], resp["message"]
    assert publish == resp["chunks"] and resp["latency"] > 0
    assert resp["cost"] == pytest.approx(sum(t["values"][0] for t in resp["cost_terms"]), rel=1e-5)
    chunks = [parse_chunk(c)[2].actions for c in resp["chunks"]]
    assert all(c.shape == (H, 7) and np.all(np.isfinite(c)) for c in chunks)
    again, _ = coord.handle_plan({"state": state_msg(), "seed": 3}, now=2.0)
    np.testing.assert_allclose([parse_chunk(c)[2].actions for c in again["chunks"]], chunks)   # seeded
    bad, _ = coord.handle_plan({"state": state_msg(), "num_samples": 1}, now=3.0)
    assert not bad["success"] and bad["message"].startswith("num_samples")    # the planner's own check


# ---------------------------------------------------------------------------------------------- simulator bridge

def test_sim_bridge_steps_in_real_time_and_follows_trajectories_in_the_wall_clock(world, kinematics):
    bridge = SimBridge(world, max_lag=0.1)
    bridge.reset(HANDOVER, seed=0, index=0)
    t0 = world.time
    assert bridge.advance(100.0) == 0.0                   # first call syncs the clocks
    assert bridge.advance(100.034) == pytest.approx(0.03)  # whole 10 ms periods only
    assert bridge.advance(100.05) == pytest.approx(0.02)
    assert world.time - t0 == pytest.approx(0.05)
    ctl = ArmController(WORLD, "left", kinematics)         # the action node, in the wall clock
    ctl.on_joint_positions(world.joint_positions("left"), 100.05)
    trajectory = ctl.on_chunk(chunk_msg("left", chunk_of([0.1, 0, 0, 0, 0, 0], start=100.05, width=0.03)), 100.05)
    bridge.command_trajectory("left", trajectory_msg(trajectory, ARM_JOINTS, FINGER_JOINTS))
    for k in range(1, 31):
        bridge.advance(100.05 + 0.01 * k)
    q_due, _, width = trajectory.sample(100.35)
    np.testing.assert_allclose(world.arms["left"].q_target, q_due, atol=1e-9)   # the servos' targets: on time
    assert width == pytest.approx(0.03) and world.gripper_width("left") < 0.05
    q = world.joint_positions("left")
    assert bridge.advance(101.0) == pytest.approx(0.01)    # 0.64 s behind: skip ahead one period, the
    q_due, _, _ = trajectory.sample(101.0)                  # trajectory kept to the wall clock, as on an arm,
    np.testing.assert_allclose(world.arms["left"].q_target,  # the targets' jump within MAX_TARGET_LEAD
                               np.clip(q_due, q - MAX_TARGET_LEAD, q + MAX_TARGET_LEAD), atol=1e-9)
    assert sum("behind real time" in t for lvl, t in bridge.pop_log() if lvl == "warn") == 1
    bad = trajectory_msg(trajectory, ARM_JOINTS, FINGER_JOINTS)
    bad["points"][3]["positions"] = bad["points"][3]["positions"][:5]
    bridge.command_trajectory("left", bad)
    bridge.command_trajectory("left", {**bad, "joint_names": ["fr3_joint1"]})
    log = texts(bridge.pop_log())
    assert any("points[3]" in t for t in log) and any("joint_names: missing" in t for t in log)


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
    assert names == [*ARM_JOINTS, *FINGER_JOINTS] and q[7] + q[8] == pytest.approx(world.gripper_width("right"))


def test_sim_hand_eye_matches_the_aruco_parameters(world):
    """The aruco nodes' hand-eye parameters in ros_sim.yaml are the simulated wrist camera's pose."""
    params = yaml.safe_load((config_dir() / "ros_sim.yaml").read_text())
    for arm in WORLD.arm_names:
        t, q = camera_in_tcp(world, arm)
        p = params[f"/{arm}/aruco_node"]["ros__parameters"]
        np.testing.assert_allclose(p["hand_eye_translation"], t, atol=1e-4)
        R = quat_to_mat(np.roll(p["hand_eye_quaternion_xyzw"], 1))
        assert np.abs(R - quat_to_mat(np.roll(q, 1))).max() < 1e-5


# ---------------------------------------------------------------------------------------------- the graph, without ROS

def test_sim_graph_wired_like_the_launch_file_moves_both_arms_and_stops(world, kinematics):
    """The nodes' logic wired as two_arm_sim.launch.py wires the nodes (messages as dicts, one clock):
    sim -> joint states (25 Hz) -> arm states -> coordinator (true cube pose, fake planner) -> chunks -> action
    nodes -> joint trajectories -> sim. Each arm follows its plan (0.05 m/s along its base x); /codi/stop
    stops both."""
    bridge = SimBridge(world)
    bridge.reset(HANDOVER, seed=1, index=0)
    coord = Coordinator(WORLD, FakePlanner())
    coord.start()
    readers = {a: JointStateReader() for a in WORLD.arm_names}
    actions = {a: ArmController(WORLD, a, kinematics) for a in WORLD.arm_names}
    start = {a: world.arm_state(a).ee_pos for a in WORLD.arm_names}

    def send(chunk: dict, t: float) -> None:
        trajectory = actions[chunk["arm"]].on_chunk(chunk, t)
        if trajectory is not None:
            bridge.command_trajectory(chunk["arm"], trajectory_msg(trajectory, ARM_JOINTS, FINGER_JOINTS))

    def run(k0: int, steps: int) -> None:
        for k in range(k0, k0 + steps):                   # 100 Hz
            t = 50.0 + k * 0.01
            bridge.advance(t)
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
    for chunk in coord.stop(50.0 + 300 * 0.01):
        send(chunk, 50.0 + 300 * 0.01)
    run(300, 30)                                           # the jerk-limited ramp, then the servos settle
    assert all(np.abs(world.joint_velocities(a)).max() < 0.02 for a in WORLD.arm_names)


# ---------------------------------------------------------------------------------------------- fuzz
# Every field of a /codi/plan or /codi/evaluate_cost request replaced by extreme values (NaN, inf, huge,
# negative, zero), sequences cut, emptied or repeated: the only allowed outcomes are an answer or the
# documented refusal (success false, the message naming the field), never an exception. CI runs
# CODI_FUZZ_EXAMPLES (default 2000) requests per service; `make fuzz` runs more.

FUZZ_EXAMPLES = int(os.environ.get("CODI_FUZZ_EXAMPLES", "2000"))
EXTREMES = [math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, -1.0, 1e-300, 2.0**32, -(2.0**63)]


def _leaves(obj, path=()):
    """Paths to every number and sequence of a nested request dict."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, list):
        yield path
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path


def _mutated(base: dict, data) -> dict:
    """``base`` with a few of its numbers replaced by extremes and sequences cut, emptied or repeated."""
    from hypothesis import strategies as st

    req = copy.deepcopy(base)
    paths = list(_leaves(req))
    for path in data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4)):
        parent = req
        try:
            for key in path[:-1]:
                parent = parent[key]
            value = parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue                                          # an earlier change removed it
        if isinstance(value, list):
            cut = data.draw(st.sampled_from(["empty", "half", "double"]))
            parent[path[-1]] = [] if cut == "empty" else value[:len(value) // 2] if cut == "half" else value * 2
        elif isinstance(value, int):
            parent[path[-1]] = data.draw(st.sampled_from([0, 1, 2**32 - 1, 10**9, -1]))
        else:
            parent[path[-1]] = data.draw(st.sampled_from(EXTREMES) | st.floats(allow_nan=True, allow_infinity=True))
    return req


def _fuzz_settings():
    from hypothesis import HealthCheck, settings

    return settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def test_fuzzed_plan_requests_get_an_answer_or_a_refusal_naming_a_field(one_thread):
    from hypothesis import given
    from hypothesis import strategies as st

    planner = Planner(GaussianPolicy(), WORLD,
                      small_planner_config(steps=1, num_samples=2))
    coord = Coordinator(WORLD, planner)
    base = {"state": state_msg(), "num_samples": 4, "temperature": 0.5, "steps": 1, "seed": 3, "execute": True}
    field_names = {"state", "num_samples", "temperature", "steps", "seed", "cancelled", "busy", "predicted",
                   "committed", "actions"}

    @_fuzz_settings()
    @given(st.data())
    def check(data):
        resp, chunks = coord.handle_plan(_mutated(base, data), now=1.0)
        if resp["success"]:
            assert all(np.all(np.isfinite(parse_chunk(c)[2].actions)) for c in chunks)
        else:
            assert resp["message"].split(".")[0].split(":")[0].split("[")[0] in field_names, resp["message"]

    check()
    assert coord.handle_plan({"state": state_msg()}, now=2.0)[0]["success"]     # still serving


def test_fuzzed_cost_requests_get_an_answer_or_a_refusal_naming_a_field(one_thread):
    from hypothesis import given
    from hypothesis import strategies as st

    svc = CostService(WORLD, kinematic_cost_evaluator(WORLD))
    candidates = np.zeros((2, len(WORLD.arm_names), H, 7))
    candidates[..., 6] = 0.08
    base = {"state": state_msg(), "candidates": candidates_msg(candidates)}

    @_fuzz_settings()
    @given(st.data())
    def check(data):
        resp = svc.handle(_mutated(base, data))
        if resp["success"]:
            assert len(resp["costs"]) == len(resp["terms"][0]["values"])
        else:
            assert resp["message"].split(".")[0].split(":")[0].split("[")[0] in ("state", "candidates"), resp["message"]

    check()
    assert svc.handle(base)["success"]


def test_fuzzed_state_and_chunk_messages_never_raise_and_never_command_non_finite_motion(world):
    """The topics too: arm states and cube detections (coordinator), action chunks (action node) and joint
    trajectories (the simulated controller) with extreme numbers, cut or emptied sequences. No callback
    raises (a raise kills the node's executor), a plan from such a state is planned or refused, and the arm
    is never commanded a non-finite motion.
    (Found: a cube detection that fusion leaves out, after a good one, made the next plan raise.)"""
    from hypothesis import given
    from hypothesis import strategies as st

    q = world.joint_positions("left")
    state = arm_state_from_joints(ArmKinematics(), WORLD.base_frame("left"), q, np.zeros(7), 0.08)
    arm_base = arm_state_msg("left", state, 1.0, joints=(q, np.zeros(7)))
    cube_base = detection_msg(Detection("sim_truth", 1.0, np.array([-0.3, 0.1, 0.025]), np.array([1.0, 0, 0, 0])))
    actions = np.zeros((H, 7))
    actions[:, 0], actions[:, 6] = 0.05, 0.08
    chunk_base = chunk_msg("left", Chunk(1.0, DT, actions[:4]))
    arm = controller(ArmKinematics())
    arm.on_joint_positions(q, 1.0)
    trajectory_base = trajectory_msg(arm.on_chunk(chunk_base, now=1.0), ARM_JOINTS, FINGER_JOINTS)
    bridge = SimBridge(world)
    bridge.reset(HANDOVER, seed=0, index=0)
    bridge.advance(1.0)
    clock = [1.0]

    @_fuzz_settings()
    @given(st.data())
    def check(data):
        coord = Coordinator(WORLD, FakePlanner())
        observe(coord, 1.0)
        assert coord.handle_plan({}, now=1.02)[0]["success"]          # a good state first, then the bad messages
        coord.on_arm_state(_mutated(arm_base, data))
        coord.on_cube_detection(_mutated(cube_base, data))
        resp, _ = coord.handle_plan({}, now=1.05)
        assert resp["success"] or resp["message"].startswith("no usable observed state"), resp["message"]
        arm.on_joint_positions(q, 1.0)
        trajectory = arm.on_chunk(_mutated(chunk_base, data), now=1.0)
        if trajectory is not None:
            assert np.all(np.isfinite(trajectory.positions)) and np.all(np.isfinite(trajectory.velocities))
        clock[0] += 0.01                                               # the world steps on each trajectory
        bridge.command_trajectory("left", _mutated({**trajectory_base, "header": header(clock[0], "")}, data))
        bridge.advance(clock[0])
        assert np.all(np.isfinite(world.arms["left"].q_target))

    check()
