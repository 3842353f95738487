"""``codi data generate``: scripted demonstrations -> an on-disk data set (see data/dataset.py).

single: one arm acts (the other stays parked at home), equal numbers of *pick* episodes and *yield*
episodes (go home and stay), alternating left and right arms, each recorded in its own base frame. A
pick episode lasts ``PICK_SECONDS`` of pick-and-place cycles: grasp the cube in reach (top-down,
with the least wrist turn: sim/experts.py), place it at a random reachable target drawn like the
cube starts, go home, wait there a random ``HOME_WAIT_SECONDS``, then pick the cube again from where
it lies. So the data holds both "stay home" (yield) and "leave home for a reachable cube" (the step
the receiving arm of a handover takes), like the paper's long demonstrations (1k demos, 500k
segments). At every step the cube is teleported with probability ``reset_prob`` (paper: 1%) to a
random table position. In pick episodes it lands within the ego arm's reach (the expert re-grasps
it) or, with probability ``OUT_OF_REACH_RESETS``, where only the other arm reaches it: the expert
then goes home and waits until the cube is back in reach. That teaches "cube out of reach -> go
home" from anywhere in the workspace, the behaviour a receiving arm needs while the other arm works
(and after a handover).
In single mode the expert's twist is perturbed while its gripper is open (``action_noise``, DART: Laskey
et al. 2017, "DART: Noise Injection for Robust Imitation Learning"): the arm executes the expert's
action plus correlated noise, the data records the expert's own action. The demonstrations then
show how the expert corrects a tool that is off its path (a policy's drift in closed loop), and
that it closes the gripper only once the tool is over the cube and aligned with it, not at a time.
multi: both arms act under the handover expert (for the multi-agent baselines).

Every episode i is seeded by (seed, i), so the data set does not depend on the worker count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codi_ros import bounds
from codi_ros.paths import writable_folder

PLACE_TOLERANCE = 0.02   # m: a pick demonstration succeeds when the cube ends this close to its target
MIN_PLACE_DISTANCE = 0.10
HOLD_STEPS = 8           # control steps held at home before a two-arm episode ends
YIELD_SECONDS = (4.0, 6.0)
PICK_SECONDS = 30.0      # pick-and-place cycles per pick episode (recovery resets restart a pick, so usually 1-2)
HOME_WAIT_SECONDS = (0.5, 3.0)   # at home between two cycles
OUT_OF_REACH_RESETS = 0.3        # fraction of pick-episode resets that put the cube out of the ego arm's reach
ACTION_NOISE = 0.07              # noise std as a fraction of the twist limits (0.021 m/s, 0.105 rad/s here);
                                 # 0.1 made the expert hover at the cube (0.85 placements per 30 s pick episode
                                 # instead of 1.35 without noise; a one-off probe of 20 episodes), 0.07: 1.2
NOISE_TIME_CONSTANT = 0.5        # s, correlation time of the noise (an AR(1) process at the control rate)


@dataclass(frozen=True)
class EpisodeSpec:
    index: int
    seed: int
    mode: str                 # "single" | "multi"
    reset_prob: float
    action_noise: float = 0.0  # single mode: see ACTION_NOISE
    yields: bool = True        # single mode: every other episode a yield (False: picks only, a support ablation)
    out_of_reach: float = OUT_OF_REACH_RESETS   # single mode: see OUT_OF_REACH_RESETS (0: a support ablation)


def _episode_kind(index: int, cfg_arms: tuple[str, ...], yields: bool = True) -> tuple[str, str]:
    """Interleave kinds and arms so every prefix of the data set is balanced (``yields`` False: picks only)."""
    return ("pick" if index % 2 == 0 or not yields else "yield"), cfg_arms[(index // 2) % len(cfg_arms)]


def run_single_episode(world: Any, spec: EpisodeSpec) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One single-arm demonstration: (obs (T,1,D), actions (T,1,7), facts)."""
    from codi_ros.sim.experts import PickPlace, Yield
    from codi_ros.sim.tasks import random_posture, random_yaw, sample_table_xy

    cfg = world.cfg
    rng = np.random.default_rng([spec.seed, spec.index])
    kind, arm = _episode_kind(spec.index, cfg.arm_names, spec.yields)
    ego_reach = (arm,) if kind == "pick" else None
    cube = sample_table_xy(rng, cfg, ego_reach)
    world.reset(cube_xy=cube, cube_yaw=random_yaw(rng), arm_qpos={arm: random_posture(rng, cfg)})
    rate = cfg.control.rate_hz

    def new_pick() -> tuple[PickPlace, tuple[float, float], int]:
        """The next cycle: pick the cube where it lies, place it at a new target; wait at home after it."""
        xy = tuple(world.cube_state().pos[:2])
        place = xy
        while np.hypot(place[0] - xy[0], place[1] - xy[1]) < MIN_PLACE_DISTANCE:
            place = sample_table_xy(rng, cfg, ego_reach)
        return PickPlace(world, arm, place), place, int(rng.uniform(*HOME_WAIT_SECONDS) * rate)

    if kind == "pick":
        skill, place, wait = new_pick()
        max_steps = int(PICK_SECONDS * rate)
    else:
        skill, place, wait = Yield(world, arm), None, 0
        max_steps = int(rng.uniform(*YIELD_SECONDS) * rate)
    others = tuple(a for a in cfg.arm_names if a != arm)
    noise = TwistNoise(cfg, spec.action_noise, np.random.default_rng([spec.seed, spec.index, 2]))
    obs, actions, resets, out_of_reach, home_steps, place_errors = [], [], 0, 0, 0, []
    for _ in range(max_steps):
        if rng.random() < spec.reset_prob:
            resets += 1
            if kind == "pick" and rng.random() < spec.out_of_reach:
                out_of_reach += 1
                world.set_cube_pose(sample_table_xy(rng, cfg, others, out_of_reach_of=(arm,)), random_yaw(rng))
                skill, place, wait = Yield(world, arm), None, max_steps                # home until back in reach
            else:
                world.set_cube_pose(sample_table_xy(rng, cfg, ego_reach), random_yaw(rng))
                if kind == "pick":
                    skill, place, wait = new_pick()
        obs.append(world.observation(arm))
        action = skill.act()
        actions.append(action)
        world.apply_action(arm, noise.perturb(action))
        world.step_control()
        home_steps = home_steps + 1 if (kind == "pick" and skill.done) else 0
        if home_steps == 1 and place is not None:
            place_errors.append(float(np.linalg.norm(world.cube_state().pos[:2] - np.asarray(place))))
        if kind == "pick" and home_steps >= wait:
            skill, place, wait = new_pick()
            home_steps = 0
    facts: dict[str, Any] = {"index": spec.index, "kind": kind, "arm": arm, "steps": len(obs), "resets": resets,
                             "cube_start": list(cube)}
    if kind == "pick":
        # an episode whose cube spent the time out of reach may place nothing; that is not a failure
        facts.update(place_errors=place_errors, out_of_reach_resets=out_of_reach,
                     success=all(e <= PLACE_TOLERANCE for e in place_errors))
    return np.asarray(obs)[:, None], np.asarray(actions, dtype=np.float32)[:, None], facts


class TwistNoise:
    """Correlated noise on the twist of an action while its gripper is commanded open: per axis an AR(1)
    process with correlation time ``NOISE_TIME_CONSTANT`` and stationary std ``scale`` times the twist
    limit (control.max_linear_speed, max_angular_speed). A closing or closed gripper (grasping, carrying,
    placing) gets the expert's action as it is."""

    def __init__(self, cfg: Any, scale: float, rng: np.random.Generator):
        c = cfg.control
        self.std = scale * np.r_[np.full(3, c.max_linear_speed), np.full(3, c.max_angular_speed)]
        self.rho = float(np.exp(-c.dt / NOISE_TIME_CONSTANT))
        self.open_width = cfg.cube.size    # commanded wider than the cube: the gripper is open
        self.rng, self.state = rng, np.zeros(6)

    def perturb(self, action: np.ndarray) -> np.ndarray:
        if not self.std.any():
            return action
        self.state = self.rho * self.state + np.sqrt(1 - self.rho ** 2) * self.std * self.rng.standard_normal(6)
        if action[6] <= self.open_width:
            return action
        return np.r_[action[:6] + self.state, action[6]]


def run_multi_episode(world: Any, spec: EpisodeSpec) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One two-arm handover demonstration by the scripted multi-arm expert."""
    from codi_ros.sim.experts import HandoverExpert
    from codi_ros.sim.metrics import EpisodeRecorder
    from codi_ros.sim.tasks import MULTI_DATA_TASK

    cfg = world.cfg
    cube = MULTI_DATA_TASK.reset(world, spec.seed, spec.index)
    expert = HandoverExpert(world, np.random.default_rng([spec.seed, spec.index, 1]))
    recorder = EpisodeRecorder(tolerance=cfg.goal.tolerance)
    obs, actions, home_steps = [], [], 0
    for _ in range(int(cfg.episode.max_seconds * cfg.control.rate_hz)):
        obs.append(np.stack([world.observation(a) for a in cfg.arm_names]))
        act = expert.act()
        actions.append(np.stack([act[a] for a in cfg.arm_names]))
        for a in cfg.arm_names:
            world.apply_action(a, act[a])
        world.step_control()
        recorder.record(world)
        home_steps = home_steps + 1 if expert.done else 0
        if home_steps >= HOLD_STEPS:
            break
    facts = {"index": spec.index, "kind": "handover", "steps": len(obs), "cube_start": list(cube),
             "goal": world.goal.tolist(), "arms_used": [a for a, _ in expert.stages], **recorder.summary()}
    return np.asarray(obs), np.asarray(actions, dtype=np.float32), facts


_WORLD = None


def _worker_init(config_path: str | None) -> None:
    global _WORLD
    from codi_ros.config import load_world_config
    from codi_ros.sim.world import TwoArmWorld
    _WORLD = TwoArmWorld(load_world_config(config_path))


def _run(spec: EpisodeSpec) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    fn = run_single_episode if spec.mode == "single" else run_multi_episode
    return fn(_WORLD, spec)


def generate(mode: str, episodes: int, seed: int, out: Path, config_path: str | None = None,
             reset_prob: float = 0.01, workers: int = 1, progress: bool = True,
             action_noise: float = ACTION_NOISE, yields: bool = True,
             out_of_reach: float = OUT_OF_REACH_RESETS) -> dict[str, Any]:
    """Generate a data set and write it to ``out``; returns the summary. ``yields``, ``out_of_reach``: single
    mode's yield episodes and share of out-of-reach resets (EpisodeSpec; the support ablations turn them off)."""
    from tqdm import tqdm

    from codi_ros.config import load_world_config
    from codi_ros.data.dataset import Dataset, save_dataset
    from codi_ros.version import code_version, machine_description

    cfg = load_world_config(config_path)
    single = mode == "single"
    specs = [EpisodeSpec(i, seed, mode, reset_prob if single else 0.0, action_noise if single else 0.0,
                         yields or not single, out_of_reach if single else 0.0) for i in range(episodes)]
    t0 = time.perf_counter()
    results = []
    bar = tqdm(total=episodes, desc=f"{mode} demos", unit="ep", disable=not progress)
    if workers > 1:
        import multiprocessing as mp
        with mp.get_context("spawn").Pool(workers, _worker_init, (config_path,)) as pool:
            for r in pool.imap(_run, specs, chunksize=4):
                results.append(r)
                bar.update()
    else:
        _worker_init(config_path)
        for s in specs:
            results.append(_run(s))
            bar.update()
    bar.close()
    seconds = time.perf_counter() - t0
    obs = np.concatenate([r[0] for r in results]).astype(np.float32)
    actions = np.concatenate([r[1] for r in results]).astype(np.float32)
    ends = np.cumsum([len(r[0]) for r in results]).astype(np.int64)
    facts = [r[2] for r in results]
    sim_seconds = ends[-1] / cfg.control.rate_hz
    if mode == "single":
        picks = [f for f in facts if f["kind"] == "pick"]
        success_rate = float(np.mean([f["success"] for f in picks])) if picks else None
    else:
        success_rate = float(np.mean([f["success"] for f in facts]))
    physics_steps = sim_seconds / cfg.control.physics_dt
    summary = {
        "mode": mode, "episodes": episodes, "segments": int(ends[-1]), "steps": int(ends[-1]),
        "expert_success_rate": success_rate, "seconds": round(seconds, 2), "workers": workers,
        "simulated_seconds": round(float(sim_seconds), 1), "physics_steps_per_second": round(physics_steps / seconds),
        "kinds": {k: sum(f["kind"] == k for f in facts) for k in sorted({f["kind"] for f in facts})},
        "recovery_resets": int(sum(f.get("resets", 0) for f in facts)),
    }
    meta = {"mode": mode, "seed": seed, "reset_prob": reset_prob if single else 0.0, "horizon": cfg.horizon.prediction,
            "action_noise": action_noise if single else 0.0, "noise_time_constant": NOISE_TIME_CONSTANT,
            "yield_episodes": yields and single, "out_of_reach_resets": out_of_reach if single else 0.0,
            "control_rate_hz": cfg.control.rate_hz, "arms": list(cfg.arm_names) if mode == "multi" else ["ego"],
            "world_config": cfg.to_dict(), "world_config_source": cfg.source, "code_version": code_version(),
            "machine": machine_description()}
    save_dataset(Dataset(obs, actions, ends, facts, meta), out, summary)
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    g = sub.add_parser("generate", help="run the scripted experts and write a data set",
                       description="Run the scripted experts in MuJoCo and write a demonstration data set.")
    g.add_argument("--mode", required=True, choices=("single", "multi"),
                   help="single: one arm, pick/yield demos (CoDi's base policy); multi: two-arm handovers (baselines)")
    g.add_argument("--episodes", type=int, required=True, help="number of demonstrations (paper: 1000)")
    g.add_argument("--seed", type=int, default=0, help="episode i uses the seed (seed, i)")
    g.add_argument("--out", type=Path, required=True, help="output directory (written atomically)")
    g.add_argument("--config", default=None, help="world config YAML (default: the shipped config/world.yaml)")
    g.add_argument("--reset-prob", type=float, default=0.01, help="per-step cube reset probability (single mode)")
    g.add_argument("--action-noise", type=float, default=ACTION_NOISE,
                   help="single mode: std of the correlated noise on the executed twist while the gripper is open, "
                        "as a fraction of the twist limits; the data records the expert's clean action "
                        "(DART; 0: none; default %(default)s)")
    g.add_argument("--no-yield", action="store_true",
                   help="single mode: pick episodes only, no yield demonstrations (a support ablation)")
    g.add_argument("--out-of-reach-resets", type=float, default=OUT_OF_REACH_RESETS,
                   help="single mode: share of a pick episode's cube resets that land out of the arm's reach, where "
                        "the expert goes home (0: none, a support ablation; default %(default)s)")
    g.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="parallel worker processes")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def _fail(msg: str) -> int:
    print(f"codi data generate: error: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from codi_ros.config import ConfigError, load_world_config

    try:
        bounds.check_options(args, {"episodes": "episodes", "seed": "seed", "workers": "workers"})
    except bounds.BoundsError as e:
        return _fail(str(e))
    if not 0.0 <= args.reset_prob < 1.0:
        return _fail(f"--reset-prob must be in [0, 1), got {args.reset_prob}")
    if not 0.0 <= args.action_noise <= 1.0:
        return _fail(f"--action-noise must be in [0, 1] (a fraction of the twist limits), got {args.action_noise}")
    if not 0.0 <= args.out_of_reach_resets <= 1.0:
        return _fail(f"--out-of-reach-resets must be in [0, 1], got {args.out_of_reach_resets}")
    try:
        load_world_config(args.config)
    except ConfigError as e:
        return _fail(str(e))
    problem = writable_folder(args.out.parent)
    if problem is not None:
        return _fail(f"--out {args.out}: {problem}")
    summary = generate(args.mode, args.episodes, args.seed, args.out, args.config, args.reset_prob,
                       min(args.workers, args.episodes), progress=not args.no_progress, action_noise=args.action_noise,
                       yields=not args.no_yield, out_of_reach=args.out_of_reach_resets)
    print(json.dumps(summary, indent=1))
    return 0
