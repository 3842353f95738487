"""Benchmark: latency of one full CoDi plan (guided joint sampling + cost simulation), CPU.

    python benchmarks/bench_plan.py                 # ~2-4 min on 2 cores
    python benchmarks/bench_plan.py --repeats 5     # quicker, noisier

The policy is an untrained DiffusionPolicy of the shipped architecture (same network size and
cost per call as the trained one). Measures p50/p95 of Planner.plan for 2 arms with M = 64 at the
configured step count and number of candidates (and with 1 candidate), then, with 1 candidate,
how latency grows with the number of denoising steps, the number of posterior samples M, and the
number of arms, plus the per-step parts (one batched score call, one
cost evaluation of M candidates) and the optional modes (Jacobian covariance, Heun, CoDi-Indep).
Writes benchmarks/results/plan_latency.json with the machine description.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from timing import bench_args, sample_ms  # benchmarks/timing.py (scripts run from benchmarks/)

from codi_ros.config import ArmConfig, WorldConfig, load_world_config
from codi_ros.core.cost import load_cost_config
from codi_ros.core.guidance import GuidanceConfig
from codi_ros.core.kinematic_model import SimState
from codi_ros.core.planner import Planner, PlannerConfig, PlanOverrides, load_planner_config
from codi_ros.core.policy import DiffusionPolicy, PolicyConfig
from codi_ros.frames import OBS_DIM, ArmState, CubeState, WorldState
from codi_ros.version import code_version, machine_description

RESULTS = Path(__file__).resolve().parent / "results" / "plan_latency.json"
# Extra arms for the scaling sweep: on the long sides of the table, facing its centre.
EXTRA_ARMS = (ArmConfig("front", (0.0, -0.7), math.pi / 2), ArmConfig("back", (0.0, 0.7), -math.pi / 2))


def with_arms(world: WorldConfig, n: int) -> WorldConfig:
    """The first n of right, left, front, back (right first: a one-arm world must reach the goal)."""
    return replace(world, arms=(world.arm("right"), world.arm("left"), *EXTRA_ARMS)[:n])


def scene(world: WorldConfig) -> WorldState:
    """Cube on the left half, every arm's hand 0.45 m in front of its base, 20 cm up."""
    arms = {}
    for a in world.arms:
        frame = world.base_frame(a.name)
        arms[a.name] = ArmState(ee_pos=frame.point_to_world(np.array([0.45, 0.0, 0.2])), ee_rot=np.eye(3),
                                ee_linvel=np.zeros(3), ee_angvel=np.zeros(3), gripper_width=0.08)
    cube = CubeState(pos=np.array([-0.3, 0.1, 0.5 * world.cube.size]), quat=np.array([1.0, 0.0, 0.0, 0.0]))
    return WorldState(arms=arms, cube=cube, goal=np.array([0.35, 0.0, 0.5 * world.cube.size]))


def timed(fn, repeats: int, warmup: int = 2) -> dict[str, float]:
    ms = sample_ms(fn, repeats, warmup)
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "repeats": repeats}


def plan_latency(policy, world: WorldConfig, config: PlannerConfig, repeats: int, **overrides) -> dict[str, float]:
    planner = Planner(policy, world, config, load_cost_config())
    state = scene(world)
    return timed(lambda: planner.plan(state, PlanOverrides(**overrides)), repeats)


def main() -> None:
    args = bench_args(__doc__, 20, "timed plans per setting")
    world = load_world_config()
    base = load_planner_config()
    policy = DiffusionPolicy(PolicyConfig(horizon=world.horizon.prediction)).eval()
    r, steps = args.repeats, base.steps
    configured = replace(base, guidance=replace(base.guidance, num_samples=64))
    m64 = replace(configured, candidates=1)    # the sweeps below: one joint sample per plan

    result: dict = {"benchmark": "plan_latency", "arms": 2, "num_samples": 64, "steps": steps,
                    "candidates": base.candidates, "planner": plan_latency(policy, world, configured, r),
                    "planner_one_candidate": plan_latency(policy, world, m64, r)}
    print("plan, 2 arms, M=64, steps", steps, "candidates", base.candidates, result["planner"],
          "1 candidate", result["planner_one_candidate"], flush=True)

    # Per denoising step: one batched score call for all arms + one cost evaluation of M candidates.
    planner = Planner(policy, world, m64, load_cost_config())
    state = scene(world)
    obs = torch.zeros(1, 2, OBS_DIM)
    a_t, t = torch.randn(1, 2, world.horizon.prediction, 7), torch.ones(1)
    cands = torch.randn(64, 2, world.horizon.prediction, 7) * 0.1
    with torch.no_grad():
        result["per_step"] = {"score_call": timed(lambda: planner.product.score(a_t, t, obs), 10 * r),
                              "cost_M64": timed(lambda: planner.cost(SimState.from_world(state, world), cands), 10 * r)}
    print("per step", result["per_step"], flush=True)

    result["vs_steps"] = {s: plan_latency(policy, world, m64, r, steps=s) for s in (8, 16, 32, 64)}
    print("vs steps", result["vs_steps"], flush=True)
    result["vs_num_samples"] = {m: plan_latency(policy, world, m64, r, num_samples=m) for m in (16, 32, 64, 128, 256)}
    print("vs M", result["vs_num_samples"], flush=True)
    result["vs_arms"] = {n: plan_latency(policy, with_arms(world, n), m64, r) for n in (1, 2, 3, 4)}
    print("vs arms", result["vs_arms"], flush=True)
    result["modes"] = {
        "codi-indep": plan_latency(policy, world, replace(m64, method="codi-indep"), r),
        "heun": plan_latency(policy, world, replace(m64, sampler="heun"), r),
        "data_prior_covariance": plan_latency(
            policy, world, replace(m64, guidance=replace(m64.guidance, covariance="data_prior")), r),
        "jacobian_covariance": plan_latency(
            policy, world, replace(m64, guidance=replace(m64.guidance, covariance="jacobian")), max(3, r // 4)),
        "unguided": plan_latency(policy, world, replace(m64, guidance=GuidanceConfig(scale=0.0)), r),
    }
    print("modes", result["modes"], flush=True)
    result |= {"torch_threads": args.threads, "torch": torch.__version__, "machine": machine_description(),
               "code_version": code_version()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
