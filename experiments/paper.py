"""The paper's comparisons (Sec. VII) on the same seeded episodes: one `codi eval` per method and seed,
a summary table and the figures of Figs. 4-8 (success, closest cube-to-goal distance, completion time,
collision episodes, each with its 95 % interval over episodes).

    python experiments/paper.py [--methods codi codi-indep codi-simple codi-20pct codi-joint ...] [--seeds 0 1]
                                [--episodes 50] [--timing paused] [--workers 1] [--out experiments/results/paper]

Every run is `codi eval OPTIONS --episodes N --seed S` in a worker process of one torch thread, written to
OUT/<method>_<timing>_seed<S>.json; a run whose file exists is skipped (resume). ``--timing paused`` (the
default) is the paper's protocol: the world waits for every plan, so methods of different speeds compare as
in the paper; ``realtime`` is how users run the system (README "Measured so far"). Then OUT/summary.json
(episodes of all seeds pooled per method, with the budget: the evaluation's wall time and, from the models'
manifests, what training them took), OUT/budget.md (that budget as a table) and OUT/paper.png.
docs/results.md sets the rows beside the paper's numbers. The methods that learn from two-arm
demonstrations (Sec. VII-B): CoDi-Joint, CoDi-Joint-Simple (the joint policy models/joint), CG-Joint and
CG-Product (+ the cost model models/cost_model), MIMIC-D (models/mimic_d) and the fine-tuned joint policies
DPMD-, SDAC-, EXPO-Joint (models/dpmd_joint, ...; codi finetune).
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from codi_ros.evaluation.runs import eval_run, mean_ci95, wilson

RESULTS = Path(__file__).resolve().parent / "results" / "paper"
MODELS = Path(__file__).resolve().parents[1] / "models"

# name -> (the paper's name, codi eval options, the trained models it uses: models/<name>)
METHODS = {
    "codi": ("CoDi", ["--method", "codi"], ("single_arm",)),
    "codi-indep": ("CoDi-Indep (Sec. VII-C)", ["--method", "codi-indep"], ("single_arm",)),
    "codi-simple": ("CoDi-Simple (Sec. VII-E)", ["--method", "codi-simple"], ("single_arm",)),
    "codi-20pct": ("CoDi, 20 % data (Sec. VII-D)", ["--method", "codi", "--model", str(MODELS / "single_arm_20pct")],
                   ("single_arm_20pct",)),
    # the support ablation: a base policy trained without yield demonstrations (codi data generate --no-yield)
    "codi-no-yield": ("CoDi, base policy without yield demonstrations (support ablation)",
                      ["--method", "codi", "--model", str(MODELS / "single_arm_no_yield")], ("single_arm_no_yield",)),
    # ... and one trained without the out-of-reach resets (codi data generate --out-of-reach-resets 0)
    "codi-no-oor": ("CoDi, base policy without out-of-reach resets (support ablation)",
                    ["--method", "codi", "--model", str(MODELS / "single_arm_no_oor")], ("single_arm_no_oor",)),
    "codi-joint": ("CoDi-Joint (Sec. VII-B)", ["--method", "codi-joint"], ("joint",)),
    "codi-joint-simple": ("CoDi-Joint-Simple (Sec. VII-E)", ["--method", "codi-joint-simple"], ("joint",)),
    # lambda of eq. 49 tuned on 10 episodes of seed 100 (not an evaluation seed) over 0.01, 0.03, 0.1, 1, 10
    # (experiments/results/release/cg_tuning/): the best success, the stronger guidance on a tie
    "cg-joint": ("CG-Joint (Sec. VII-B)", ["--method", "cg-joint", "--temperature", "0.1"], ("joint", "cost_model")),
    "cg-joint-20pct": ("CG-Joint, 20 % data (Sec. VII-D)", ["--method", "cg-joint", "--temperature", "0.1", "--model",
                       str(MODELS / "joint_20pct"), "--cost-model", str(MODELS / "cost_model_20pct")],
                       ("joint_20pct", "cost_model_20pct")),   # lambda as tuned at full data
    "cg-product": ("CG-Product (Sec. VII-D)", ["--method", "cg-product", "--temperature", "0.03"],
                   ("single_arm", "cost_model")),
    "mimic-d": ("MIMIC-D (decentralised, two-arm data)", ["--method", "mimic-d"], ("mimic_d",)),
    # the joint policy fine-tuned by codi finetune (App. D-B to D-D): its base's training and its own
    "dpmd-joint": ("DPMD-Joint (Sec. VII-B)", ["--method", "dpmd-joint"], ("joint", "dpmd_joint")),
    "sdac-joint": ("SDAC-Joint (Sec. VII-B)", ["--method", "sdac-joint"], ("joint", "sdac_joint")),
    "expo-joint": ("EXPO-Joint (Sec. VII-B)", ["--method", "expo-joint"], ("joint", "expo_joint")),
}


def training_budget(models: tuple[str, ...]) -> dict:
    """What training the method's models took, from their manifests (wall time, steps, torch threads)."""
    out = {}
    for name in models:
        m = json.loads((MODELS / name / "manifest.json").read_text())
        out[name] = {"wall_seconds": m["wall_time_s"], "steps": m["steps"], "threads": m["train_config"]["threads"],
                     "data_episodes": m["data"]["split"]["episodes"], "cpu": m["machine"]["cpu"]}
    return out


def summarize(method: str, paths: list[Path]) -> dict:
    """One row of the table: the episodes of every seed's run of ``method`` pooled."""
    runs = [json.loads(p.read_text()) for p in paths]
    episodes = [e for r in runs for e in r["episodes"]]
    n, k = len(episodes), sum(e["success"] for e in episodes)
    collided = sum(e["collisions"] > 0 for e in episodes)
    return {"method": method, "name": METHODS[method][0], "seeds": [r["seed"] for r in runs],
            "timing": runs[0]["timing"]["mode"], "episodes": n, "successes": k, "success_rate": k / n,
            "success_ci95": wilson(k, n),
            "closest_distance_m": mean_ci95([e["min_distance"] for e in episodes]),
            "completion_time_s": mean_ci95([e["completion_time"] for e in episodes if e["success"]]),
            "episodes_with_collision": collided, "collision_ci95": wilson(collided, n),
            "files": [p.name for p in paths], "code_versions": sorted({r["code_version"] for r in runs}),
            "wall_seconds": sum(r["wall_seconds"] for r in runs), "machine": runs[0]["machine"],
            "training": training_budget(METHODS[method][2])}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    x = range(len(rows))

    def bars(ax, values, lows, highs, ylabel):
        ax.bar(x, values, yerr=[lows, highs], capsize=4, color=[f"C{i}" for i in x])
        ax.set_xticks(list(x), [r["method"] for r in rows], rotation=35, ha="right")
        ax.set(ylabel=ylabel)
        ax.grid(axis="y", alpha=0.3)

    def rates(ax, counts: list[int], intervals: list[tuple[float, float]], ylabel):
        share = [k / r["episodes"] for k, r in zip(counts, rows, strict=True)]
        bars(ax, [100 * p for p in share], [100 * (p - lo) for p, (lo, _) in zip(share, intervals, strict=True)],
             [100 * (hi - p) for p, (_, hi) in zip(share, intervals, strict=True)], ylabel)

    rates(axes[0], [r["successes"] for r in rows], [r["success_ci95"] for r in rows], "handover success (%)")
    for ax, key, label in ((axes[1], "closest_distance_m", "closest cube-to-goal distance (m)"),
                           (axes[2], "completion_time_s", "completion time of successes (s)")):
        means, halves = [r[key][0] for r in rows], [r[key][1] for r in rows]
        bars(ax, means, halves, halves, label)
    rates(axes[3], [r["episodes_with_collision"] for r in rows], [r["collision_ci95"] for r in rows],
          "episodes with a collision (%)")
    fig.suptitle(f"{rows[0]['timing']} protocol, {rows[0]['episodes']} episodes per method, 95 % intervals")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def budget_table(rows: list[dict]) -> str:
    """The budget of every row as a Markdown table: the evaluation's wall time and what training its models took
    (a model shared by several rows, e.g. the single-arm policy, is listed in each)."""
    lines = ["| method | evaluation (all seeds) | training of its models |", "| --- | --- | --- |"]
    for r in rows:
        trained = "; ".join(f"{n}: {t['wall_seconds'] / 60:.1f} min, {t['steps']} steps, {t['threads'] or 'default'} "
                            f"thread(s), {t['data_episodes']} episodes" for n, t in r["training"].items())
        lines.append(f"| {r['name']} | {r['wall_seconds'] / 60:.1f} min, {r['episodes']} episodes | {trained} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                   help="methods to run (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="episode seeds (default %(default)s)")
    p.add_argument("--episodes", type=int, default=50, help="episodes per run (paper: 50)")
    p.add_argument("--timing", choices=("paused", "realtime"), default="paused",
                   help="paused (the paper's protocol, default) or realtime (as users run it)")
    p.add_argument("--workers", type=int, default=1, help="runs at a time, one core each (default %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder (default %(default)s)")
    args = p.parse_args()
    if args.episodes < 1 or args.workers < 1 or min(args.seeds) < 0:
        p.error("need --episodes >= 1, --workers >= 1 and seeds >= 0")
    args.out.mkdir(parents=True, exist_ok=True)
    todo = [(m, s, args.out / f"{m}_{args.timing}_seed{s}.json") for m in args.methods for s in args.seeds]

    def run(item: tuple[str, int, Path]) -> None:
        method, seed, path = item
        if eval_run(path, [*METHODS[method][1], "--timing", args.timing], args.episodes, seed):
            print(f"done: {path.name}", flush=True)

    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(run, todo))
    rows = [summarize(m, [path for method, _, path in todo if method == m]) for m in args.methods]
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, args.out / "paper.png")
    (args.out / "budget.md").write_text(budget_table(rows))
    for r in rows:
        lo, hi = r["success_ci95"]
        print(f"{r['method']:12s} {r['successes']:3d}/{r['episodes']} ({100 * lo:.0f}-{100 * hi:.0f} %)  "
              f"collision episodes {r['episodes_with_collision']:3d}  closest {r['closest_distance_m'][0]:.3f} m  "
              f"evaluation {r['wall_seconds'] / 60:.0f} min, training "
              + ", ".join(f"{n} {t['wall_seconds'] / 60:.0f} min ({t['threads'] or 'default'} threads)"
                          for n, t in r["training"].items()))


if __name__ == "__main__":
    main()
