"""Does the base policy grasp the same with either arm? The same tasks, run by the left arm and mirrored for the right.

    .venv/bin/python experiments/arm_symmetry.py [--pairs 20] [--seed 0] [--model DIR] [--timing paused|realtime]
        [--out experiments/results/arm_symmetry.json]

Task k of a seed is drawn like the single-arm evaluation's (`codi eval --method single-arm`): a cube within the
left arm's reach, its yaw, a start posture. The right arm gets the scene rotated by 180 degrees about the table
centre (cube at (-x, -y), yaw + pi, the same joint posture), which the frame convention (frames.py) makes the
same task in its own base frame. Both runs use the same policy seed, so with paused timing (the world waits for
every plan: deterministic) any difference between them is an asymmetry of the pipeline (world, IK, executor,
contacts, observation or action frames), though float rounding differs between the two mirrored scenes and
a closed loop can amplify it. Per pair: each arm's outcome (went for the cube, grasped and lifted it), the
largest distance between the two tools, each in its own base frame, over the episode, and when it first
exceeded 1 mm.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from codi_ros.config import load_world_config
from codi_ros.core.planner import load_planner_config
from codi_ros.core.policy import load_policy
from codi_ros.evaluation.rollout import PAUSED, Timing, run_closed_loop
from codi_ros.evaluation.single_arm import SkillTracker, episode_controller
from codi_ros.frames import OBS_FIELDS, field_slice
from codi_ros.sim.tasks import random_posture, random_yaw, sample_table_xy
from codi_ros.sim.world import TwoArmWorld
from codi_ros.version import code_version, machine_description

RESULTS = Path(__file__).resolve().parent / "results" / "arm_symmetry.json"
EE = field_slice(OBS_FIELDS, "ee_pos")
DIVERGED = 1e-3   # m: tools further apart than this (each in its own frame) = the two runs went separate ways


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=20, help="tasks, each run by both arms (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="task k is drawn from (seed, k) (default %(default)s)")
    p.add_argument("--model", default=None, help="policy checkpoint dir (default: models/single_arm)")
    p.add_argument("--timing", choices=("paused", "realtime"), default="paused",
                   help="paused (default): deterministic, the test of symmetry; realtime: as users run it")
    p.add_argument("--seconds", type=float, default=20.0, help="episode length (default %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results JSON (default %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = load_world_config()
    world, policy = TwoArmWorld(cfg), load_policy(args.model)
    timing = PAUSED if args.timing == "paused" else Timing("realtime")
    realtime = load_planner_config().realtime     # as codi eval: its realtime settings, 10 Heun steps, 8 candidates
    rows = []
    for k in tqdm(range(args.pairs), desc="mirrored pairs", unit="pair"):
        rng = np.random.default_rng([args.seed, k])
        (x, y), yaw, q = sample_table_xy(rng, cfg, reachable_by=("left",)), random_yaw(rng), random_posture(rng, cfg)
        runs = {}
        for arm, cube, cube_yaw in (("left", (x, y), yaw), ("right", (-x, -y), yaw + np.pi)):
            world.reset(cube_xy=cube, cube_yaw=cube_yaw, arm_qpos={arm: q})
            tracker, path = SkillTracker(arm), []

            def on_step(w: TwoArmWorld, tracker=tracker, path=path, arm=arm) -> None:
                tracker(w)
                path.append(w.observation(arm)[EE])

            controller = episode_controller(policy, world, arm, args.seed, k, 10, "heun", 8, timing, realtime)
            run_closed_loop(world, controller, args.seconds, on_step=on_step, timing=timing)
            runs[arm] = {"approached": tracker.approached, "lifted": tracker.lifted, "path": np.array(path)}
        gap = np.linalg.norm(runs["left"]["path"] - runs["right"]["path"], axis=1)
        apart = np.nonzero(gap > DIVERGED)[0]
        rows.append({"pair": k, "cube_start_left": [x, y], "cube_yaw_left": yaw,
                     **{arm: {key: bool(r[key]) for key in ("approached", "lifted")} for arm, r in runs.items()},
                     "max_tool_gap_m": float(gap.max()),
                     "diverged_at_s": float(apart[0] * cfg.control.dt) if len(apart) else None})

    def rate(arm: str) -> dict:
        picks = [r for r in rows if r[arm]["approached"]]
        return {"picks": len(picks), "lifted": sum(r[arm]["lifted"] for r in picks),
                "grasp_and_lift_when_picking": float(np.mean([r[arm]["lifted"] for r in picks])) if picks else None}

    out = {"experiment": "arm_symmetry", "pairs": args.pairs, "seed": args.seed, "timing": args.timing,
           "model": args.model or "models/single_arm",
           "by_arm": {arm: rate(arm) for arm in ("left", "right")},
           "same_outcome": float(np.mean([r["left"] == r["right"] for r in rows])),
           "pairs_within_1mm": int(sum(r["diverged_at_s"] is None for r in rows)),
           "max_tool_gap_m": float(max(r["max_tool_gap_m"] for r in rows)),
           "rows": rows, "machine": machine_description(), "code_version": code_version()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("by_arm", "same_outcome", "pairs_within_1mm", "max_tool_gap_m")}, indent=1))


if __name__ == "__main__":
    main()
