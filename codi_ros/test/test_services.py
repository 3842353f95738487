"""/codi/plan and /codi/evaluate_cost: request validation and answers (no rclpy)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from fakes import GaussianPolicy, small_planner_config
from logic_fakes import WORLD, H, candidates_msg, state_msg

from codi_ros.core.planner import Planner, PlanOverrides
from codi_ros.ros.coordinator import Coordinator
from codi_ros.ros.services import (
    CostService,
    RequestError,
    kinematic_cost_evaluator,
    parse_cost_request,
    parse_plan_request,
)


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
