"""Real-time execution in codi eval's loop: the world runs on while a plan is computed, committed actions
are executed as committed, a late plan is dropped; and the latency estimate that sets d."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codi_ros.config import load_world_config
from codi_ros.core.realtime import LatencyEstimate, RealtimeConfig, steps_for
from codi_ros.evaluation.rollout import Plan, Timing, run_closed_loop
from codi_ros.evaluation.single_arm import PolicySource
from codi_ros.sim.world import TwoArmWorld

WORLD = load_world_config()
H, DT = WORLD.horizon.prediction, WORLD.control.dt


def action_id(plan: int, k: int) -> float:
    """vx of plan ``plan``'s action k: which action ran is readable off the commanded twist."""
    return round(0.01 * plan + 0.0001 * k, 6)


class RampController:
    """Plan p is action_id(p, k) for k < H; with ``commit`` d it starts with the d actions the arm's
    executor runs from now on (as the latency-aware planner's chunks do)."""

    def __init__(self, commit: int = 0):
        self.commit, self.plans, self.committed = commit, 0, []

    def plan(self, world: TwoArmWorld) -> Plan:
        chunk = np.zeros((H, 7))
        chunk[:, 0] = [action_id(self.plans, k) for k in range(H)]
        chunk[:, 6] = 0.08
        upcoming = world.executors["left"].chunks.upcoming(world.time, self.commit) if self.commit else None
        if upcoming is not None:
            chunk[:self.commit] = upcoming
            self.committed.append(upcoming[:, 0].tolist())
        self.plans += 1
        return Plan({"left": chunk}, committed=self.commit)


def executed(controller, timing: Timing, steps: int = 12):
    """The commanded vx of the left arm at every control step (None while it holds)."""
    world = TwoArmWorld(WORLD)
    out = []

    def record(w: TwoArmWorld) -> None:
        chunk = w.executors["left"].chunks.chunk
        out.append(None if chunk is None else round(float(chunk.action_at(w.time - DT)[0]), 6))

    loop = run_closed_loop(world, controller, steps * DT, on_step=record, timing=timing)
    return out, loop


def test_paused_timing_executes_each_plan_from_its_first_action():
    out, loop = executed(RampController(), Timing("paused"))
    assert out == [action_id(p, k) for p in range(3) for k in range(4)] and loop.delays == [0, 0, 0]


def test_naive_realtime_skips_the_actions_its_latency_used_up():
    """Latency 0.25 s = 3 steps: nothing runs until the first plan arrives, then each plan from action 3."""
    out, loop = executed(RampController(), Timing("realtime", latency=0.25))
    assert loop.delays == [3, 3, 3]
    assert out[:3] == [None] * 3
    assert out[3:7] == [action_id(0, k) for k in (3, 4, 5, 6)]
    assert out[7:11] == [action_id(1, k) for k in (3, 4, 5, 6)]


def test_latency_aware_realtime_executes_the_committed_prefix_then_the_new_chunk_from_step_d():
    controller = RampController(commit=3)
    out, loop = executed(controller, Timing("realtime", latency=0.25))
    assert controller.committed[0] == [action_id(0, k) for k in (4, 5, 6)]   # plan 1 froze what was running
    assert out[4:7] == controller.committed[0]                              # ... which ran while it was computed
    assert out[7] == action_id(1, 3) and out[8] == action_id(1, 4)           # then its own actions, on time
    assert loop.dropped == 0


def test_a_plan_later_than_its_commitment_is_dropped_and_the_arm_finishes_the_committed_chunk():
    """d = 2 committed, but every plan takes 3 steps: plans 1 and 2 are dropped, plan 0 keeps running
    (plan 0 is taken: the arm was holding, so it did hold still through its committed steps)."""
    controller = RampController(commit=2)
    out, loop = executed(controller, Timing("realtime", latency=0.25), steps=12)
    assert loop.dropped == 2
    assert out[3:12] == [action_id(0, k) for k in range(3, 12)]


def test_a_plan_as_slow_as_the_execution_horizon_is_still_executed():
    """Latency 0.4 s = 4 steps = the execution horizon: each plan arrives as the next one starts; it must be
    delivered before that one is computed (it was overwritten unexecuted, and the arms never moved)."""
    out, loop = executed(RampController(), Timing("realtime", latency=0.4), steps=13)
    assert loop.delays[:3] == [4, 4, 4]
    assert out[4:8] == [action_id(0, k) for k in (4, 5, 6, 7)] and out[8:12] == [action_id(1, k) for k in (4, 5, 6, 7)]


class RampPolicy:
    """Stand-in base policy: sample p is the chunk action_id(p, k), gripper open."""

    def __init__(self):
        self.samples = 0

    def sample(self, obs, n, steps, generator, method):
        chunk = torch.zeros(1, n, H, 7)
        chunk[..., 0] = torch.tensor([action_id(self.samples, k) for k in range(H)], dtype=torch.float32)
        chunk[..., 6] = 0.08
        self.samples += 1
        return chunk

    def normalize_actions(self, a):
        return a


def test_the_latency_aware_single_arm_controller_runs_its_policy_first_action_when_the_chunk_takes_over():
    """codi eval --method single-arm in real time: d = 3 committed steps, then the policy's chunk from its
    first action (sampled for the state after the committed ones), on time; the committed steps are exactly
    what the arm ran. Naive, the same latency skips the policy's first 3 actions."""
    aware = PolicySource(RampPolicy(), "left", steps=1,
                             latency=LatencyEstimate(RealtimeConfig(), DT, fixed=0.25))
    out, loop = executed(aware, Timing("realtime", latency=0.25))
    assert loop.delays == [3, 3, 3] and loop.dropped == 0
    assert out[3] == action_id(0, 0) and out[7] == action_id(1, 0)
    assert out[4:7] == [action_id(0, k) for k in (1, 2, 3)]           # committed by plan 1: plan 0's, as they ran
    naive = PolicySource(RampPolicy(), "left", steps=1,
                             latency=LatencyEstimate(RealtimeConfig(commit=False), DT, fixed=0.25))
    out, _ = executed(naive, Timing("realtime", latency=0.25))
    assert out[3] == action_id(0, 3)


@pytest.mark.parametrize("bad", [{"mode": "frozen"}, {"latency": -0.1}, {"latency": float("nan")},
                                 {"mode": "paused", "latency": 0.2}])
def test_bad_timing_is_refused_naming_the_field(bad):
    with pytest.raises(ValueError, match="timing|latency"):
        Timing(**bad)


def test_latency_estimate_follows_a_quantile_of_the_recent_plans():
    est = LatencyEstimate(RealtimeConfig(initial_latency=0.25, window=20, quantile=0.9, max_commit=4), DT)
    assert est.commit_steps() == 3                                # before any plan: the initial guess
    for latency in [0.12, 0.15, 0.11, 0.13, 0.14] * 4:
        est.update(latency)
    est.update(0.95)
    assert est.commit_steps() == 2                                # one spike in twenty does not set d
    for _ in range(5):
        est.update(0.95)
    assert est.steps() == 10 and est.commit_steps() == 4          # capped at max_commit
    assert LatencyEstimate(RealtimeConfig(commit=False), DT).commit_steps() == 0
    assert LatencyEstimate(RealtimeConfig(), DT, fixed=0.4).commit_steps() == 4   # injected: the whole delay
    quick = LatencyEstimate(RealtimeConfig(), DT, delivery_margin=0.02)
    for _ in range(20):
        quick.update(0.09)
    assert quick.commit_steps() == 2          # a 90 ms plan plus 20 ms on its way to the arms: two steps
    assert steps_for(0.3, DT) == 3 and steps_for(0.0, DT) == 0 and steps_for(0.301, DT) == 4


def test_predicted_state_moves_the_tools_and_a_held_cube_through_the_committed_actions():
    """predict_state: 3 steps of 0.1 m/s along the left base's x (= world x) and a yaw rate of 1 rad/s;
    the left gripper holds the cube, so it comes along; the right tool stands still."""
    from codi_ros.core.realtime import predict_state
    from codi_ros.frames import ArmState, CubeState, WorldState, yaw_of

    down = np.diag([1.0, -1.0, -1.0])
    arms = {"left": ArmState(np.array([-0.3, 0.0, 0.1]), down, np.zeros(3), np.zeros(3), 0.05),
            "right": ArmState(np.array([0.3, 0.0, 0.2]), down, np.zeros(3), np.zeros(3), 0.08)}
    state = WorldState(arms=arms, cube=CubeState(np.array([-0.3, 0.0, 0.1]), np.array([1.0, 0, 0, 0])),
                       goal=np.array([0.3, 0.0, 0.025]), stamp=2.0)
    move = np.tile([0.1, 0, 0, 0, 0, 1.0, 0.04], (3, 1))
    still = np.tile([0, 0, 0, 0, 0, 0, 0.08], (3, 1))
    out = predict_state(state, {"left": move, "right": still}, WORLD, grasp_radius=0.03, hold_width_margin=0.01)
    assert out.stamp == pytest.approx(2.3)
    np.testing.assert_allclose(out.arms["left"].ee_pos, [-0.27, 0.0, 0.1], atol=1e-9)
    np.testing.assert_allclose(out.arms["left"].ee_linvel, [0.1, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(out.cube.pos, [-0.27, 0.0, 0.1], atol=1e-9)          # carried
    assert yaw_of(out.arms["left"].ee_rot) - yaw_of(down) == pytest.approx(0.3)
    np.testing.assert_allclose(out.arms["right"].ee_pos, [0.3, 0.0, 0.2])
    release = move.copy()
    release[1:, 6] = 0.08                                          # opens after the first step
    dropped = predict_state(state, {"left": release, "right": still}, WORLD, 0.03, 0.01)
    np.testing.assert_allclose(dropped.cube.pos, [-0.29, 0.0, WORLD.cube.size / 2], atol=1e-9)
    # the grippers end at their last committed width; the holder's is held open by the cube between its fingers
    assert out.arms["left"].gripper_width == WORLD.cube.size and out.arms["right"].gripper_width == 0.08
    assert dropped.arms["left"].gripper_width == 0.08
    # as the hand takes them: a width inside the hysteresis band leaves the fingers where they are
    band = still.copy()
    band[:, 6] = (WORLD.gripper.close_below + WORLD.gripper.open_above) / 2
    kept = predict_state(state, {"left": move, "right": band}, WORLD, 0.03, 0.01)
    assert kept.arms["right"].gripper_width == 0.08
    # a grasp commanded in the committed actions closes the open fingers; one commanded throughout leaves
    # them open (the hand reopened after a failed grasp, or the goal is on its way): not a finished grasp
    closing = still.copy()
    closing[1:, 6] = 0.0
    assert predict_state(state, {"left": move, "right": closing}, WORLD, 0.03, 0.01).arms["right"].gripper_width == 0.0
    closed = still.copy()
    closed[:, 6] = 0.0
    assert predict_state(state, {"left": move, "right": closed}, WORLD, 0.03, 0.01).arms["right"].gripper_width == 0.08


def test_predicted_tools_from_the_executors_replace_first_order_and_carry_a_held_cube_rigidly():
    """predict_state(arms=...): the tools are the given ones (e.g. ArmExecutor.predict, with the joint limits'
    lag); a cube held throughout keeps its offset and orientation relative to its holder's tool."""
    from codi_ros.core.realtime import predict_state
    from codi_ros.frames import ArmState, CubeState, WorldState, quat_to_mat

    down = np.diag([1.0, -1.0, -1.0])
    arms = {"left": ArmState(np.array([-0.3, 0.0, 0.1]), down, np.zeros(3), np.zeros(3), 0.05),
            "right": ArmState(np.array([0.3, 0.0, 0.2]), down, np.zeros(3), np.zeros(3), 0.08)}
    state = WorldState(arms=arms, cube=CubeState(np.array([-0.3, 0.0, 0.09]), np.array([1.0, 0, 0, 0])),
                       goal=np.array([0.3, 0.0, 0.025]), stamp=2.0)
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])        # 90 degrees about z
    lagging = {"left": ArmState(np.array([-0.28, 0.01, 0.1]), turn @ down, np.array([0.05, 0, 0]), np.zeros(3), 0.05),
               "right": arms["right"]}
    committed = {"left": np.tile([0.1, 0, 0, 0, 0, 0, 0.04], (3, 1)),
                 "right": np.tile([0, 0, 0, 0, 0, 0, 0.08], (3, 1))}
    out = predict_state(state, committed, WORLD, 0.03, 0.01, arms=lagging)
    np.testing.assert_allclose(out.arms["left"].ee_pos, [-0.28, 0.01, 0.1])
    np.testing.assert_allclose(out.arms["left"].ee_linvel, [0.05, 0, 0])
    np.testing.assert_allclose(out.cube.pos, [-0.28, 0.01, 0.09], atol=1e-9)      # 1 cm below the tool, as before
    np.testing.assert_allclose(quat_to_mat(out.cube.quat), turn, atol=1e-9)


@pytest.mark.parametrize("method", ["predict", "inpaint"])
def test_a_latency_aware_plan_starts_with_exactly_the_committed_actions(method):
    from dataclasses import replace

    from fakes import GaussianPolicy, small_planner_config
    from test_planner import world_state

    from codi_ros.core.cost import load_cost_config
    from codi_ros.core.planner import Planner
    from codi_ros.core.realtime import RealtimeConfig

    config = small_planner_config(steps=6, num_samples=8, realtime=RealtimeConfig(method=method))
    planner = Planner(GaussianPolicy(), WORLD, replace(config, candidates=2), load_cost_config())
    committed = {a: np.tile([0.05, 0.0, -0.02, 0.0, 0.0, 0.1, 0.08], (3, 1)) for a in WORLD.arm_names}
    result = planner.plan(world_state(), committed=committed)
    assert result.committed == 3
    for arm in WORLD.arm_names:
        np.testing.assert_array_equal(result.chunks[arm][:3], committed[arm])
        assert result.chunks[arm].shape == (H, 7) and not np.allclose(result.chunks[arm][3:], committed[arm][0])
