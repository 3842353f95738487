"""The handover cost (paper eq. 20, 40-44, Table I): signs, thresholds, engagement, independent variant."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from fakes import edited_config

from codi_ros.config import ConfigError, load_world_config
from codi_ros.core.cost import CostConfig, HandoverCost, load_cost_config
from codi_ros.core.kinematic_model import KinematicModel, SimState

pytestmark = pytest.mark.usefixtures("one_thread")
WORLD = load_world_config()
CFG = load_cost_config()
HALF = 0.5 * WORLD.cube.size
MODEL = KinematicModel(WORLD, CFG.kinematic_model)
GOAL = (0.35, 0.0, HALF)


def state(left_ee=(-0.45, 0.0, 0.2), right_ee=(0.45, 0.0, 0.2), cube=(-0.35, 0.0, HALF), goal=GOAL):
    return SimState(ee_pos=torch.tensor([left_ee, right_ee]), gripper_width=torch.full((2,), 0.08),
                    cube_pos=torch.tensor(cube), goal=torch.tensor(goal),
                    base_xy=torch.tensor([a.base_xy for a in WORLD.arms]),
                    base_yaw=torch.tensor([a.base_yaw for a in WORLD.arms]))


def still(k=1):
    """k candidates in which both arms hold still with open grippers: trajectories = current positions."""
    a = torch.zeros(k, 2, 16, 7)
    a[..., 6] = 0.08
    return a


JOINT = HandoverCost(CFG, MODEL, WORLD.arm_names)
INDEP = HandoverCost(CFG, MODEL, WORLD.arm_names, independent=True)


def joint_cost(term: str, **changes) -> HandoverCost:
    """The joint cost with one term of the shipped config changed, e.g. joint_cost("goal", measure="final")."""
    return HandoverCost(dataclasses.replace(CFG, **{term: dataclasses.replace(getattr(CFG, term), **changes)}),
                        MODEL, WORLD.arm_names)


def test_config_is_table_one():
    assert (CFG.goal.threshold, CFG.goal.weight, CFG.goal.measure) == (0.01, 1.0, "closest")
    assert (CFG.engage.threshold, CFG.engage.weight, CFG.engage.closer) == (0.20, 10.0, "base")
    assert (CFG.collision.threshold, CFG.collision.weight) == (0.30, 10.0)
    assert CFG == CostConfig()


@pytest.mark.parametrize("key, value, message", [("goal.threshold", -0.01, "threshold"),
                                                ("engage.closer", "wrist", "engage.closer"),
                                                ("goal.measure", "mean", "goal.measure")])
def test_bad_cost_config_is_rejected(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_cost_config(edited_config(tmp_path, "cost.yaml", key, value))


@pytest.mark.parametrize("offset", [0.0, 0.005, 0.0099])
def test_goal_term_is_zero_inside_the_threshold(offset):
    v = JOINT(state(cube=(GOAL[0] + offset, 0.0, HALF), left_ee=(0.2, 0.2, 0.2), right_ee=(0.35, 0.0, HALF)), still())
    assert v.terms["goal"].item() == 0.0


def test_goal_term_grows_linearly_outside_the_threshold():
    goals = [JOINT(state(cube=(GOAL[0] - d, 0.0, HALF)), still()).terms["goal"].item() for d in (0.05, 0.2, 0.5)]
    assert goals == pytest.approx([CFG.goal.weight * (d - CFG.goal.threshold) for d in (0.05, 0.2, 0.5)], abs=1e-5)


def carry_right(speeds):
    """The right arm holds the cube at x = 0.15 and carries it towards +x world, one candidate per speed
    (m/s, 16 steps of 0.1 s each), then holds still."""
    s = state(cube=(0.15, 0.0, HALF), right_ee=(0.15, 0.0, HALF))
    s = SimState(**{**s.__dict__, "gripper_width": torch.tensor([0.08, WORLD.cube.size])})
    a = still(len(speeds))
    a[:, 1, :, 6] = 0.0
    a[:, 1, :, 0] = -torch.tensor(speeds)[:, None]        # right base -x = world +x
    return s, a


@pytest.mark.parametrize("measure", ["final", "closest"])
def test_goal_term_measures_the_end_of_the_horizon_or_the_closest_approach(measure):
    """Carried 40 cm, from x = 0.15 through the goal at 0.35 to 0.55: ``closest`` (eq. 40, 42 as printed)
    scores the pass through the goal as zero, ``final`` scores where the cube ends up."""
    v = joint_cost("goal", measure=measure)(*carry_right([0.25]))
    expected = 0.0 if measure == "closest" else CFG.goal.weight * (0.55 - GOAL[0] - CFG.goal.threshold)
    assert v.terms["goal"].item() == pytest.approx(expected, abs=1e-5)


def test_final_goal_term_prefers_stopping_at_the_goal_to_carrying_past_it():
    """The candidate that stops the cube at the goal (12.5 cm/s x 1.6 s = 20 cm) must beat the one that carries
    it 20 cm beyond; with eq. 42 as printed both cost zero and the guidance cannot tell them apart."""
    v = joint_cost("goal", measure="final")(*carry_right([0.125, 0.25]))
    assert v.terms["goal"][0].item() == 0.0
    assert v.terms["goal"][1].item() > 0.15


def test_collision_term_only_below_the_safety_radius():
    far = JOINT(state(left_ee=(-0.16, 0.0, 0.2), right_ee=(0.16, 0.0, 0.2)), still())   # 32 cm apart
    near = JOINT(state(left_ee=(-0.1, 0.0, 0.2), right_ee=(0.1, 0.0, 0.2)), still())   # 20 cm apart
    assert far.terms["collision"].item() == 0.0
    assert near.terms["collision"].item() == pytest.approx(CFG.collision.weight * (0.30 - 0.20), abs=1e-5)
    assert near.total.item() > far.total.item()


def test_engagement_pulls_the_closer_arm_only():
    # Left is closer to the cube (25 cm) than right; right moving onto the cube does not lower the cost.
    s = state(left_ee=(-0.35, 0.25, HALF), right_ee=(0.0, 0.0, 0.2), cube=(-0.35, 0.0, HALF))
    base = JOINT(s, still()).terms["engage"].item()
    assert base == pytest.approx(CFG.engage.weight * (0.25 - 0.20), abs=1e-5)
    right_goes = still()
    right_goes[0, 1, :, 0] = 0.3                 # right moves towards -x world, 48 cm over the horizon
    assert JOINT(s, right_goes).terms["engage"].item() == pytest.approx(base, abs=1e-5)
    left_goes = still()
    left_goes[0, 0, :, 1] = -0.1                 # left approaches the cube
    assert JOINT(s, left_goes).terms["engage"].item() == 0.0
    # inside the 20 cm radius there is nothing to gain
    assert JOINT(state(left_ee=(-0.35, 0.15, HALF)), still()).terms["engage"].item() == 0.0


BY_EE, BY_BASE = (joint_cost("engage", closer=rule) for rule in ("end_effector", "base"))


def test_base_engagement_hands_a_placed_cube_to_the_arm_whose_half_it_is_in():
    """Left has just put the cube down on the right half: engaging by end effector keeps pulling left
    (nothing drives right to the cube); engaging by base pulls right, and right approaching lowers J."""
    s = state(left_ee=(0.05, 0.0, 0.10), right_ee=(0.40, 0.0, 0.40), cube=(0.05, 0.0, HALF))
    right_goes = still(2)
    right_goes[1, 1, :, 0], right_goes[1, 1, :, 2] = 0.2, -0.15        # right: towards -x world and down
    by_ee, by_base = BY_EE(s, right_goes).terms["engage"], BY_BASE(s, right_goes).terms["engage"]
    assert by_ee.tolist() == [0.0, 0.0]                                 # left is within 20 cm already
    assert by_base[0] > 1.0 and by_base[1] < 0.5 * by_base[0]


def test_base_engagement_leaves_a_held_cube_alone():
    """While an arm holds the cube nobody else is pulled to it (that would fight the collision term)."""
    s = state(left_ee=(0.05, 0.0, HALF), right_ee=(0.40, 0.0, 0.40), cube=(0.05, 0.0, HALF))
    s = SimState(**{**s.__dict__, "gripper_width": torch.tensor([WORLD.cube.size, 0.08])})
    holds, lets_go = still(2), still(2)
    holds[:, 0, :, 6] = WORLD.cube.size                                # left keeps its grip
    assert BY_BASE(s, holds).terms["engage"].tolist() == [0.0, 0.0]
    assert (BY_BASE(s, lets_go).terms["engage"] > 1.0).all()           # released: right is pulled again


def test_terms_sum_to_the_total_for_a_batch():
    a = 0.2 * torch.randn(32, 2, 16, 7, generator=torch.Generator().manual_seed(0))
    for cost in (JOINT, BY_EE, BY_BASE, INDEP):
        v = cost(state(), a)
        assert v.total.shape == (32,) and torch.isfinite(v.total).all() and (v.total >= 0).all()
        assert torch.allclose(sum(v.terms.values()), v.total)


def test_goal_only_cost_of_codi_simple_is_the_goal_term_alone():
    """Arms 20 cm apart (a collision) and far from the cube (no engagement): CoDi-Simple's cost is the goal
    term only, the same as the full cost's."""
    s = state(left_ee=(-0.1, 0.0, 0.2), right_ee=(0.1, 0.0, 0.2), cube=(-0.35, 0.0, HALF))
    full, simple = JOINT(s, still()), HandoverCost(CFG.goal_only(), MODEL, WORLD.arm_names)(s, still())
    assert full.terms["collision"].item() > 0 and full.terms["engage"].item() > 0
    assert simple.terms["collision"].item() == simple.terms["engage"].item() == 0.0
    assert simple.total.item() == pytest.approx(full.terms["goal"].item()) and full.terms["goal"].item() > 0


def test_independent_cost_engages_both_arms_and_ignores_collisions():
    s = state(left_ee=(-0.1, 0.0, 0.2), right_ee=(0.1, 0.0, 0.2), cube=(-0.35, 0.0, HALF))
    v = INDEP(s, still())
    assert set(v.terms) == {"goal/left", "goal/right", "engage/left", "engage/right"}
    assert v.per_agent.shape == (1, 2)
    d_left, d_right = 0.35 - 0.1, 0.35 + 0.1            # horizontal distances; the ee are 17.5 cm up
    expect = [CFG.engage.weight * (((d ** 2 + (0.2 - HALF) ** 2) ** 0.5) - 0.20) for d in (d_left, d_right)]
    assert [v.terms["engage/left"].item(), v.terms["engage/right"].item()] == pytest.approx(expect, abs=1e-5)
    assert JOINT(s, still()).terms["collision"].item() > 0     # the same poses do collide in the joint cost


def test_independent_cost_of_an_arm_does_not_depend_on_the_other_arm():
    """Each arm's cost is predicted with only that arm acting (Sec. VII-C: drop inter-agent terms)."""
    s = state(right_ee=(0.01, 0.0, HALF), cube=(0.0, 0.0, HALF))
    a = still(2)
    a[1, 1, :, 6] = 0.0                                  # candidate 1: right grasps the cube ...
    a[1, 1, :, 0] = -0.3                                 # ... and carries it towards the goal (+x world)
    v = INDEP(s, a)
    assert v.per_agent[0, 0] == v.per_agent[1, 0]        # left's cost is unaffected by right's actions
    assert v.per_agent[1, 1] < v.per_agent[0, 1]         # right's own goal term improved
