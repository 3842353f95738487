"""Summarise handover traces (`codi eval ... --trace DIR`): who carried the cube where, episode by episode.

    python experiments/summarize_traces.py DIR [--failed]

One line per episode: success, start and goal, each arm's closest approach of its tool to the cube, then
every carry as `arm[t0-t1 s] -> (x, y) d=D`, where D is the cube's distance to the goal when the carry ended.
At the end, counts over the episodes:

  backward carry  a carry that ended >= 10 cm further from the goal than it began (the base policy's
                  pick-and-place mode winning over the guidance)
  handed over     a second arm held the cube at some point
  never grasped   no arm ever held the cube
  stayed home     an arm whose tool never came within 0.3 m of the cube (it never engaged)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

BACKWARD = 0.10   # m
ENGAGED = 0.30    # m


def carries(steps: list[list], columns: list[str], cube: np.ndarray, goal: np.ndarray) -> list[dict]:
    """Maximal runs of steps in which the same single arm holds the cube; ``cube`` (T, 3) its positions."""
    holders = [tuple(s[columns.index("holding")]) for s in steps] + [()]
    runs, start = [], 0
    for k in range(1, len(holders)):
        if holders[k] != holders[start]:
            if len(holders[start]) == 1:
                runs.append({"arm": holders[start][0], "t0": steps[start][0], "t1": steps[k - 1][0],
                             "begin": float(np.linalg.norm(cube[start] - goal)),
                             "end": float(np.linalg.norm(cube[k - 1] - goal)), "to": cube[k - 1, :2]})
            start = k
    return runs


def closest_approach(steps: list[list], columns: list[str], cube: np.ndarray) -> dict[str, float]:
    """Per arm in the trace, the smallest distance of its tool to the cube over the episode, m."""
    out = {}
    for arm in ("left", "right"):
        if f"{arm}_x" in columns:
            tool = np.array([[s[columns.index(f"{arm}_{k}")] for k in "xyz"] for s in steps])
            out[arm] = float(np.linalg.norm(cube - tool, axis=1).min())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trace_dir", type=Path, help="the --trace directory of codi eval")
    p.add_argument("--failed", action="store_true", help="print failed episodes only (counts cover all)")
    args = p.parse_args()
    files = sorted(args.trace_dir.glob("episode_*.json"))
    if not files:
        raise SystemExit(f"summarize_traces: no episode_*.json in {args.trace_dir}")
    counts = {"episodes": 0, "success": 0, "backward carry": 0, "handed over": 0, "never grasped": 0,
              "stayed home": 0}
    for f in files:
        d = json.loads(f.read_text())
        goal, summary, steps = np.asarray(d["goal"]), d["summary"], d["steps"]
        cube = np.array([[s[d["columns"].index(k)] for k in ("cube_x", "cube_y", "cube_z")] for s in steps])
        runs = carries(steps, d["columns"], cube, goal)
        closest = closest_approach(steps, d["columns"], cube)
        counts["stayed home"] += any(v > ENGAGED for v in closest.values())
        counts["episodes"] += 1
        counts["success"] += bool(summary["success"])
        counts["backward carry"] += any(r["end"] - r["begin"] >= BACKWARD for r in runs)
        counts["handed over"] += len({r["arm"] for r in runs}) > 1
        counts["never grasped"] += not runs
        if args.failed and summary["success"]:
            continue
        cube0 = cube[0]
        text = " ".join(f"{r['arm']}[{r['t0']:.0f}-{r['t1']:.0f}s]->({r['to'][0]:+.2f},{r['to'][1]:+.2f}) "
                        f"d={r['end']:.2f}" for r in runs)
        print(f"{d['episode']:3d} {'ok  ' if summary['success'] else 'FAIL'} final {summary['final_distance']:.2f} m "
              f"start ({cube0[0]:+.2f},{cube0[1]:+.2f}) goal ({goal[0]:+.2f},{goal[1]:+.2f}) "
              f"collisions {summary['collisions']}  closest " + ", ".join(f"{a} {v:.2f}" for a, v in closest.items())
              + f" m  {text or 'never grasped'}")
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
