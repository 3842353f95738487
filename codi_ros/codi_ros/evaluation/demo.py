"""``codi demo``: one two-arm handover in MuJoCo with CoDi on the shipped single-arm policy.

Prints progress at every replanning, and writes to ``--out`` (default ``runs/demo``):
``frames.png`` (a strip of overview-camera frames), ``demo.gif``, ``plot.png`` (cube-to-goal
distance and end-effector separation over time) and ``result.json`` (metrics, provenance).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from codi_ros import bounds
from codi_ros.paths import writable_folder, write_atomically

FRAME_EVERY = 2          # control steps between recorded video frames (5 fps at 10 Hz)
STRIP_FRAMES = 6


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="task seed (cube start, goal, start postures)")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    p.add_argument("--model", default=None, help="single-arm policy checkpoint (default: models/single_arm)")
    p.add_argument("--method", choices=("codi", "codi-indep"), default="codi", help="joint or independent guidance")
    p.add_argument("--seconds", type=float, default=None,
                   help="episode length limit (default: world.yaml episode.max_seconds)")
    p.add_argument("--timing", choices=("realtime", "paused"), default="realtime",
                   help="realtime (default): the world moves while the planner computes; paused: the paper's protocol")
    p.add_argument("--latency", type=float, default=None, help="realtime: a fixed latency per plan, s")
    p.add_argument("--no-video", action="store_true", help="skip rendering (plot and metrics only)")


def _plot(times, dist, sep, tolerance, safety, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    ax[0].plot(times, dist, label="cube to goal")
    ax[0].axhline(tolerance, color="g", ls="--", label=f"goal tolerance {tolerance:.2f} m")
    ax[0].set_ylabel("distance [m]")
    ax[0].legend()
    ax[1].plot(times, sep, color="tab:orange", label="end-effector separation")
    ax[1].axhline(safety, color="r", ls="--", label=f"safety distance {safety:.2f} m")
    ax[1].set_ylabel("separation [m]")
    ax[1].set_xlabel("time [s]")
    ax[1].legend()
    fig.suptitle("CoDi two-arm handover")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from dataclasses import replace

    import imageio.v3 as iio
    import numpy as np

    from codi_ros.config import ConfigError, load_world_config
    from codi_ros.core.cost import load_cost_config
    from codi_ros.core.planner import Planner, load_planner_config
    from codi_ros.core.policy import PolicyLoadError, load_policy
    from codi_ros.evaluation.evaluate import planner_controller, timing_of
    from codi_ros.evaluation.handover import run_handover_episode
    from codi_ros.evaluation.rollout import delay_histogram
    from codi_ros.sim.metrics import SAFETY_DISTANCE
    from codi_ros.sim.tasks import HANDOVER
    from codi_ros.sim.world import TwoArmWorld
    from codi_ros.version import code_version, machine_description

    try:
        bounds.check_options(args, {"seed": "seed", "seconds": "seconds", "latency": "latency"})
        timing = timing_of(args)
        cfg = load_world_config()
        config = replace(load_planner_config(), method=args.method)
        planner = Planner(load_policy(args.model), cfg, config, load_cost_config())
    except (ConfigError, PolicyLoadError, FileNotFoundError, ValueError) as e:
        print(f"codi demo: error: {e}", file=sys.stderr)
        return 2
    problem = writable_folder(args.out)   # before the episode: its results are not lost on the write
    if problem is not None:
        print(f"codi demo: error: --out {args.out}: {problem}", file=sys.stderr)
        return 2
    print(f"codi demo: planner warmed up in {planner.warm_up():.1f} s (one-off costs, before the clock runs)")
    world = TwoArmWorld(cfg)
    cube = HANDOVER.reset(world, args.seed, 0)
    print(f"codi demo: {args.method}, cube at ({cube[0]:+.2f}, {cube[1]:+.2f}), goal at "
          f"({world.goal[0]:+.2f}, {world.goal[1]:+.2f}); replanning every {cfg.horizon.execution} steps, "
          f"timing {timing.mode}")
    frames, trace, step = [], [], [0]
    controller = planner_controller(planner, None, config, timing, cfg, episode=0)

    def on_step(w: TwoArmWorld) -> None:
        ee = [w.arm_state(a).ee_pos for a in w.arms]
        trace.append((w.time, float(np.linalg.norm(w.cube_state().pos - w.goal)), float(np.linalg.norm(ee[0] - ee[1]))))
        if step[0] % cfg.horizon.execution == 0:
            held = [a for a in w.arms if w.holding(a)] or ["-"]
            cost = f"{controller.costs[-1]:7.3f}" if controller.costs else "    -  "
            print(f"  t={w.time:5.1f}s  cube->goal {trace[-1][1]:.3f} m  separation {trace[-1][2]:.2f} m  "
                  f"held by {','.join(held):5s}  cost {cost}", flush=True)
        if not args.no_video and step[0] % FRAME_EVERY == 0:
            img = w.render("overview", 480, 360)
            if img is not None:
                frames.append(img)
        step[0] += 1

    t0 = time.perf_counter()
    summary, loop = run_handover_episode(world, controller, args.seconds or cfg.episode.max_seconds, on_step=on_step,
                                         timing=timing)
    latencies = loop.plan_latencies
    world.close()
    times, dist, sep = (np.asarray(x) for x in zip(*trace, strict=True))
    _plot(times, dist, sep, cfg.goal.tolerance, SAFETY_DISTANCE, args.out / "plot.png")
    written = ["plot.png"]
    if frames:
        pick = np.linspace(0, len(frames) - 1, STRIP_FRAMES).round().astype(int)
        iio.imwrite(args.out / "frames.png", np.concatenate([frames[i] for i in pick], axis=1))
        iio.imwrite(args.out / "demo.gif", np.stack(frames[::2]), duration=200, loop=0)
        written += ["frames.png", "demo.gif"]
    elif not args.no_video:
        print("codi demo: offscreen rendering unavailable (set MUJOCO_GL=egl or osmesa): no video", file=sys.stderr)
    lat = np.asarray(latencies) * 1e3
    result = {"method": args.method, "seed": args.seed, "timing": timing.mode, "latency": timing.latency, **summary,
              "delay_steps": delay_histogram(loop.delays), "plan_latency_ms_p50": float(np.median(lat)),
              "plan_latency_ms_p95": float(np.percentile(lat, 95)), "wall_seconds": round(time.perf_counter() - t0, 1),
              "code_version": code_version(), "machine": machine_description()}
    write_atomically(args.out / "result.json", json.dumps(result, indent=1))
    verdict = "SUCCESS" if summary["success"] else "FAILED"
    print(f"codi demo: {verdict}: cube {summary['final_distance']:.3f} m from the goal "
          f"after {summary['duration']:.1f} s, "
          f"{summary['collisions']} collision(s), plan latency p50 {result['plan_latency_ms_p50']:.0f} ms; "
          f"wrote {', '.join(str(args.out / f) for f in written)}, result.json")
    return 0
