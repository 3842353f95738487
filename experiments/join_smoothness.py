"""Are chunk joins smooth? Joint velocity steps, acceleration and jerk at 1 kHz, at joins and inside chunks.

    python experiments/join_smoothness.py [--episodes 5] [--latency 0.3] [--seed 0]
                                          [--out experiments/results/join_smoothness.json]

Runs CoDi episodes in real time with a fixed injected latency, once with the latency-aware planner
and once naive, records every joint velocity command of both arms' executors (100 Hz) and reports,
by codi_ros.control.smoothness (linear interpolation at the FR3's 1 kHz), the largest velocity step,
acceleration and jerk in the control period after each chunk took over (joins) and everywhere else
(inside chunks), beside the FR3 limits (10 rad/s^2, 5000 rad/s^3).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from codi_ros.config import load_world_config
from codi_ros.control.smoothness import joint_profile, summarize_profile
from codi_ros.core.cost import load_cost_config
from codi_ros.core.planner import Planner, load_planner_config
from codi_ros.core.policy import load_policy
from codi_ros.core.realtime import LatencyEstimate
from codi_ros.evaluation.handover import EPISODE_SEED_STRIDE, PlannerSource, run_handover_episode
from codi_ros.evaluation.rollout import Timing
from codi_ros.sim.tasks import HANDOVER
from codi_ros.sim.world import TwoArmWorld
from codi_ros.version import code_version, machine_description

RESULTS = Path(__file__).resolve().parent / "results" / "join_smoothness.json"
FR3_LIMITS = {"acceleration": 10.0, "jerk": 5000.0}   # rad/s^2, rad/s^3 per joint (FR3 datasheet)


def run(commit: bool, args: argparse.Namespace) -> dict:
    cfg = load_world_config()
    config = load_planner_config()
    config = replace(config, realtime=replace(config.realtime, commit=commit))
    planner = Planner(load_policy(), cfg, config, load_cost_config())
    world = TwoArmWorld(cfg)
    timing = Timing("realtime", args.latency)
    h = 1.0 / cfg.control.ik_rate_hz
    profiles, joins, successes = [], [], 0
    for i in range(args.episodes):
        HANDOVER.reset(world, args.seed, i)
        planner.reset(seed=config.seed + EPISODE_SEED_STRIDE * i)
        for executor in world.executors.values():
            executor.trace = []
        controller = PlannerSource(planner, latency=LatencyEstimate(config.realtime, cfg.control.dt, args.latency,
                                                                                  delivery_margin=config.realtime.delivery_margin))
        summary, _ = run_handover_episode(world, controller, args.seconds, timing=timing)
        successes += summary["success"]
        for executor in world.executors.values():
            t, qdot, switched = (np.asarray(x) for x in zip(*executor.trace, strict=True))
            profiles.append(joint_profile(qdot, h))
            joins.append((t - switched) < cfg.control.dt - 1e-9)
            executor.trace = None
    merged = {k: np.concatenate([p[k] for p in profiles]) for k in profiles[0]}
    return {"planner": "latency_aware" if commit else "naive", "successes": successes,
            "commands": int(sum(len(j) for j in joins)), "join_commands": int(sum(j.sum() for j in joins)),
            **summarize_profile(merged, np.concatenate(joins))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=5, help="episodes per planner (default %(default)s)")
    p.add_argument("--latency", type=float, default=0.3, help="injected latency per plan, s (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="episode seed (default %(default)s)")
    p.add_argument("--seconds", type=float, default=30.0, help="episode length (default %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results JSON (default %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = [run(commit, args) for commit in (True, False)]
    result = {"experiment": "join_smoothness", "episodes": args.episodes, "latency": args.latency, "seed": args.seed,
              "servo_hz": 1000.0, "fr3_limits": FR3_LIMITS, "runs": rows, "code_version": code_version(),
              "machine": machine_description()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for r in rows:
        print(f"{r['planner']:14s} " + "  ".join(
            f"{k}: joins {r[k]['max_at_joins']:.3g} / inside {r[k]['max_inside_chunks']:.3g}"
            for k in ("velocity_step", "acceleration", "jerk")))


if __name__ == "__main__":
    main()
