"""Closed-loop evaluation of the single-arm base policy (does it show both skills of its data?).

The arm acts alone (the other stays parked), the shared policy drives it by receding horizon, the
cube starts within its reach. Per episode we record whether the arm went for the cube (approached
it at grasp height), grasped and lifted it, placed and released it, or yielded (never approached
and ended near home), whether any arm link touched the table, and every close of the gripper near
the cube: where the cube was relative to the tool, its yaw relative to the tool's, and whether that
close lifted it (the traces of missed grasps).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from codi_ros.core.coherence import coherence_gap
from codi_ros.core.kinematic_model import KinematicModelConfig
from codi_ros.core.realtime import LatencyEstimate, RealtimeConfig, predict_state
from codi_ros.evaluation import rollout
from codi_ros.frames import OBS_FIELDS, field_slice, observe
from codi_ros.sim.tasks import random_posture, random_yaw, sample_table_xy
from codi_ros.sim.world import TwoArmWorld

LIFT_HEIGHT = 0.07        # cube centre above this (table top at 0) while held = lifted
APPROACH_RADIUS = 0.04    # tool within this horizontal distance of the cube ...
APPROACH_HEIGHT = 0.08    # ... and below this height = the arm went for the cube
HOME_RADIUS = 0.08        # tool ends within this of its home position = at home
CLOSING_WIDTH = 0.075     # the measured gripper width falling through this = the gripper closes


class PolicySource:
    """Receding-horizon control of one arm by a diffusion policy.

    Each call samples ``candidates`` chunks in one batch and executes the one that best continues the
    previous chunk: the smallest squared distance (normalised units) between its first actions and the
    not yet executed rest of the previous chunk (backward coherence, as in bidirectional decoding,
    Liu et al. 2024). Independent samples at every replan can otherwise switch between modes of the
    data, e.g. the two grasp yaws 90 degrees apart, and never finish either. ``candidates=1``: plain sampling.

    With a :class:`~codi_ros.core.realtime.LatencyEstimate` (real-time timing) the controller is latency-aware
    as the CoDi planner is (``realtime.method: predict``): it commits to the d actions the arm executes while
    the chunk is sampled and samples the chunk for the state they lead to (the tool as the arm's executor
    predicts it, the cube by :func:`~codi_ros.core.realtime.predict_state` with ``kinematic``'s grasp rule).
    """

    def __init__(self, policy, arm: str, steps: int, method: str = "sde", seed: int = 0,
                 candidates: int = 1, latency: LatencyEstimate | None = None,
                 kinematic: KinematicModelConfig | None = None):
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        self.policy, self.arm, self.steps, self.method = policy, arm, steps, method
        self.candidates = candidates
        self.latency, self.kinematic = latency, kinematic or KinematicModelConfig()
        self.generator = torch.Generator().manual_seed(seed)
        self._previous: tuple[float, torch.Tensor] | None = None   # (start, the last executed chunk (H, A), raw)

    def plan(self, world: TwoArmWorld) -> rollout.Plan:
        tic = time.perf_counter()
        committed = rollout.commitments(world, self.latency.commit_steps() if self.latency is not None else 0)
        d = 0 if committed is None else len(committed[self.arm])
        if committed is None:
            obs = world.observation(self.arm)
        else:
            km, cfg = self.kinematic, world.cfg
            state = predict_state(rollout.world_state(world), committed, cfg, km.grasp_radius, km.hold_width_margin,
                                  rollout.predicted_tools(world, committed))
            obs = observe(state.arms[self.arm], state.cube, cfg.base_frame(self.arm))
        with torch.no_grad():
            chunks = self.policy.sample(torch.as_tensor(obs)[None], n=self.candidates, steps=self.steps,
                                        generator=self.generator, method=self.method)[0]   # (candidates, H, A)
        start = world.time
        previous, offset = None, 0
        if self._previous is not None:   # steps of the previous chunk run when this one's first new action is due
            previous, offset = self._previous[1], round((start - self._previous[0]) / world.cfg.control.dt) + d
        chosen = chunks[coherent_choice(self.policy, chunks, previous, offset)]
        if d:
            chosen = torch.cat([torch.as_tensor(committed[self.arm], dtype=chosen.dtype), chosen[:len(chosen) - d]])
        self._previous = (start, chosen)
        if self.latency is not None:
            self.latency.update(time.perf_counter() - tic)
        return rollout.Plan({self.arm: chosen.numpy()}, committed=d)


def coherent_choice(policy, chunks: torch.Tensor, previous: torch.Tensor | None, executed: int) -> int:
    """Index of the candidate chunk (n, H, A) closest to the rest of ``previous`` (H, A) after its first
    ``executed`` actions."""
    return int(coherence_gap(policy.normalize_actions, chunks, previous, executed).argmin())


@dataclass
class SkillTracker:
    arm: str
    approached: bool = False
    lifted: bool = False
    released_after_lift: bool = False
    table_contact: bool = False
    closes: list[dict] = field(default_factory=list)   # where the tool was when the gripper closed near the cube
    _open: bool = True

    def __call__(self, world: TwoArmWorld) -> None:
        st, cube = world.arm_state(self.arm), world.cube_state()
        if self._open and st.gripper_width < CLOSING_WIDTH:
            self._record_close(world)
        self._open = st.gripper_width >= CLOSING_WIDTH
        near = np.linalg.norm(st.ee_pos[:2] - cube.pos[:2]) < APPROACH_RADIUS and st.ee_pos[2] < APPROACH_HEIGHT
        self.approached |= bool(near)
        held = world.holding(self.arm)
        lifting = bool(held and cube.pos[2] > LIFT_HEIGHT)
        self.lifted |= lifting
        on_table = cube.pos[2] < world.cfg.cube.size / 2 + 0.005
        self.released_after_lift |= bool(self.lifted and on_table and not held and st.gripper_width > 0.06)
        self.table_contact |= world.arm_table_contacts() > 0
        if lifting and self.closes and self.closes[-1]["lifted"] is None:
            self.closes[-1]["lifted"] = True

    def _record_close(self, world: TwoArmWorld) -> None:
        """The cube relative to the tool (arm base frame, m) and the cube's yaw relative to the tool's
        (degrees, modulo the cube's 90 degree symmetry) as the gripper starts to close within 5 cm."""
        obs = world.observation(self.arm)
        rel = obs[field_slice(OBS_FIELDS, "cube_rel")]
        if np.linalg.norm(rel[:2]) > 0.05:
            return
        c, s = obs[field_slice(OBS_FIELDS, "cube_yaw_rel4")]
        if self.closes and self.closes[-1]["lifted"] is None:
            self.closes[-1]["lifted"] = False                # closed again without lifting in between
        self.closes.append({"time": round(world.time, 2), "cube_rel": [round(float(x), 4) for x in rel],
                            "yaw_error_deg": round(float(np.degrees(np.arctan2(s, c) / 4)), 1), "lifted": None})


def episode_controller(policy, world: TwoArmWorld, arm: str, seed: int, index: int, sample_steps: int, method: str,
                       candidates: int, timing: rollout.Timing, realtime: RealtimeConfig | None = None,
                       kinematic: KinematicModelConfig | None = None) -> PolicySource:
    """Episode ``index`` of ``seed``'s controller: its own sampling seed, latency-aware under real-time
    ``timing`` (``realtime``: planner.yaml's section, default its defaults; ``commit: false``: naive)."""
    latency = (None if timing.mode == "paused" else
               LatencyEstimate(rt := realtime or RealtimeConfig(), world.cfg.control.dt, fixed=timing.latency,
                               delivery_margin=rt.delivery_margin))
    return PolicySource(policy, arm, sample_steps, method=method, seed=seed * 100_003 + index,
                            candidates=candidates, latency=latency, kinematic=kinematic)


def evaluate_single_arm(policy, world: TwoArmWorld, episodes: int, seed: int, arms: tuple[str, ...],
                        sample_steps: int, seconds: float, method: str = "heun", progress: bool = True,
                        candidates: int = 1, timing: rollout.Timing = rollout.PAUSED,
                        realtime: RealtimeConfig | None = None, kinematic: KinematicModelConfig | None = None) -> dict:
    """Run ``episodes`` seeded episodes, alternating over ``arms``; return per-episode and aggregate facts.
    ``realtime`` (planner.yaml's, default its defaults) and ``kinematic`` (cost.yaml's grasp rule) make the
    controller latency-aware under real-time ``timing`` (``realtime.commit: false``: naive)."""
    from tqdm import tqdm

    cfg = world.cfg
    rows, latencies, delays = [], [], []
    for i in tqdm(range(episodes), desc="single-arm eval", unit="ep", disable=not progress):
        arm = arms[i % len(arms)]
        rng = np.random.default_rng([seed, i])
        cube = sample_table_xy(rng, cfg, reachable_by=(arm,))
        world.reset(cube_xy=cube, cube_yaw=random_yaw(rng), arm_qpos={arm: random_posture(rng, cfg)})
        tracker = SkillTracker(arm)
        controller = episode_controller(policy, world, arm, seed, i, sample_steps, method, candidates, timing,
                                        realtime, kinematic)
        loop = rollout.run_closed_loop(world, controller, seconds, on_step=tracker, timing=timing)
        latencies += loop.plan_latencies
        delays += loop.delays
        home = np.linalg.norm(world.arm_state(arm).ee_pos - world.home_tcp[arm][0]) < HOME_RADIUS
        rows.append({"episode": i, "arm": arm, "cube_start": list(cube), "approached": tracker.approached,
                     "lifted": tracker.lifted, "placed": tracker.released_after_lift,
                     "yielded": bool(not tracker.approached and home), "table_contact": tracker.table_contact,
                     "plans_dropped": loop.dropped,
                     "closes": [{**c, "lifted": bool(c["lifted"])} for c in tracker.closes]})
    return {"timing": {"mode": timing.mode, "latency": timing.latency,
                       "delay_steps": rollout.delay_histogram(delays)},   # control steps the world ran on per plan
            "episodes": rows, "aggregate": aggregate(rows), "plan_latency": rollout.latency_summary(latencies)}


def aggregate(rows: list[dict]) -> dict:
    def frac(key: str, subset: list[dict] | None = None) -> float | None:
        subset = rows if subset is None else subset
        return float(np.mean([r[key] for r in subset])) if subset else None

    picks = [r for r in rows if r["approached"]]
    out = {"episodes": len(rows), "pick_chosen": frac("approached"), "grasp_and_lift": frac("lifted"),
           "placed_and_released": frac("placed"), "yield": frac("yielded"), "table_contact": frac("table_contact"),
           "grasp_and_lift_when_picking": frac("lifted", picks)}
    for arm in sorted({r["arm"] for r in rows}):
        sub = [r for r in rows if r["arm"] == arm]
        out[f"by_arm/{arm}"] = {"episodes": len(sub), "pick_chosen": frac("approached", sub),
                                "grasp_and_lift": frac("lifted", sub), "yield": frac("yielded", sub),
                                "grasp_and_lift_when_picking": frac("lifted", [r for r in sub if r["approached"]])}
    return out
