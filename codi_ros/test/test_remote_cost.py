"""The planner's cost over /codi/evaluate_cost (RemoteCost, coordinator_node's cost_backend: service):
the same costs and plans as in-process, and every bad answer a clear failed plan, never NaN or a crash."""

from __future__ import annotations

import math
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import torch
from fakes import small_planner_config

from codi_ros.config import ConfigError, load_world_config
from codi_ros.core.cost import HandoverCost, load_cost_config
from codi_ros.core.guidance import GuidanceConfig
from codi_ros.core.kinematic_model import KinematicModel, SimState
from codi_ros.core.planner import Planner, PlanOverrides
from codi_ros.core.policy import load_policy
from codi_ros.frames import ArmState, CubeState, WorldState, rot_z
from codi_ros.perception.fusion import Detection
from codi_ros.ros.coordinator import Coordinator
from codi_ros.ros.messages import arm_state_msg, detection_msg
from codi_ros.ros.remote_cost import CostServiceError, RemoteCost, wait_for_answer
from codi_ros.ros.services import (
    CostService,
    cost_request,
    kinematic_cost_evaluator,
    parse_cost_request,
    world_state_msg,
)

pytestmark = pytest.mark.usefixtures("one_thread")
WORLD = load_world_config()
H = WORLD.horizon.prediction
FAST = small_planner_config(steps=4, num_samples=16)
SERVICE = CostService(WORLD, kinematic_cost_evaluator(WORLD))
HALF = 0.5 * WORLD.cube.size
M = FAST.guidance.num_samples                                  # candidates per cost call in a guided step


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def scene() -> WorldState:
    """Each hand 0.45 m in front of its base, turned and moving a little; cube on the left half."""
    arms = {}
    for i, name in enumerate(WORLD.arm_names):
        frame = WORLD.base_frame(name)
        arms[name] = ArmState(ee_pos=frame.point_to_world(np.array([0.45, 0.05 * i, 0.2])),
                              ee_rot=rot_z(0.3 + i) @ np.diag([1.0, -1.0, -1.0]),
                              ee_linvel=np.array([0.02, -0.01, 0.0]), ee_angvel=np.array([0.0, 0.0, 0.1]),
                              gripper_width=0.08 - 0.01 * i)
    cube = CubeState(pos=np.array([-0.3, 0.1, HALF]), quat=np.array([np.cos(0.2), 0.0, 0.0, np.sin(0.2)]))
    return WorldState(arms=arms, cube=cube, goal=np.array([0.35, 0.0, HALF]), stamp=12.5)


def candidates(k: int, seed: int = 0) -> torch.Tensor:
    """k random raw joint chunks (k, arms, H, 7): twists up to ~0.3, gripper widths 0-0.08 m."""
    g = torch.Generator().manual_seed(seed)
    c = 0.3 * torch.randn(k, len(WORLD.arm_names), H, 7, generator=g)
    c[..., 6] = 0.08 * torch.rand(k, len(WORLD.arm_names), H, generator=g)
    return c


class Service:
    """In-memory /codi/evaluate_cost (CostService.handle on the request dict); ``fault`` spoils its answers."""

    def __init__(self, fault=None):
        self.fault, self.calls = fault, 0

    def __call__(self, request: dict, timeout_s: float) -> dict:
        self.calls += 1
        return SERVICE.handle(request) if self.fault is None else self.fault(request, timeout_s)


# ---------------------------------------------------------------------------------------------- round trip

def test_cost_request_is_what_the_service_parses():
    state, c = scene(), candidates(5).double().numpy()
    parsed, back = parse_cost_request(cost_request(state, c), WORLD)
    np.testing.assert_array_equal(back, c)
    for name in WORLD.arm_names:
        a, b = state.arms[name], parsed.arms[name]
        for field in ("ee_pos", "ee_linvel", "ee_angvel", "gripper_width"):
            np.testing.assert_array_equal(getattr(b, field), getattr(a, field))
        np.testing.assert_allclose(b.ee_rot, a.ee_rot, atol=1e-12)
    np.testing.assert_allclose(parsed.cube.quat, state.cube.quat, atol=1e-12)
    np.testing.assert_array_equal(parsed.cube.pos, state.cube.pos)
    np.testing.assert_array_equal(parsed.goal, state.goal)
    assert parsed.stamp == state.stamp


def test_service_round_trip_reproduces_the_in_process_cost():
    config = load_cost_config()
    local = HandoverCost(config, KinematicModel(WORLD, config.kinematic_model), WORLD.arm_names)
    state, c = scene(), candidates(32)
    expected = local(SimState.from_world(state, WORLD), c)
    got = RemoteCost(Service())(state, c)
    assert expected.total.std() > 0.1                            # candidates that the cost tells apart
    assert got.total.dtype == c.dtype and got.total.shape == (32,)
    np.testing.assert_allclose(got.total, expected.total, rtol=1e-6, atol=1e-7)
    assert set(got.terms) == set(expected.terms)
    for k, v in expected.terms.items():
        np.testing.assert_allclose(got.terms[k], v, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("num_candidates", [1, 3])
def test_planner_with_the_service_cost_plans_what_the_in_process_one_plans(policy, num_candidates):
    config = replace(FAST, candidates=num_candidates)
    service = Service()
    local = Planner(policy, WORLD, config, load_cost_config())
    remote = Planner(policy, WORLD, config, load_cost_config(), cost=RemoteCost(service))
    a, b = (p.plan(scene(), PlanOverrides(seed=3)) for p in (local, remote))
    assert service.calls > FAST.steps                            # guided steps + the final ranking
    for name in WORLD.arm_names:
        assert b.chunks[name].shape == (H, 7) and np.isfinite(b.chunks[name]).all()
        np.testing.assert_allclose(b.chunks[name], a.chunks[name], atol=1e-5)
    assert b.cost == pytest.approx(a.cost, rel=1e-5, abs=1e-6)
    assert b.cost_terms == pytest.approx(a.cost_terms, rel=1e-5, abs=1e-6)


def test_injected_cost_rules(policy):
    with pytest.raises(ConfigError, match="codi-indep"):
        Planner(policy, WORLD, replace(FAST, method="codi-indep"), cost=RemoteCost(Service()))
    for timeout in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match="cost_service_timeout"):
            RemoteCost(Service(), timeout)
    reparameterized = replace(FAST, guidance=GuidanceConfig(num_samples=16, estimator="reparameterized"))
    with pytest.raises(CostServiceError, match="score_function"):
        Planner(policy, WORLD, reparameterized, cost=RemoteCost(Service())).plan(scene())


# ---------------------------------------------------------------------------------------------- bad answers

def answer_with(**changes):
    """A fault: the service's real answer with some fields replaced (callables get the real value)."""
    def fault(request, timeout_s):
        resp = SERVICE.handle(request)
        return resp | {k: v(resp[k]) if callable(v) else v for k, v in changes.items()}
    return fault


def never_answers(request, timeout_s):
    return wait_for_answer(Future(), timeout_s)


def absent(request, timeout_s):
    raise ConnectionError("not available (is cost_service_node running?)")


def nan_term(resp_terms):
    return [t | {"values": [math.nan] * len(t["values"])} if t["name"] == "goal" else t for t in resp_terms]


FAULTS = {
    "timeout": (never_answers, r"no answer within 0\.05 s"),
    "absent": (absent, "not available"),
    "success false": (lambda request, t: {"success": False, "message": "candidates.data: NaN or inf"},
                      "failed: candidates.data: NaN or inf"),
    "wrong length": (answer_with(costs=lambda c: c[:-1]), f"costs: {M - 1} values for {M} candidates"),
    "NaN cost": (answer_with(costs=lambda c: [math.nan, *c[1:]]), "costs: NaN or inf"),
    "NaN term": (answer_with(terms=nan_term), r"terms\['goal'\]: NaN or inf"),
    "garbage": (answer_with(costs="cheap"), "costs: not a list of numbers"),
    "not a response": (lambda request, t: None, "not an EvaluateCost response"),
    "unnamed term": (answer_with(terms=[{"values": [0.0] * M}]), r"terms\[0\] has no name"),
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_bad_cost_service_answers_fail_the_plan_naming_the_service(policy, fault):
    fault, message = fault
    service = Service(fault)
    coord = Coordinator(WORLD, Planner(policy, WORLD, FAST, cost=RemoteCost(service, timeout_s=0.05)))
    resp, publish = coord.handle_plan({"state": world_state_msg(scene()), "execute": True}, now=1.0)
    assert not resp["success"] and not publish
    assert re.match(r"cost service /codi/evaluate_cost", resp["message"]), resp["message"]
    assert re.search(message, resp["message"]), resp["message"]
    service.fault = None                                         # the service recovers: the node kept serving
    resp, publish = coord.handle_plan({"state": world_state_msg(scene()), "execute": True}, now=2.0)
    assert resp["success"] and len(publish) == len(WORLD.arm_names)
    assert all(np.isfinite([v for tw in c["twists"] for part in tw.values() for v in part.values()]).all()
               for c in publish)


def observe(coord: Coordinator, state: WorldState, t: float) -> None:
    for name, arm in state.arms.items():
        coord.on_arm_state(arm_state_msg(name, arm, t))
    coord.on_cube_detection(detection_msg(Detection("sim_truth", t, state.cube.pos, state.cube.quat)))
    coord.on_goal(state.goal)


def test_receding_horizon_stops_the_arms_when_the_cost_service_times_out(policy):
    service = Service()
    coord = Coordinator(WORLD, Planner(policy, WORLD, FAST, cost=RemoteCost(service, timeout_s=0.05)))
    coord.start()
    observe(coord, scene(), 1.0)
    assert len(coord.tick(1.0)) == len(WORLD.arm_names)             # moving on a plan
    service.fault = never_answers
    t = 1.0 + WORLD.horizon.execution * WORLD.control.dt               # the next replan
    observe(coord, scene(), t)
    stops = coord.tick(t)
    assert len(stops) == len(WORLD.arm_names) and all(len(c["twists"]) == 0 for c in stops)
    log = [text for _, text in coord.pop_log()]
    assert any("not planning: cost service /codi/evaluate_cost: no answer within" in text for text in log), log
    assert coord.tick(t + WORLD.control.dt) == []                     # held, not stopped again


# ---------------------------------------------------------------------------------------------- waiting

def test_wait_for_answer_returns_an_answer_from_another_thread_and_cancels_on_timeout():
    request = cost_request(scene(), candidates(2).double().numpy())
    with ThreadPoolExecutor(1) as pool:
        resp = wait_for_answer(pool.submit(SERVICE.handle, request), timeout_s=5.0)
    assert resp["success"] and len(resp["costs"]) == 2
    pending = Future()
    with pytest.raises(TimeoutError, match="no answer within"):
        wait_for_answer(pending, timeout_s=0.01)
    assert pending.cancelled()
