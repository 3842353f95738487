"""Planner: input validation, output contract (per-arm raw chunks within limits, never NaN), config."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from fakes import GaussianPolicy, edited_config, small_planner_config

from codi_ros.config import ConfigError, load_world_config
from codi_ros.core.cost import CostValue, load_cost_config
from codi_ros.core.guidance import GuidanceConfig
from codi_ros.core.kinematic_model import KinematicModel, SimState
from codi_ros.core.planner import Planner, PlanningError, PlanOverrides, PlanResult, load_planner_config
from codi_ros.frames import ArmState, CubeState, WorldState

pytestmark = pytest.mark.usefixtures("one_thread")
WORLD = load_world_config()
HALF = 0.5 * WORLD.cube.size
FAST = small_planner_config(steps=8, num_samples=16)


def arm(x, y=0.0, z=0.2, width=0.08):
    return ArmState(ee_pos=np.array([x, y, z]), ee_rot=np.diag([1.0, -1.0, -1.0]), ee_linvel=np.zeros(3),
                    ee_angvel=np.zeros(3), gripper_width=width)


def world_state(cube=(-0.3, 0.1, HALF), goal=(0.35, 0.0, HALF), left=(-0.35, 0.0, 0.2), stamp=0.0):
    return WorldState(arms={"left": arm(*left), "right": arm(0.35)},
                      cube=CubeState(pos=np.array(cube), quat=np.array([1.0, 0.0, 0.0, 0.0])), goal=np.array(goal),
                      stamp=stamp)


def planner(config=FAST, policy=None):
    return Planner(policy or GaussianPolicy(), WORLD, config, load_cost_config())


def test_plan_returns_one_raw_chunk_per_arm_within_the_limits():
    result = planner().plan(world_state())
    assert isinstance(result, PlanResult) and set(result.chunks) == {"left", "right"}
    c = WORLD.control
    for chunk in result.chunks.values():
        assert chunk.shape == (WORLD.horizon.prediction, 7) and np.isfinite(chunk).all()
        assert (np.linalg.norm(chunk[:, :3], axis=1) <= c.max_linear_speed + 1e-6).all()
        assert (np.linalg.norm(chunk[:, 3:6], axis=1) <= c.max_angular_speed + 1e-6).all()
        assert ((chunk[:, 6] >= 0) & (chunk[:, 6] <= c.gripper_max_width)).all()
    assert set(result.cost_terms) == {"goal", "collision", "engage"}
    assert result.cost == pytest.approx(sum(result.cost_terms.values()), rel=1e-5)
    assert result.latency_s > 0


def test_predicted_cost_is_the_cost_of_the_returned_chunks():
    p = planner()
    state = world_state()
    result = p.plan(state)
    joint = torch.as_tensor(np.stack([result.chunks[n] for n in WORLD.arm_names]), dtype=torch.float32)[None]
    assert p.cost(SimState.from_world(state, WORLD), joint).total.item() == pytest.approx(result.cost, rel=1e-4)


def test_seed_override_is_reproducible_and_plans_differ_without_it():
    p = planner()
    a, b = p.plan(world_state(), PlanOverrides(seed=7)), p.plan(world_state(), PlanOverrides(seed=7))
    assert all(np.array_equal(a.chunks[n], b.chunks[n]) for n in a.chunks)
    c, d = p.plan(world_state()), p.plan(world_state())
    assert not np.array_equal(c.chunks["left"], d.chunks["left"])


def test_reset_starts_an_episode_that_replays_like_a_fresh_planner_with_that_seed():
    config = replace(FAST, candidates=4, coherence=1.0)
    states = [world_state(stamp=0.8), world_state(left=(-0.3, 0.05, 0.15), stamp=1.6)]
    fresh = planner(replace(config, seed=3000))
    expected = [fresh.plan(s).chunks["left"] for s in states]
    reused = planner(config)
    reused.plan(world_state(stamp=0.0))             # a previous episode: its plan count and last plan are forgotten
    reused.reset(seed=3000)
    assert all(np.array_equal(reused.plan(s).chunks["left"], e) for s, e in zip(states, expected, strict=True))


def test_warm_up_plans_once_and_leaves_the_planner_as_fresh():
    config = replace(FAST, candidates=4, coherence=1.0)
    states = [world_state(stamp=0.8), world_state(left=(-0.3, 0.05, 0.15), stamp=1.6)]
    expected = [p.plan(s).chunks["left"] for p in [planner(config)] for s in states]
    warmed = planner(config)
    assert warmed.warm_up() > 0
    assert all(np.array_equal(warmed.plan(s).chunks["left"], e) for s, e in zip(states, expected, strict=True))


def test_independent_method_reports_per_arm_terms():
    result = planner(replace(FAST, method="codi-indep")).plan(world_state())
    assert set(result.cost_terms) == {"goal/left", "goal/right", "engage/left", "engage/right"}


def test_guidance_lowers_the_planned_cost():
    """The left arm is 39 cm from the cube (engagement term ~1.9): guided plans approach it, unguided ones
    wander. Averaged over seeds, the guided plans' predicted J is lower than with guidance off (scale 0)."""
    guided = planner(replace(FAST, steps=16))
    unguided = planner(replace(FAST, steps=16, guidance=GuidanceConfig(scale=0.0)))
    state = world_state(cube=(-0.35, 0.0, HALF), left=(-0.35, 0.35, 0.2))
    cost = lambda p: np.mean([p.plan(state, PlanOverrides(seed=s)).cost_terms["engage"] for s in range(6)])  # noqa: E731
    assert cost(guided) < cost(unguided) - 0.3


def bad(field_value):
    s = world_state()
    field, value = field_value
    if field == "left.ee_pos":
        s.arms["left"].ee_pos = value
    elif field == "right.gripper_width":
        s.arms["right"].gripper_width = value
    elif field == "cube.pos":
        s.cube.pos = value
    elif field == "goal":
        s.goal = value
    elif field == "arms":
        s.arms = value
    return s


@pytest.mark.parametrize("case, message", [
    (("left.ee_pos", np.array([np.nan, 0.0, 0.2])), "state.arms.left.ee_pos"),
    (("right.gripper_width", np.inf), "state.arms.right.gripper_width"),
    (("left.ee_pos", np.zeros(2)), "state.arms.left.ee_pos: expected shape"),
    (("cube.pos", np.array([1.2, 0.0, HALF])), "state.cube.pos.*off the table"),
    (("cube.pos", np.array([0.0, 0.0, -0.1])), "state.cube.pos.*off the table"),
    (("goal", np.array([0.0, 0.55, HALF])), "state.goal.*out of reach"),
    (("goal", np.array([0.3, np.nan, HALF])), "state.goal"),
    (("arms", {"left": arm(-0.35)}), "state.arms: expected the configured arms"),
    (("arms", {"left": arm(-0.35), "right": arm(0.35), "third": arm(0.0)}), "state.arms"),
])
def test_bad_state_raises_planning_error_naming_the_field(case, message):
    with pytest.raises(PlanningError, match=message):
        planner().plan(bad(case))


@pytest.mark.parametrize("overrides, message", [
    (PlanOverrides(temperature=0.0), "temperature"),
    (PlanOverrides(temperature=-1.0), "temperature"),
    (PlanOverrides(temperature=float("nan")), "temperature"),
    (PlanOverrides(num_samples=1), "num_samples"),
    (PlanOverrides(steps=0), "steps"),
])
def test_bad_overrides_raise_planning_error_naming_the_field(overrides, message):
    with pytest.raises(PlanningError, match=message):
        planner().plan(world_state(), overrides)


@pytest.mark.parametrize("score_value", [float("nan"), float("inf")])
def test_diverging_policy_never_yields_nan_actions(score_value):
    with pytest.raises(PlanningError, match="actions"):
        planner(policy=GaussianPolicy(score_value)).plan(world_state())


def test_more_candidates_return_the_cheapest_of_more_samples():
    """Re-ranking B joint samples by predicted cost: averaged over seeds, the best of 6 unguided samples
    has a clearly lower predicted J than a single sample."""
    state = world_state(cube=(-0.35, 0.0, HALF), left=(-0.35, 0.35, 0.2))
    unguided = GuidanceConfig(scale=0.0)   # no guidance: the spread between candidates is the policy's
    one, six = (planner(replace(FAST, guidance=unguided, candidates=b)) for b in (1, 6))
    costs = np.array([[p.plan(state, PlanOverrides(seed=s)).cost for p in (one, six)] for s in range(4)])
    assert costs[:, 1].mean() < costs[:, 0].mean() - 0.2


def test_coherence_prefers_the_candidate_continuing_the_executed_plan():
    """After a plan at stamp 0 and 4 executed steps (stamp 0.4), the choice among candidates weighs the
    gap to the rest of that plan against the cost; with no steps executed or a stale plan, only the cost."""
    p = planner(replace(FAST, candidates=2, coherence=1.0))
    first = p.plan(world_state())
    previous = torch.as_tensor(np.stack([first.chunks[a] for a in WORLD.arm_names]), dtype=torch.float32)
    continuing = torch.cat([previous[:, 4:], previous[:, -4:]], dim=1)
    switching = continuing.clone()
    switching[..., 0] += 0.3                                  # 3 normalised units off in x speed, all steps
    chunks, cost = torch.stack([continuing, switching]), torch.tensor([0.6, 0.4])
    assert int(p.choice_scores(0.4, chunks, cost).argmin()) == 0
    assert int(p.choice_scores(0.0, chunks, cost).argmin()) == 1        # nothing executed yet
    assert int(p.choice_scores(0.0 + 5.0, chunks, cost).argmin()) == 1  # the previous plan is used up
    assert int(planner(replace(FAST, candidates=2)).choice_scores(0.4, chunks, cost).argmin()) == 1


class CountingPolicy(GaussianPolicy):
    calls = 0

    def score(self, a_t, t, obs):
        self.calls += 1
        return super().score(a_t, t, obs)


def test_warm_start_continues_the_rest_of_the_previous_plan_in_fewer_steps():
    """warm_start t_w: a plan 2 steps after the previous one starts from that plan's rest (shifted by 2,
    padded with its last action) noised to t_w and runs only the grid below t_w; its first plan and the
    first plan after reset are cold (pure noise, the whole grid, as without warm start)."""
    unguided = replace(FAST, guidance=GuidanceConfig(scale=0.0))
    cold, policy = planner(unguided, CountingPolicy()), CountingPolicy()
    warm = planner(replace(unguided, warm_start=0.05), policy)
    first = warm.plan(world_state())
    assert np.array_equal(first.chunks["left"], cold.plan(world_state()).chunks["left"])
    cold_calls = policy.calls
    second = warm.plan(world_state(stamp=0.2))
    assert policy.calls - cold_calls < cold_calls / 3           # 8-step grid: 2 of its steps lie below 0.05
    for n in WORLD.arm_names:
        rest = first.chunks[n][2:]
        expected = np.concatenate([rest, rest[-1:].repeat(2, axis=0)])
        np.testing.assert_allclose(second.chunks[n], expected, atol=0.02)   # raw; t_w = 0.05 normalised units
        assert not np.allclose(second.chunks[n], expected, atol=1e-6)       # noised, not copied
    warm.reset()
    assert np.array_equal(warm.plan(world_state()).chunks["left"], first.chunks["left"])
    stale = warm.plan(world_state(stamp=5.0))                   # the previous plan is used up: cold again
    assert np.array_equal(stale.chunks["left"], cold.plan(world_state(stamp=5.0)).chunks["left"])


def test_planner_yaml_loads_and_is_validated(tmp_path):
    cfg = load_planner_config()
    assert cfg.method == "codi" and cfg.cost_simulator == "kinematic" and cfg.guidance.temperature > 0
    for key, value, field in [("method", "joint", "method"), ("steps", 0, "steps"),
                              ("guidance.temperature", 0.0, "temperature"), ("guidance.num_samples", 1, "num_samples"),
                              ("guidance.covariance", "full", "covariance"),
                              ("cost_simulator", "isaac", "cost_simulator"), ("candidates", 0, "candidates"),
                              ("coherence", -1.0, "coherence"), ("warm_start", 0.0, "warm_start"),
                              ("guidance.num_samples", 100000000, r"planner\.guidance\.num_samples: M"),
                              ("steps", 1000, "exceeds the budget of 32,768"), ("seed", -1, r"planner\.seed")]:
        with pytest.raises(ConfigError, match=field):
            load_planner_config(edited_config(tmp_path, "planner.yaml", key, value))
    with pytest.raises(ConfigError, match="physics"):
        planner(replace(FAST, cost_simulator="physics"))


def test_planner_uses_a_given_cost_simulator():
    """The physics backend plugs in through the same rollout interface."""
    calls = []

    class Recorder:
        def __init__(self):
            self.inner = KinematicModel(WORLD)

        def rollout(self, state, chunks):
            calls.append(chunks.shape)
            return self.inner.rollout(state, chunks)

    p = Planner(GaussianPolicy(), WORLD, replace(FAST, cost_simulator="physics"), simulator=Recorder())
    p.plan(world_state())
    assert calls[0] == (16, 2, 16, 7)        # M candidates per guided step
    assert calls[-1] == (1, 2, 16, 7)        # the returned plan's predicted cost


def test_load_plans_with_a_saved_policy_checkpoint(tmp_path):
    """Planner.load: config/planner.yaml + a safetensors checkpoint of the real (here untrained) policy."""
    from codi_ros.core.policy import DiffusionPolicy, PolicyConfig

    DiffusionPolicy(PolicyConfig(horizon=WORLD.horizon.prediction)).save(tmp_path / "policy")
    p = Planner.load(WORLD, checkpoint=tmp_path / "policy")
    result = p.plan(world_state(), PlanOverrides(steps=4, num_samples=8))
    assert all(np.isfinite(c).all() and c.shape == (16, 7) for c in result.chunks.values())
    assert p.config == load_planner_config()


def decentralized(candidates: int = 4, method: str = "decentralized") -> Planner:
    return planner(small_planner_config(steps=4, num_samples=4, method=method, candidates=candidates))


@pytest.mark.parametrize("method", ["decentralized", "unguided"])
def test_an_unguided_plan_does_not_depend_on_the_cost(method):
    """MIMIC-D's execution (planner.method decentralized) and the fine-tuned baselines' (unguided): no guidance,
    and the cost chooses nothing; the same seed gives the same chunks whatever the cost says (it is only
    reported)."""
    def random_cost(seed):
        g = torch.Generator().manual_seed(seed)
        return lambda state, chunks: CostValue(total=torch.rand(len(chunks), generator=g), terms={})

    plans = [Planner(GaussianPolicy(), WORLD, decentralized(method=method).config, load_cost_config(),
                     cost=random_cost(s)) for s in (1, 2)]
    for stamp in (0.0, 0.1):     # the second plan chooses among its candidates (a previous chunk to continue)
        a, b = (p.plan(world_state(stamp=stamp)) for p in plans)
        for n in WORLD.arm_names:
            np.testing.assert_array_equal(a.chunks[n], b.chunks[n])
    assert a.cost != b.cost                                         # what each cost said of the chunk


def test_a_decentralized_arm_keeps_the_candidate_that_continues_its_own_chunk():
    p = decentralized(candidates=3)
    p.plan(world_state(stamp=0.0))
    previous = p._previous[1]                                       # (N, H, 7) the plan just made
    chunks = 0.2 * torch.randn(3, 2, *previous.shape[1:], generator=torch.Generator().manual_seed(0))
    chunks[2, 0, :-1] = previous[0, 1:]                            # left: candidate 2 continues its chunk
    chunks[1, 1, :-1] = previous[1, 1:]                            # right: candidate 1 continues its chunk
    assert p.arm_choices(0.1, chunks).tolist() == [2, 1]
    other = chunks.clone()
    other[:, 1] = 0.2 * torch.randn(3, *previous.shape[1:])         # whatever the right arm's candidates are ...
    other[0, 1, :-1] = previous[1, 1:]
    assert p.arm_choices(0.1, other).tolist() == [2, 0]            # ... the left arm's choice stays


def test_a_decentralized_planner_refuses_a_joint_policy():
    from test_joint_policy import joint_policy, two_arm_dataset

    with pytest.raises(ConfigError, match="decentralized' runs one single-arm policy per arm"):
        Planner(joint_policy(two_arm_dataset()), WORLD, decentralized().config, load_cost_config())


class StillPolicy(GaussianPolicy):
    """Every sampled chunk all but zero: the tools stay where they are."""

    scale = torch.tensor([1e-6] * 6 + [0.04])


def test_a_plan_for_a_predicted_state_keeps_the_tools_the_realtime_margin_farther_apart():
    """Tools 0.31 m apart, staying there: outside the paper's 0.30 m collision radius (a paused plan, for the
    state measured, pays nothing), inside it widened by planner.yaml's realtime.collision_margin for a plan made
    for the state after committed actions, whose tools are only as exact as that prediction."""
    margin = FAST.realtime.collision_margin
    assert margin > 0
    state = WorldState(arms={"left": arm(-0.155), "right": arm(0.155)}, cube=world_state().cube,
                       goal=np.array([0.35, 0.0, HALF]))
    p = planner(policy=StillPolicy())
    paused = p.plan(state)
    committed = {n: np.tile(np.r_[np.zeros(6), 0.08], (2, 1)) for n in WORLD.arm_names}
    predicted = p.plan(state, committed=committed)
    weight = load_cost_config().collision.weight
    assert paused.cost_terms["collision"] == pytest.approx(0.0, abs=1e-4)
    assert predicted.cost_terms["collision"] == pytest.approx(weight * (0.30 + margin - 0.31), rel=0.05)
