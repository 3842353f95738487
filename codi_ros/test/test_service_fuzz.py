"""Fuzzed /codi/plan and /codi/evaluate_cost requests: an answer or a refusal naming the field."""

from __future__ import annotations

import copy
import math
import os

import numpy as np
from fakes import GaussianPolicy, small_planner_config
from logic_fakes import DT, WORLD, FakePlanner, H, candidates_msg, left_arm_interface, observe, state_msg

from codi_ros.control.executor import Chunk
from codi_ros.control.kinematics import ArmKinematics, arm_state_from_joints
from codi_ros.core.planner import Planner
from codi_ros.perception.fusion import Detection
from codi_ros.robot.fr3 import arm_joint_names
from codi_ros.ros.coordinator import Coordinator
from codi_ros.ros.messages import (
    arm_state_msg,
    chunk_msg,
    detection_msg,
    header,
    parse_chunk,
    trajectory_msg,
)
from codi_ros.ros.services import (
    CostService,
    kinematic_cost_evaluator,
)
from codi_ros.ros.sim_bridge import SimBridge
from codi_ros.sim.tasks import HANDOVER

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
    arm = left_arm_interface(ArmKinematics())
    arm.on_joint_positions(q, 1.0)
    trajectory_base = trajectory_msg(arm.on_chunk(chunk_base, now=1.0), arm_joint_names("left"))
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
        bridge.command_trajectory("left", _mutated({**trajectory_base, "header": header(clock[0], "")}, data),
                                   clock[0])
        bridge.advance(clock[0])
        assert np.all(np.isfinite(world.arms["left"].q_target))

    check()
