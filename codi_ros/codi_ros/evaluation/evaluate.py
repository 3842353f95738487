"""``codi eval``: closed-loop evaluation in MuJoCo, written to a JSON file with its provenance.

    codi eval --method single-arm --episodes 50 --seed 0 --out results/single_arm.json
    codi eval --method codi --episodes 50 --seed 0 --out results/codi.json
    codi eval --method codi-indep ...      # the Sec. VII-C ablation: each arm guided by its own cost
    codi eval --method codi-simple ...     # the Sec. VII-E support study: the goal term of the cost alone
    codi eval --method codi-joint ...      # CoDi's guidance on the joint policy of two-arm data (models/joint)
    codi eval --method codi-joint-simple   # ... with the goal term alone
    codi eval --method cg-joint ...        # classifier guidance (eq. 49, models/cost_model) on the joint policy
    codi eval --method cg-product ...      # ... on CoDi's product of single-arm policies (Sec. VII-D)
    codi eval --method mimic-d ...         # per-arm policies of two-arm data (models/mimic_d), decentralised
    codi eval --method dpmd-joint ...      # the joint policy fine-tuned by codi finetune (also sdac-, expo-joint)
    codi eval --method scripted ...        # the scripted two-arm expert (a reference, not a policy)
    codi eval --method codi --timing paused ...         # the paper's protocol: the world waits for every plan
    codi eval --method codi --latency 0.4 [--naive] ... # real time with a fixed injected latency
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from codi_ros import bounds
from codi_ros.paths import writable_folder, write_atomically

FINETUNED = {"dpmd-joint": "dpmd_joint", "sdac-joint": "sdac_joint",   # method -> its shipped residual policy,
             "expo-joint": "expo_joint"}                             # models/<name> (codi finetune; App. D)
METHODS = ("single-arm", "codi", "codi-indep", "codi-simple", "codi-joint", "codi-joint-simple", "cg-joint",
           "cg-product", "mimic-d", *FINETUNED, "scripted")
PLANNER_METHOD = {"codi": "codi", "codi-indep": "codi-indep", "codi-simple": "codi",   # the planner.yaml method of each
                  "codi-joint": "codi", "codi-joint-simple": "codi", "cg-joint": "codi", "cg-product": "codi",
                  "mimic-d": "decentralized"} | dict.fromkeys(FINETUNED, "unguided")
GOAL_ONLY = ("codi-simple", "codi-joint-simple")     # the cost's goal term alone (Sec. VII-E)
JOINT = ("codi-joint", "codi-joint-simple", "cg-joint", *FINETUNED)   # methods on a joint policy of two-arm data
CLASSIFIER = ("cg-joint", "cg-product")   # guided by the gradient of a learned cost model (eq. 49), not by J
JOINT_MODEL = "joint"     # models/joint: the joint policy of the JOINT methods (codi train --joint)
MIMIC_D_MODEL = "mimic_d"   # models/mimic_d: one single-arm policy on every arm's rows of the two-arm data


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, choices=METHODS, help="what drives the arms")
    p.add_argument("--episodes", type=int, default=50, help="seeded episodes (paper: 50)")
    p.add_argument("--seed", type=int, default=0, help="episode i starts from the seed (seed, i)")
    p.add_argument("--out", type=Path, required=True, help="results JSON")
    p.add_argument("--model", default=None,
                   help="policy checkpoint dir (default: models/single_arm; codi-joint(-simple), cg-joint: "
                        "models/joint; mimic-d: models/mimic_d; dpmd-joint, sdac-joint, expo-joint: models/dpmd_joint, "
                        "... (codi finetune))")
    p.add_argument("--cost-model", default=None,
                   help="cg-joint, cg-product: the cost model checkpoint dir (default: models/cost_model; "
                        "codi train --cost-model)")
    p.add_argument("--seconds", type=float, default=None,
                   help="episode length (default: 20 single-arm, world.yaml episode.max_seconds others)")
    p.add_argument("--arm", choices=("left", "right", "both"), default="both",
                   help="single-arm: which arm the policy drives (both: even episodes left, odd right)")
    p.add_argument("--sample-steps", type=int, default=None, help="denoising steps per chunk (default: config)")
    p.add_argument("--sampler", choices=("heun", "sde"), default="heun",
                   help="single-arm: sampler of the policy (20-step SDE is measurably noisier than Heun)")
    p.add_argument("--candidates", type=int, default=8,
                   help="single-arm: chunks sampled per replan, the one continuing the previous chunk best is "
                        "executed (1: plain sampling; default %(default)s)")
    p.add_argument("--planner-config", default=None,
                   help="planner YAML (default: config/planner.yaml; single-arm: its realtime section)")
    p.add_argument("--cost-config", default=None,
                   help="cost YAML (default: config/cost.yaml; single-arm: its kinematic_model grasp rule)")
    p.add_argument("--num-samples", type=int, default=None, help="override M, guidance samples per step")
    p.add_argument("--temperature", type=float, default=None, help="override lambda")
    p.add_argument("--cost-simulator", choices=("kinematic", "physics"), default=None,
                   help="override the planner's cost simulator")
    p.add_argument("--timing", choices=("realtime", "paused"), default="realtime",
                   help="realtime (default, as users run it): the world keeps executing the committed actions while "
                        "the planner computes, for each plan's measured latency; paused: the world waits for every "
                        "plan (the paper's protocol)")
    p.add_argument("--latency", type=float, default=None,
                   help="realtime: inject this fixed latency per plan, s, instead of the measured one")
    p.add_argument("--naive", action="store_true",
                   help="the codi methods, single-arm: plan without committing to the actions that run while planning "
                        "(planner.yaml realtime.commit false), the baseline of the latency study")
    p.add_argument("--task", default=None,
                   help="task YAML (keys of codi_ros.sim.tasks.HandoverTask; default: the paper's handover)")
    p.add_argument("--trace", type=Path, default=None,
                   help="the codi methods, scripted: write every control step of episode i to TRACE/episode_i.json "
                        "(summary: python experiments/summarize_traces.py TRACE)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


OPTION_BOUNDS = {"episodes": "episodes", "seed": "seed", "seconds": "seconds", "sample_steps": "steps",
                 "candidates": "candidates", "num_samples": "num_samples", "temperature": "temperature",
                 "latency": "latency"}   # option -> its bound in codi_ros/bounds.py


def _fail(message: str) -> int:
    print(f"codi eval: error: {message}", file=sys.stderr)
    return 2


def make_planner(args: argparse.Namespace, world_cfg):
    """The configured planner with this run's method, cost simulator and overrides."""
    from dataclasses import replace

    from codi_ros.core.cost import load_cost_config
    from codi_ros.core.planner import Planner, PlanOverrides, check_overrides, load_planner_config

    config = load_planner_config(args.planner_config)
    config = replace(config, method=PLANNER_METHOD[args.method], realtime=realtime_of(args, config))
    if args.cost_simulator:
        config = replace(config, cost_simulator=args.cost_simulator)
    simulator = None
    if config.cost_simulator == "physics":
        from codi_ros.sim.physics_model import PhysicsModel
        simulator = PhysicsModel(world_cfg)
    cost_config = load_cost_config(args.cost_config)
    if args.method in GOAL_ONLY:
        cost_config = cost_config.goal_only()
    cost_model = None
    if (path := cost_model_of(args)) is not None:
        from codi_ros.core.cost_model import CostModel
        cost_model = CostModel.load(path)
    planner = Planner(method_policy(args), world_cfg, config, cost_config, simulator, cost_model=cost_model)
    overrides = PlanOverrides(num_samples=args.num_samples, temperature=args.temperature, steps=args.sample_steps)
    check_overrides(overrides, config)   # a bad override is refused before the run, not met by every plan of it
    planner.warm_up()   # one-off costs (first calls, the cost simulator compile) before the clock runs, like the nodes
    return planner, overrides, config, cost_config


def model_of(args: argparse.Namespace):
    """The run's policy directory: --model, else the method's shipped one."""
    from codi_ros.core.policy import DEFAULT_MODEL
    from codi_ros.paths import models_dir

    if args.model is not None:
        return args.model
    shipped = {"mimic-d": MIMIC_D_MODEL} | dict.fromkeys(JOINT, JOINT_MODEL) | FINETUNED
    return models_dir() / shipped.get(args.method, DEFAULT_MODEL)


def cost_model_of(args: argparse.Namespace):
    """The run's cost model directory: --cost-model, else the shipped one, for the CLASSIFIER methods; else None
    (ValueError when --cost-model is given to another method)."""
    from codi_ros.core.cost_model import DEFAULT_MODEL
    from codi_ros.paths import models_dir

    if args.method not in CLASSIFIER:
        if args.cost_model is not None:
            raise ValueError(f"--cost-model: only the classifier-guidance methods {', '.join(CLASSIFIER)} use one")
        return None
    return args.cost_model or models_dir() / DEFAULT_MODEL


def method_policy(args: argparse.Namespace):
    """The run's policy, refused (ValueError) when it is not the kind its method needs: a joint policy for
    the JOINT methods (fine-tuned for the FINETUNED ones), a single-arm one for the others."""
    from codi_ros.core.policy import ResidualPolicy, load_policy

    path, joint = model_of(args), args.method in JOINT
    policy = load_policy(path)
    if (policy.config.agents > 1) != joint:
        kind = "joint" if policy.config.agents > 1 else "single-arm"
        need = "a joint policy (codi train --joint on codi data generate --mode multi)" if joint else \
            "a single-arm policy"
        raise ValueError(f"--model {path}: a {kind} policy; --method {args.method} needs {need}")
    if (args.method in FINETUNED) != isinstance(policy, ResidualPolicy):
        raise ValueError(f"--model {path}: --method {args.method} needs "
                         + ("a fine-tuned joint policy (codi finetune)" if args.method in FINETUNED else
                            "a policy that is not fine-tuned (a fine-tuned one: --method dpmd-joint etc.)"))
    return policy


def realtime_of(args: argparse.Namespace, config):
    """The planner config's ``realtime`` section, without the commitment under ``--naive``."""
    from dataclasses import replace

    return replace(config.realtime, commit=False) if getattr(args, "naive", False) else config.realtime


def timing_of(args: argparse.Namespace):
    """The run's :class:`~codi_ros.evaluation.rollout.Timing` (ValueError names a bad option)."""
    from codi_ros.evaluation.rollout import Timing

    return Timing(args.timing, args.latency)


def planner_controller(planner, overrides, config, timing, world_cfg, episode: int):
    """Episode ``episode``'s controller: the planner reset to that episode's plan seeds, latency-aware in
    real time (the measured or the injected latency sets how much of each plan is committed)."""
    from codi_ros.core.realtime import LatencyEstimate
    from codi_ros.evaluation import handover

    planner.reset(seed=config.seed + handover.EPISODE_SEED_STRIDE * episode)
    latency = (None if timing.mode == "paused" else
               LatencyEstimate(config.realtime, world_cfg.control.dt, fixed=timing.latency,
                               delivery_margin=config.realtime.delivery_margin))
    return handover.PlannerSource(planner, overrides, latency)


def evaluate(args: argparse.Namespace) -> dict:
    from dataclasses import asdict

    from codi_ros.config import load_world_config
    from codi_ros.evaluation import handover, single_arm
    from codi_ros.sim.world import TwoArmWorld

    world_cfg = load_world_config()
    world = TwoArmWorld(world_cfg)
    progress = not args.no_progress
    timing = timing_of(args)
    from codi_ros.sim.tasks import load_task
    task = load_task(args.task)
    if args.method == "single-arm":
        policy = method_policy(args)
        arms = world_cfg.arm_names if args.arm == "both" else (args.arm,)
        steps = args.sample_steps or (10 if args.sampler == "heun" else policy.config.sample_steps)
        from codi_ros.core.cost import load_cost_config
        from codi_ros.core.planner import load_planner_config
        realtime = realtime_of(args, load_planner_config(args.planner_config))
        results = single_arm.evaluate_single_arm(policy, world, args.episodes, args.seed, arms, steps,
                                                 args.seconds or 20.0, method=args.sampler, progress=progress,
                                                 candidates=args.candidates, timing=timing, realtime=realtime,
                                                 kinematic=load_cost_config(args.cost_config).kinematic_model)
        return {"arms": list(arms), "sample_steps": steps, "sampler": args.sampler, "candidates": args.candidates,
                "realtime": asdict(realtime), **results}
    if args.method == "scripted":
        return handover.evaluate_handover(lambda i: handover.ScriptedSource(world, args.seed * 7919 + i), world,
                                          args.episodes, args.seed, args.seconds or world_cfg.episode.max_seconds,
                                          progress, execution=1,
                                          trace_dir=args.trace, timing=timing, task=task)
    planner, overrides, config, cost_config = make_planner(args, world_cfg)

    results = handover.evaluate_handover(lambda i: planner_controller(planner, overrides, config, timing, world_cfg, i),
                                         world, args.episodes, args.seed, args.seconds or world_cfg.episode.max_seconds,
                                         progress,
                                         trace_dir=args.trace, timing=timing, task=task)
    cost_model = cost_model_of(args)
    return {"planner": asdict(config), "cost": asdict(cost_config), "overrides": asdict(overrides),
            "cost_model": None if cost_model is None else str(cost_model),
            "task": asdict(task), **results}


def run(args: argparse.Namespace) -> int:
    from codi_ros.config import ConfigError
    from codi_ros.version import code_version, machine_description

    try:
        bounds.check_options(args, OPTION_BOUNDS)
        timing_of(args)
    except ValueError as e:
        return _fail(str(e) if str(e).startswith("--") else f"--{e}")
    if args.trace is not None and args.trace.exists() and not args.trace.is_dir():
        return _fail(f"--trace {args.trace} is a file, not a directory")
    problem = writable_folder(args.out.parent)   # checked before the run: its work is not lost on the write
    if problem is not None:
        return _fail(f"--out {args.out}: {problem}")
    t0, version = time.perf_counter(), code_version()    # the code that runs, not what is checked out at the end
    try:
        results = evaluate(args)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        return _fail(str(e))
    model = args.model or f"models/{Path(model_of(args)).name}"
    out = {"method": args.method, "model": model, "seed": args.seed,
           "wall_seconds": round(time.perf_counter() - t0, 1),
           "code_version": version, "machine": machine_description(), **results}
    write_atomically(args.out, json.dumps(out, indent=1))
    print(json.dumps({"method": args.method, **out["aggregate"], "plan_latency": out.get("plan_latency")}, indent=1))
    return 0
