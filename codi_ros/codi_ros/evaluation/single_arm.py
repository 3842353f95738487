"""Closed-loop evaluation of the single-arm base policy (does it show both skills of its data?).

The arm acts alone (the other stays parked), the shared policy drives it by receding horizon, the
cube starts within its reach. Per episode we record whether the arm went for the cube (approached
it at grasp height), grasped and lifted it, placed and released it, or yielded (never approached
and ended near home), and whether any arm link touched the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from codi_ros.core.coherence import coherence_gap
from codi_ros.evaluation.rollout import PAUSED, Plan, Timing, latency_summary, run_closed_loop
from codi_ros.sim.tasks import random_posture, random_yaw, sample_table_xy
from codi_ros.sim.world import TwoArmWorld

LIFT_HEIGHT = 0.07        # cube centre above this (table top at 0) while held = lifted
APPROACH_RADIUS = 0.04    # tool within this horizontal distance of the cube ...
APPROACH_HEIGHT = 0.08    # ... and below this height = the arm went for the cube
HOME_RADIUS = 0.08        # tool ends within this of its home position = at home


class PolicyController:
    """Receding-horizon control of one arm by a diffusion policy.

    ``execution``: actions of each chunk the loop executes before asking again (world.yaml horizon).
    Each call samples ``candidates`` chunks in one batch and executes the one that best continues the
    previous chunk: the smallest squared distance (normalised units) between its first actions and the
    not yet executed rest of the previous chunk (backward coherence, as in bidirectional decoding,
    Liu et al. 2024). Independent samples at every replan can otherwise switch between modes of the
    data, e.g. the two grasp yaws 90 degrees apart, and never finish either. ``candidates=1``: plain sampling.
    """

    def __init__(self, policy, arm: str, steps: int, execution: int, method: str = "sde", seed: int = 0,
                 candidates: int = 1):
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        self.policy, self.arm, self.steps, self.method = policy, arm, steps, method
        self.candidates, self.execution = candidates, execution
        self.generator = torch.Generator().manual_seed(seed)
        self._previous: torch.Tensor | None = None   # the last executed chunk (H, A), raw units

    def plan(self, world: TwoArmWorld) -> Plan:
        obs = torch.as_tensor(world.observation(self.arm))[None]
        with torch.no_grad():
            chunks = self.policy.sample(obs, n=self.candidates, steps=self.steps, generator=self.generator,
                                        method=self.method)[0]                       # (candidates, H, A)
        self._previous = chunks[coherent_choice(self.policy, chunks, self._previous, self.execution)]
        return Plan({self.arm: self._previous.numpy()})


def coherent_choice(policy, chunks: torch.Tensor, previous: torch.Tensor | None, execution: int) -> int:
    """Index of the candidate chunk (n, H, A) closest to the unexecuted rest of ``previous`` (H, A)."""
    return int(coherence_gap(policy.normalize_actions, chunks, previous, execution).argmin())


@dataclass
class SkillTracker:
    arm: str
    approached: bool = False
    lifted: bool = False
    released_after_lift: bool = False
    table_contact: bool = False

    def __call__(self, world: TwoArmWorld) -> None:
        st, cube = world.arm_state(self.arm), world.cube_state()
        near = np.linalg.norm(st.ee_pos[:2] - cube.pos[:2]) < APPROACH_RADIUS and st.ee_pos[2] < APPROACH_HEIGHT
        self.approached |= bool(near)
        held = world.holding(self.arm)
        self.lifted |= bool(held and cube.pos[2] > LIFT_HEIGHT)
        on_table = cube.pos[2] < world.cfg.cube.size / 2 + 0.005
        self.released_after_lift |= bool(self.lifted and on_table and not held and st.gripper_width > 0.06)
        self.table_contact |= world.arm_table_contacts() > 0


def evaluate_single_arm(policy, world: TwoArmWorld, episodes: int, seed: int, arms: tuple[str, ...],
                        sample_steps: int, seconds: float, method: str = "heun", progress: bool = True,
                        candidates: int = 1, timing: Timing = PAUSED) -> dict:
    """Run ``episodes`` seeded episodes, alternating over ``arms``; return per-episode and aggregate facts."""
    from tqdm import tqdm

    cfg = world.cfg
    rows, latencies = [], []
    for i in tqdm(range(episodes), desc="single-arm eval", unit="ep", disable=not progress):
        arm = arms[i % len(arms)]
        rng = np.random.default_rng([seed, i])
        cube = sample_table_xy(rng, cfg, reachable_by=(arm,))
        world.reset(cube_xy=cube, cube_yaw=random_yaw(rng), arm_qpos={arm: random_posture(rng, cfg)})
        tracker = SkillTracker(arm)
        controller = PolicyController(policy, arm, sample_steps, cfg.horizon.execution, method=method,
                                      seed=seed * 100_003 + i, candidates=candidates)
        loop = run_closed_loop(world, controller, seconds, on_step=tracker, timing=timing)
        latencies += loop.plan_latencies
        home = np.linalg.norm(world.arm_state(arm).ee_pos - world.home_tcp[arm][0]) < HOME_RADIUS
        rows.append({"episode": i, "arm": arm, "cube_start": list(cube), "approached": tracker.approached,
                     "lifted": tracker.lifted, "placed": tracker.released_after_lift,
                     "yielded": bool(not tracker.approached and home), "table_contact": tracker.table_contact})
    return {"episodes": rows, "aggregate": aggregate(rows), "plan_latency": latency_summary(latencies)}


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
