"""The /codi/plan and /codi/evaluate_cost services on message dicts: validation, evaluation, responses.

A malformed request raises :class:`RequestError` whose message names the field (e.g.
``state.arms[1].ee_pose: NaN or inf``); the nodes answer it with ``success = false`` and keep serving.
:func:`cost_request` builds the EvaluateCost request that :func:`parse_cost_request` reads (the client side,
see remote_cost.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from codi_ros import bounds
from codi_ros.config import WorldConfig
from codi_ros.control.executor import Chunk
from codi_ros.core.planner import PlanOverrides, PlanResult
from codi_ros.frames import ACT_DIM, CubeState, WorldState
from codi_ros.ros.messages import (
    Msg,
    arm_state_msg,
    chunk_msg,
    parse_arm_state,
    parse_pose,
    parse_vec3,
    pose_msg,
    vec3_msg,
)

MAX_CANDIDATES = 4096
CANDIDATE_AXES = ("candidate", "arm", "step", "action")   # EvaluateCost.candidates, row-major
# (state, candidates (M, A, H, 7)) -> (costs (M,), {term: (M,)})
CostEvaluator = Callable[[WorldState, np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]]


class RequestError(ValueError):
    """A malformed service request; the message names the offending field."""


def _finite(field: str, *values) -> None:
    if not all(np.all(np.isfinite(np.asarray(v, dtype=float))) for v in values):
        raise RequestError(f"{field}: NaN or inf")


def parse_world_state(msg: Msg, world: WorldConfig, field: str = "state") -> WorldState:
    """A codi_msgs/WorldState dict with every configured arm -> frames.WorldState."""
    arms = list(msg.get("arms", []))
    names = world.arm_names
    if len(arms) != len(names):
        raise RequestError(f"{field}.arms: expected {len(names)} arm states ({', '.join(names)}), got {len(arms)}")
    states, stamps = {}, []
    for i, a in enumerate(arms):
        f = f"{field}.arms[{i}]"
        name, st, stamp = parse_arm_state(a)
        if name not in names:
            raise RequestError(f"{f}.arm: unknown arm {name!r}; configured arms: {', '.join(names)}")
        if name in states:
            raise RequestError(f"{f}.arm: arm {name!r} given twice")
        frame = a.get("header", {}).get("frame_id", "")
        if frame not in ("", "world"):
            raise RequestError(f"{f}.header.frame_id: arm states are in 'world', got {frame!r}")
        _finite(f"{f}.ee_pose", st.ee_pos, st.ee_rot)
        _finite(f"{f}.ee_twist", st.ee_linvel, st.ee_angvel)
        _finite(f"{f}.gripper_width", st.gripper_width)
        states[name] = st
        stamps.append(stamp)
    cube_pos, cube_q = parse_pose(msg.get("cube_pose", {}))
    _finite(f"{field}.cube_pose", cube_pos, cube_q)
    if np.linalg.norm(cube_q) < 1e-9:
        raise RequestError(f"{field}.cube_pose.orientation: zero quaternion")
    goal = parse_vec3(msg.get("goal", {}))
    _finite(f"{field}.goal", goal)
    return WorldState(arms={n: states[n] for n in names}, cube=CubeState(cube_pos, cube_q / np.linalg.norm(cube_q)),
                      goal=goal, stamp=min(stamps))


def world_state_msg(state: WorldState) -> dict:
    """frames.WorldState -> a codi_msgs/WorldState dict (every arm stamped with ``state.stamp``)."""
    return {"arms": [arm_state_msg(n, a, state.stamp) for n, a in state.arms.items()],
            "cube_pose": pose_msg(state.cube.pos, state.cube.quat), "goal": vec3_msg(state.goal)}


def _override(req: Msg, name: str) -> float | None:
    """A /codi/plan override within its bounds (codi_ros/bounds.py), or None for 0 (the configured value)."""
    v = req.get(name, 0)
    if v == 0:
        return None
    try:
        return bounds.check(name, v)
    except bounds.BoundsError as e:
        raise RequestError(f"{e} (0 = configured value)") from None


def parse_plan_request(req: Msg, world: WorldConfig) -> tuple[WorldState | None, PlanOverrides]:
    """(explicit state or None = use the latest observed one, overrides). 0 / empty means "not set"."""
    state_msg = req.get("state", {})
    state = None
    if state_msg.get("arms"):
        state = parse_world_state(state_msg, world)
    elif np.any(parse_vec3(state_msg.get("goal", {}))) or np.any(parse_pose(state_msg.get("cube_pose", {}))[0]):
        raise RequestError("state.arms: empty, but state.cube_pose or state.goal is set; give the whole state "
                           "(every arm) or leave it empty to plan from the latest observed state")
    overrides = PlanOverrides(num_samples=_override(req, "num_samples"), temperature=_override(req, "temperature"),
                              steps=_override(req, "steps"), seed=_override(req, "seed"))
    return state, overrides


def parse_cost_request(req: Msg, world: WorldConfig) -> tuple[WorldState, np.ndarray]:
    """(state, candidates (M, A, H, 7)) of an EvaluateCost request."""
    state = parse_world_state(req.get("state", {}), world)
    arr = req.get("candidates", {})
    layout = arr.get("layout", {})
    dims = [int(d.get("size", 0)) for d in layout.get("dim", [])]
    if len(dims) != 4:
        raise RequestError(f"candidates.layout.dim: expected 4 sizes (candidate, arm, step, action), got {dims}")
    expected = {1: ("arms", len(world.arm_names)), 2: ("steps per chunk", world.horizon.prediction),
                3: ("action size", ACT_DIM)}
    for i, (what, n) in expected.items():
        if dims[i] != n:
            raise RequestError(f"candidates.layout.dim[{i}]: {what} must be {n}, got {dims[i]}")
    if not 1 <= dims[0] <= MAX_CANDIDATES:
        raise RequestError(f"candidates.layout.dim[0]: between 1 and {MAX_CANDIDATES} candidates, got {dims[0]}")
    data = np.asarray(arr.get("data", []), dtype=float)[int(layout.get("data_offset", 0)):]
    if data.size != math.prod(dims):
        raise RequestError(f"candidates.data: {data.size} values after data_offset, the layout {dims} needs "
                           f"{math.prod(dims)}")
    _finite("candidates.data", data)
    return state, data.reshape(dims)


def cost_request(state: WorldState, candidates: np.ndarray) -> dict:
    """An EvaluateCost request dict for candidates (M, A, H, 7), arms in config order."""
    c = np.asarray(candidates, dtype=np.float64)
    dims = [{"label": label, "size": n, "stride": math.prod(c.shape[i:])}
            for i, (label, n) in enumerate(zip(CANDIDATE_AXES, c.shape, strict=True))]
    return {"state": world_state_msg(state),
            "candidates": {"layout": {"dim": dims, "data_offset": 0}, "data": c.ravel().tolist()}}


def failure(message: str) -> dict:
    return {"success": False, "message": message}


def plan_response(result: PlanResult, world: WorldConfig, start: float) -> dict:
    """A successful Plan response: one chunk per arm, starting at ``start``, in config order."""
    chunks = [chunk_msg(arm, Chunk(start, world.control.dt, result.chunks[arm], result.committed))
              for arm in world.arm_names]
    return {"success": True,
            "message": f"planned in {result.latency_s:.3f} s, predicted cost {result.cost:.4g}",
            "chunks": chunks, "cost": float(result.cost),
            "cost_terms": [{"name": k, "values": [float(v)]} for k, v in result.cost_terms.items()],
            "latency": float(result.latency_s)}


class CostService:
    """/codi/evaluate_cost: validate, evaluate the configured cost on every candidate, answer."""

    def __init__(self, world: WorldConfig, evaluate: CostEvaluator):
        self.world, self.evaluate = world, evaluate

    def handle(self, req: Msg) -> dict:
        try:
            state, candidates = parse_cost_request(req, self.world)
        except RequestError as e:
            return failure(str(e))
        t0 = time.perf_counter()
        costs, terms = self.evaluate(state, candidates)
        return {"success": True,
                "message": f"{len(costs)} candidates in {time.perf_counter() - t0:.3f} s",
                "costs": [float(c) for c in costs],
                "terms": [{"name": k, "values": [float(x) for x in v]} for k, v in terms.items()]}


def kinematic_cost_evaluator(world: WorldConfig) -> CostEvaluator:
    """The configured handover cost (config/cost.yaml) on the batched kinematic cost simulator."""
    import torch

    from codi_ros.core.cost import HandoverCost, load_cost_config
    from codi_ros.core.kinematic_model import KinematicModel, SimState

    config = load_cost_config()
    cost = HandoverCost(config, KinematicModel(world, config.kinematic_model), world.arm_names)

    def evaluate(state: WorldState, candidates: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        with torch.no_grad():
            value = cost(SimState.from_world(state, world), torch.as_tensor(candidates, dtype=torch.float32))
        return value.total.double().numpy(), {k: v.double().numpy() for k, v in value.terms.items()}

    return evaluate
