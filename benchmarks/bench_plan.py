"""Benchmark: latency of one full CoDi plan (guided joint sampling + cost simulation), CPU.

    python benchmarks/bench_plan.py                 # ~3-5 min on 2 cores
    python benchmarks/bench_plan.py --repeats 5     # quicker, noisier

The policy is an untrained DiffusionPolicy of the shipped architecture (same network size and
cost per call as the trained one). Measures p50/p95 of Planner.plan for 2 arms with M = 64 at the
configured step count and number of candidates (and with 1 candidate); where a plan's time goes
(``breakdown``: cProfile's cumulative time per plan in the score network, the cost simulator's
rollout, the cost terms, the guidance's posterior samples and weights, and the rest; the profiler's
own overhead inflates the Python-heavy parts); the configured plan for 1 to 6 arms with the same
per-arm settings, with the least-squares line through 2-6 arms and each point's deviation from it;
then, with 1 candidate, how latency grows with the number of denoising steps and of posterior
samples M, plus the per-step parts (one batched score call, one cost evaluation of M candidates)
and the optional modes (Jacobian covariance, Heun, CoDi-Indep).
Writes benchmarks/results/plan_latency.json with the machine description.
"""

from __future__ import annotations

import cProfile
import json
import math
import pstats
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
# Extra arms for the scaling sweep: on the long sides of the table, facing across it.
EXTRA_ARMS = (ArmConfig("front", (0.0, -0.7), math.pi / 2), ArmConfig("back", (0.0, 0.7), -math.pi / 2),
              ArmConfig("front_left", (-0.5, -0.7), math.pi / 2), ArmConfig("back_right", (0.5, 0.7), -math.pi / 2))


def with_arms(world: WorldConfig, n: int) -> WorldConfig:
    """The first n of right, left and the extra arms (right first: a one-arm world must reach the goal)."""
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


# (part, file, function) whose cumulative profile time is that part of a plan
PARTS = (("score network", "core/composition.py", "score"), ("cost simulator rollout", "core/kinematic_model.py",
         "rollout"), ("cost (terms and rollout)", "core/cost.py", "__call__"),
         ("posterior samples", "core/guidance.py", "sample"),
         ("guidance weights", "core/guidance.py", "score_function_guidance"))


def breakdown(planner: Planner, state: WorldState, repeats: int) -> dict[str, float]:
    """Milliseconds per plan in each of PARTS (cost terms = cost minus rollout), and in the rest."""
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(repeats):
        planner.plan(state)
    profile.disable()
    stats = pstats.Stats(profile).stats   # (file, line, function) -> (calls, primitive calls, own, cumulative, callers)

    def ms(file: str, function: str) -> float:
        return 1e3 * sum(v[3] for (f, _, fn), v in stats.items() if f.endswith(file) and fn == function) / repeats

    total = ms("core/planner.py", "plan")
    parts = {name: ms(file, fn) for name, file, fn in PARTS}
    parts["cost terms"] = parts.pop("cost (terms and rollout)") - parts["cost simulator rollout"]
    parts["rest (python, tensor glue, candidate choice)"] = total - sum(parts.values())
    return {"plan_ms_profiled": round(total, 2), **{k: round(v, 2) for k, v in parts.items()}}


def linear_fit(points: dict[int, dict[str, float]]) -> dict:
    """Least-squares p50 = a + b N through the points, and each point's relative deviation from it."""
    n = np.array(list(points), dtype=float)
    y = np.array([p["p50_ms"] for p in points.values()])
    b, a = np.polyfit(n, y, 1)
    dev = (y - (a + b * n)) / (a + b * n)
    return {"intercept_ms": round(float(a), 2), "ms_per_arm": round(float(b), 2),
            "relative_deviation": {int(k): round(float(d), 3) for k, d in zip(n, dev, strict=True)},
            "max_relative_deviation": round(float(np.abs(dev).max()), 3)}


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
    result["breakdown"] = breakdown(Planner(policy, world, configured, load_cost_config()), scene(world), r)
    print("breakdown", result["breakdown"], flush=True)
    result["configured_vs_arms"] = {n: plan_latency(policy, with_arms(world, n), configured, r) for n in range(1, 7)}
    result["configured_vs_arms_fit_2_to_6"] = linear_fit({n: result["configured_vs_arms"][n] for n in range(2, 7)})
    print("vs arms", result["configured_vs_arms"], result["configured_vs_arms_fit_2_to_6"], flush=True)

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
