"""Latency-aware planning: what a plan started at time t0 must leave alone (beyond the paper).

While a plan is computed the arms keep executing the chunk they have: at 10 Hz a 0.3 s plan lets
d = ceil(latency / dt) = 3 actions run. A naive plan ignores this: it is computed for the state at
t0, its first actions are skipped on arrival, and the arms run the later, open-loop part of a chunk
planned for a state 0.3 s old. A latency-aware plan keeps those d committed actions as the first d
actions of its chunk (the chunk takes over at t0 + d dt, exactly at its first new action:
:mod:`codi_ros.control.executor`) and plans the rest in one of two ways (``realtime.method``):

- ``predict`` (planning from the predicted state, as VLASH, arXiv 2512.01031): :func:`predict_state`
  rolls the state forward through the committed actions (the tools as the arms' executors predict
  them, with the joint limits and the arm's tracking lag, when the caller has them; else first order
  like the kinematic cost model), and the policy and the guidance plan a whole chunk from there;
  its first H - d actions follow the prefix. The actions executed first are then the policy's
  first, best-informed ones. How good the prediction is decides the success (README: 35/50 first
  order, 48/50 with the executors, at 0.1 s).
- ``inpaint`` (real-time chunking, RTC; Black, Galliker, Levine 2025): the chunk is sampled for the
  state at t0 with the committed prefix frozen (:meth:`codi_ros.core.sampler.CoDiSampler.sample`'s
  ``prefix``): the score network sees the prefix and the guidance's cost simulator rolls it out
  before the new actions.

A plan with committed actions keeps the tools ``collision_margin`` farther apart than the paper's 30 cm
collision radius (Table I), which equals the safety distance the evaluation counts. Without it the arms came
closer than that distance in more episodes in real time than paused (76 against 63 of 200, four seeds); with
2 cm, 28 of 200 (README). The 2 cm is an empirical choice, not the prediction's error (the predicted tools are
0.4 / 1.9 mm off after 0.3 s, p50 / p95): what makes real time pass closer (the world moving on in actions an
older plan chose, the tracking lag) is not isolated. A paused plan, for the state measured, keeps 30 cm.

d must be chosen before planning: :class:`LatencyEstimate` takes the ``quantile`` (0.9) of the last
``window`` plans' latencies plus the world's ``executor.delivery_margin`` for the chunks' way to the
arms' commands, or a fixed
latency when one is injected. (The margin: in the simulated ROS graph on 2 cores, plans of about
95 ms got d = 1 whenever the quantile dipped under 100 ms, and the action nodes then dropped 42 of
them, each arriving 21-23 ms after its first new action was due.) A plan slower than its d is
dropped and the arms run on in the chunk they have; a d that covers every spike instead commits the
arms for longer to what an older plan decided (with the slowest of the last 20 plans as d, CoDi
handed over far less often on a loaded machine than with a typical d).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from codi_ros.config import ConfigError, WorldConfig
from codi_ros.frames import ArmState, CubeState, WorldState, mat_to_quat, quat_to_mat

METHODS = ("predict", "inpaint")


@dataclass(frozen=True)
class RealtimeConfig:
    """``planner.yaml`` ``realtime``."""

    commit: bool = True            # latency-aware: keep the actions that run while planning (False: naive)
    method: str = "predict"        # predict: plan from the state after them | inpaint: sample around them
    initial_latency: float = 0.3   # s assumed before any plan was measured
    delivery_margin: float = 0.02  # s for a chunk's way to the executor in process (codi eval, codi demo); the ROS
                                   # graph's coordinator uses world.yaml executor.delivery_margin instead
    window: int = 20               # recent plans whose latencies set d
    quantile: float = 0.9          # ... by this quantile of them
    max_commit: int = 8            # at most this many committed steps (d <= H - execution)
    collision_margin: float = 0.02  # m added to the collision radius of a plan made for a predicted state (d > 0)

    def __post_init__(self) -> None:
        for name in ("initial_latency", "delivery_margin", "collision_margin"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"planner.realtime.{name} must be finite and >= 0, got {value}")
        if not 0 < self.quantile <= 1:
            raise ConfigError(f"planner.realtime.quantile must be in (0, 1], got {self.quantile}")
        if self.window < 1 or self.max_commit < 0:
            raise ConfigError(f"planner.realtime: need window >= 1 and max_commit >= 0, got {self}")
        if self.method not in METHODS:
            raise ConfigError(f"planner.realtime.method must be one of {METHODS}, got {self.method!r}")


class LatencyEstimate:
    """How many control steps the next plan will take: ceil((recent latency quantile + delivery margin) / dt),
    or ceil(fixed / dt) for an injected latency (the whole delay, delivery included). ``delivery_margin``:
    the world's ``executor.delivery_margin``."""

    def __init__(self, config: RealtimeConfig, dt: float, fixed: float | None = None, delivery_margin: float = 0.0):
        self.config, self.dt, self.fixed, self.delivery_margin = config, dt, fixed, delivery_margin
        self._recent: deque[float] = deque(maxlen=config.window)

    def update(self, latency_s: float) -> None:
        if math.isfinite(latency_s) and latency_s >= 0:
            self._recent.append(latency_s)

    def seconds(self) -> float:
        if self.fixed is not None:
            return self.fixed
        if not self._recent:
            return self.config.initial_latency
        return float(np.quantile(np.asarray(self._recent), self.config.quantile))

    def steps(self) -> int:
        margin = 0.0 if self.fixed is not None else self.delivery_margin
        return steps_for(self.seconds() + margin, self.dt)

    def commit_steps(self) -> int:
        """d for the next plan: 0 for a naive planner."""
        return min(self.steps(), self.config.max_commit) if self.config.commit else 0


def steps_for(latency_s: float, dt: float) -> int:
    """Control steps that pass during ``latency_s`` (rounded up: an action starts on a step)."""
    return max(0, math.ceil(latency_s / dt - 1e-9))


def _exp(w: np.ndarray) -> np.ndarray:
    """Rotation matrix of the rotation vector w (Rodrigues)."""
    angle = float(np.linalg.norm(w))
    if angle < 1e-12:
        return np.eye(3)
    k = w / angle
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle) * K + (1.0 - np.cos(angle)) * K @ K


def _width(widths: np.ndarray, arm: ArmState, cube_pos: np.ndarray, world: WorldConfig, grasp_radius: float) -> float:
    """The finger distance when the chunk takes over, from the committed widths (d,): where the hand's goal
    for the last one takes it (:mod:`codi_ros.control.gripper`: below ``gripper.close_below`` closed, above
    ``open_above`` that width, in between as it is; the simulated hand gets there within a control period:
    time constant about 20 ms), held open at the cube size by a cube between the fingers (a tool within
    ``grasp_radius``).
    A grasp wished throughout with the fingers measured open stays open: either the hand reopened after a
    failed grasp and waits for an open command, or the grasp was commanded just before and its goal is on
    the way (then the policy sees an open hand at the cube and goes on closing); a policy shown a closed
    grasp there lifted before the fingers had closed on the cube."""
    g, commanded = world.gripper, float(widths[-1])
    wish = g.wish(commanded)
    if wish == "grasp":
        opened_before = any(g.wish(float(w)) == "open" for w in widths)
        width = float(arm.gripper_width) if arm.gripper_width > g.open_above and not opened_before else 0.0
    elif wish == "open":
        width = float(min(commanded, world.control.gripper_max_width))
    else:
        width = float(arm.gripper_width)
    if np.linalg.norm(np.asarray(arm.ee_pos) - cube_pos) < grasp_radius:
        width = max(width, world.cube.size)
    return width


def predict_state(state: WorldState, committed: dict[str, np.ndarray], world: WorldConfig,
                  grasp_radius: float, hold_width_margin: float,
                  arms: dict[str, ArmState] | None = None) -> WorldState:
    """The state after each arm runs its committed actions (d, 7), first order like the kinematic cost
    model: each tool moves and turns by its commanded twist (base frame, rotated to the world) for d
    control periods and then has that twist; a cube held at the start (a tool within ``grasp_radius``,
    fingers at most cube size + ``hold_width_margin`` apart) moves and turns with its holder until the
    holder commands a wider grip, and then rests on the table. Each gripper ends at its last committed
    width (see :func:`_width`).

    ``arms``: the tools' states at the end as the arms' executors predict them
    (:meth:`codi_ros.control.executor.ArmExecutor.predict`: with the joint limits' lag, which first order
    misses); they replace the first-order tools, and a cube still held at the end keeps its pose
    relative to its holder's predicted tool."""
    dt, size = world.control.dt, world.cube.size
    names = world.arm_names
    d = len(next(iter(committed.values())))
    pos = {n: np.asarray(state.arms[n].ee_pos, dtype=float).copy() for n in names}
    rot = {n: np.asarray(state.arms[n].ee_rot, dtype=float).copy() for n in names}
    twist = {n: (np.asarray(state.arms[n].ee_linvel, float), np.asarray(state.arms[n].ee_angvel, float))
             for n in names}
    cube_pos, cube_rot = np.asarray(state.cube.pos, dtype=float).copy(), quat_to_mat(state.cube.quat)
    dist = {n: np.linalg.norm(pos[n] - cube_pos) for n in names}
    holders = [n for n in names if dist[n] < grasp_radius and state.arms[n].gripper_width <= size + hold_width_margin]
    holder = min(holders, key=dist.get) if holders else None
    for k in range(d):
        for n in names:
            a, R = np.asarray(committed[n][k], dtype=float), world.base_frame(n).rotation
            v, w = R @ a[0:3], R @ a[3:6]
            if n == holder and a[6] > size + hold_width_margin:
                holder, cube_pos[2] = None, size / 2          # let go: the cube drops onto the table
            pos[n] = pos[n] + v * dt
            rot[n] = _exp(w * dt) @ rot[n]
            if n == holder:
                cube_pos, cube_rot = cube_pos + v * dt, _exp(w * dt) @ cube_rot
            twist[n] = (v, w)
    if arms is None:
        arms = {n: ArmState(pos[n], rot[n], twist[n][0], twist[n][1], state.arms[n].gripper_width) for n in names}
    elif holder is not None:   # rigidly with the predicted tool: the relative pose it had at the start
        start = state.arms[holder]
        rel = np.asarray(arms[holder].ee_rot) @ np.asarray(start.ee_rot).T
        cube_pos = arms[holder].ee_pos + rel @ (np.asarray(state.cube.pos, dtype=float) - start.ee_pos)
        cube_rot = rel @ quat_to_mat(state.cube.quat)
    arms = {n: replace(a, gripper_width=_width(np.asarray(committed[n])[:, 6], a, cube_pos, world, grasp_radius))
            for n, a in arms.items()}
    return WorldState(arms=arms, cube=CubeState(cube_pos, mat_to_quat(cube_rot)), goal=np.asarray(state.goal).copy(),
                      stamp=state.stamp + d * dt)
