"""``codi bench plan|policy|data``: how fast the shipped planner, policy and data generator are, each
timed beside a short closed-loop check of what it produces (a faster plan that hands over less often
is not faster).

    codi bench plan     # one CoDi plan of the shipped config, 2 arms: p50/p95/max, where its time goes,
                        # 1-6 arms with the fitted growth; check: real-time CoDi handovers
    codi bench policy   # one score call and one sample of the shipped policy; check: single-arm grasps
    codi bench data     # single-arm demonstrations per minute; check: the expert's success

Each writes ``benchmarks/results/<plan_latency|policy_speed|data_generation>.json`` (``--out``) with the
timings, the config, torch's thread count, the load average, the machine and the code version. Run
nothing else beside it: timings are only comparable as ratios within one run on one machine.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from codi_ros import bounds
from codi_ros.paths import writable_folder, write_atomically

RESULTS = Path("benchmarks/results")
DEFAULT_OUT = {"plan": "plan_latency.json", "policy": "policy_speed.json", "data": "data_generation.json"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=tuple(DEFAULT_OUT), help="plan: the CoDi planner | policy: the single-arm "
                                                            "policy | data: the demonstration generator")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per setting (default %(default)s)")
    p.add_argument("--check-episodes", type=int, default=10,
                   help="episodes of the closed-loop check (plan: real-time CoDi; policy: single-arm; "
                        "data: demonstrations generated and timed; default %(default)s; 0: none)")
    p.add_argument("--arms", type=int, nargs="*", default=[1, 2, 3, 4, 6],
                   help="plan: arm counts of the scaling sweep (default %(default)s; none: skip it)")
    p.add_argument("--model", default=None, help="single-arm policy checkpoint dir (default: models/single_arm)")
    p.add_argument("--planner-config", default=None, help="planner YAML (default: config/planner.yaml)")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default: benchmarks/results/<what>.json)")


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2) -> dict[str, float]:
    """p50 / p95 / max milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones (the summary
    ``codi eval`` gives its plan latencies)."""
    from codi_ros.evaluation.rollout import latency_summary

    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    return latency_summary(seconds)


# ------------------------------------------------------------------------------------------------- plan

# (part, file, function) whose cumulative profile time is that part of a plan
PARTS = (("score network", "core/composition.py", "score"),
         ("cost simulator rollout", "core/kinematic_model.py", "rollout"),
         ("cost (terms and rollout)", "core/cost.py", "__call__"),
         ("posterior samples", "core/guidance.py", "sample"),
         ("guidance weights", "core/guidance.py", "score_function_guidance"))


def with_arms(world, n: int):
    """The first n of right, left and extra arms on the long sides of the table, facing across it (right
    first: a one-arm world must reach the goal)."""
    from codi_ros.config import ArmConfig

    extra = (ArmConfig("front", (0.0, -0.7), math.pi / 2), ArmConfig("back", (0.0, 0.7), -math.pi / 2),
             ArmConfig("front_left", (-0.5, -0.7), math.pi / 2), ArmConfig("back_right", (0.5, 0.7), -math.pi / 2))
    if not 1 <= n <= 2 + len(extra):
        raise ValueError(f"--arms: 1 to {2 + len(extra)} arms, got {n}")
    return replace(world, arms=(world.arm("right"), world.arm("left"), *extra)[:n])


def scene(world):
    """Cube on the left half, every arm's hand 0.45 m in front of its base, 20 cm up, fingers open."""
    import numpy as np

    from codi_ros.frames import ArmState, CubeState, WorldState

    arms = {a.name: ArmState(ee_pos=world.base_frame(a.name).point_to_world(np.array([0.45, 0.0, 0.2])),
                             ee_rot=np.eye(3), ee_linvel=np.zeros(3), ee_angvel=np.zeros(3), gripper_width=0.08)
            for a in world.arms}
    cube = CubeState(pos=np.array([-0.3, 0.1, 0.5 * world.cube.size]), quat=np.array([1.0, 0.0, 0.0, 0.0]))
    return WorldState(arms=arms, cube=cube, goal=np.array([0.35, 0.0, 0.5 * world.cube.size]))


def breakdown(planner, state, repeats: int) -> dict[str, float]:
    """Milliseconds per plan in each of PARTS (cost terms = cost minus rollout) and in the rest, by cProfile
    (whose own overhead inflates the Python-heavy parts)."""
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


def linear_fit(p50: dict[int, float]) -> dict:
    """Least-squares p50 = a + b N and each point's relative deviation from it."""
    import numpy as np

    n, y = np.array(list(p50), dtype=float), np.array(list(p50.values()))
    b, a = np.polyfit(n, y, 1)
    dev = (y - (a + b * n)) / (a + b * n)
    return {"intercept_ms": round(float(a), 2), "ms_per_arm": round(float(b), 2),
            "relative_deviation": {int(k): round(float(d), 3) for k, d in zip(n, dev, strict=True)},
            "max_relative_deviation": round(float(np.abs(dev).max()), 3)}


def eval_args(method: str, episodes: int, args: argparse.Namespace) -> argparse.Namespace:
    """The options of ``codi eval --method METHOD --episodes E`` (everything else at its default)."""
    from codi_ros.evaluation import evaluate

    p = argparse.ArgumentParser()
    evaluate.add_arguments(p)
    argv = ["--method", method, "--episodes", str(episodes), "--out", "-", "--no-progress"]
    argv += ["--model", args.model] if args.model else []
    argv += ["--planner-config", args.planner_config] if args.planner_config and method == "codi" else []
    return p.parse_args(argv)


def bench_plan(args: argparse.Namespace) -> dict:
    from codi_ros.config import load_world_config
    from codi_ros.core.cost import load_cost_config
    from codi_ros.core.planner import Planner, load_planner_config
    from codi_ros.core.policy import load_policy
    from codi_ros.evaluation import evaluate

    world, policy = load_world_config(), load_policy(args.model)
    config, cost = load_planner_config(args.planner_config), load_cost_config()

    def planner_for(n: int) -> tuple[Planner, object]:
        w = with_arms(world, n) if n != 2 else world
        return Planner(policy, w, config, cost), scene(w)

    planner, state = planner_for(2)
    out = {"plan": timed(lambda: planner.plan(state), args.repeats), "breakdown": breakdown(planner, state, 5)}
    print(f"plan, 2 arms: {out['plan']}\nbreakdown: {out['breakdown']}", flush=True)
    if args.arms:
        vs_arms = {}
        for n in args.arms:
            p, s = planner_for(n)
            vs_arms[n] = timed(lambda p=p, s=s: p.plan(s), args.repeats)
            print(f"{n} arms: {vs_arms[n]}", flush=True)
        fit = {n: t["p50_ms"] for n, t in vs_arms.items() if n >= 2}
        out |= {"vs_arms": vs_arms, "vs_arms_fit_from_2": linear_fit(fit) if len(fit) >= 2 else None}
    if args.check_episodes:
        results = evaluate.evaluate(eval_args("codi", args.check_episodes, args))
        out["check"] = {"what": "codi eval --method codi --timing realtime (measured latency), seed 0",
                        "episodes": args.check_episodes, "success_rate": results["aggregate"]["success_rate"],
                        "plan_latency_in_the_loop": results["plan_latency"]}
        print(f"check: {out['check']}", flush=True)
    return {"planner": asdict(config), **out}


# ----------------------------------------------------------------------------------------------- policy

def bench_policy(args: argparse.Namespace) -> dict:
    import torch

    from codi_ros.core.planner import load_planner_config
    from codi_ros.core.policy import load_policy
    from codi_ros.evaluation import evaluate
    from codi_ros.frames import ACT_DIM, OBS_DIM

    policy, planner = load_policy(args.model), load_planner_config(args.planner_config)
    g = torch.Generator().manual_seed(0)
    H, rows = policy.config.horizon, 2 * planner.candidates    # one plan's score call: candidates x 2 arms
    a_t, obs, t = torch.randn(rows, H, ACT_DIM, generator=g), torch.randn(rows, OBS_DIM, generator=g), torch.ones(rows)
    with torch.no_grad():
        out = {"score_call": {"rows": rows, **timed(lambda: policy.score(a_t, t, obs), 10 * args.repeats)},
               "sample": {"rows": rows, "steps": planner.steps, "method": planner.sampler, **timed(
                   lambda: policy.sample(obs[:2], n=planner.candidates, steps=planner.steps, generator=g,
                                         method=planner.sampler), args.repeats)}}
    print(out, flush=True)
    if args.check_episodes:
        results = evaluate.evaluate(eval_args("single-arm", args.check_episodes, args))
        out["check"] = {"what": "codi eval --method single-arm, seed 0", "episodes": args.check_episodes,
                        **{k: results["aggregate"][k] for k in ("pick_chosen", "grasp_and_lift_when_picking")}}
        print(f"check: {out['check']}", flush=True)
    return {"policy": policy.config.to_dict(), **out}


# ------------------------------------------------------------------------------------------------- data

def bench_data(args: argparse.Namespace) -> dict:
    from codi_ros.data.generate import generate

    episodes = max(args.check_episodes, 1)
    with tempfile.TemporaryDirectory() as tmp:
        summary = generate("single", episodes, 0, Path(tmp) / "single", workers=1, progress=False)
    return {"episodes": episodes, "workers": 1, "wall_seconds": summary["seconds"],
            "minutes_per_1000_per_worker": round(summary["seconds"] / episodes * 1000 / 60, 2),
            "physics_steps_per_second": summary["physics_steps_per_second"],
            "check": {"what": "the scripted expert's success in these demonstrations",
                      "expert_success_rate": summary["expert_success_rate"]}}


def run(args: argparse.Namespace) -> int:
    import torch

    from codi_ros.config import ConfigError, load_world_config
    from codi_ros.version import code_version, machine_description

    out = args.out or RESULTS / DEFAULT_OUT[args.what]
    try:
        bounds.check_options(args, {"repeats": "repeats", "check_episodes": "check_episodes"})
        for n in args.arms:
            with_arms(load_world_config(), n)
    except ValueError as e:
        print(f"codi bench: error: {e}", file=sys.stderr)
        return 2
    problem = writable_folder(out.parent)
    if problem is not None:
        print(f"codi bench: error: --out {out}: {problem}", file=sys.stderr)
        return 2
    version, load = code_version(), os.getloadavg()
    try:
        result = {"plan": bench_plan, "policy": bench_policy, "data": bench_data}[args.what](args)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"codi bench: error: {e}", file=sys.stderr)
        return 2
    result = {"benchmark": args.what, **result, "torch_threads": torch.get_num_threads(),
              "load_average_at_start": load, "machine": machine_description(), "code_version": version}
    write_atomically(out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0

