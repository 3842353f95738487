"""CoDi success versus planning latency: the latency-aware planner against the naive one, in real time.

    python experiments/latency_sweep.py [--latencies 0 0.1 0.2 0.3 0.4 0.6] [--episodes 50] [--seed 0]
                                        [--workers 1] [--out experiments/results/latency_sweep]

For every injected latency L and planner (latency-aware: planner.yaml as shipped; naive: --naive) it
runs `codi eval --method codi --latency L` (the world executes what is committed for L while each plan
is computed; deterministic, whatever this machine's speed) in a worker process of one torch thread,
and writes OUT/<planner>_L<ms>.json; runs whose file exists are skipped (resume). The paused protocol
(`--timing paused`) is run once as the reference. Then OUT/summary.json (success, collisions and
completion time per run, with 95 % Wilson intervals) and OUT/latency_sweep.png.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from codi_ros.evaluation.runs import eval_run, wilson

RESULTS = Path(__file__).resolve().parent / "results" / "latency_sweep"
PLANNERS = {"latency_aware": [], "naive": ["--naive"]}


def runs(latencies: list[float]) -> list[tuple[str, list[str]]]:
    """(file stem, codi eval options) of every run of the sweep."""
    out = [("paused", ["--timing", "paused"])]
    for name, extra in PLANNERS.items():
        out += [(f"{name}_L{round(1000 * lat):03d}", ["--latency", str(lat), *extra]) for lat in latencies]
    return out


def run_one(stem: str, options: list[str], args: argparse.Namespace) -> Path:
    path = args.out / f"{stem}.json"
    if eval_run(path, ["--method", "codi", *options], args.episodes, args.seed):
        print(f"done: {stem}", flush=True)
    return path


def summarize(paths: dict[str, Path]) -> list[dict]:
    rows = []
    for stem, path in paths.items():
        d = json.loads(path.read_text())
        agg, n = d["aggregate"], d["aggregate"]["episodes"]
        k = round(agg["success_rate"] * n)
        rows.append({"run": stem, "timing": d["timing"]["mode"], "latency": d["timing"]["latency"],
                     "naive": not d["planner"]["realtime"]["commit"], "episodes": n, "successes": k,
                     "success_rate": agg["success_rate"], "success_ci95": wilson(k, n),
                     "episodes_with_collision": agg["episodes_with_collision"],
                     "completion_time_mean": agg["completion_time_mean"], "plans_dropped": agg.get("plans_dropped"),
                     "file": path.name, "code_version": d["code_version"]})
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for naive, label, colour in ((False, "latency-aware (committed prefix)", "C0"), (True, "naive", "C3")):
        pts = sorted((r["latency"], r) for r in rows if r["timing"] == "realtime" and r["naive"] == naive)
        if not pts:
            continue
        x = [p for p, _ in pts]
        y = [100 * r["success_rate"] for _, r in pts]
        lo = [100 * (r["success_rate"] - r["success_ci95"][0]) for _, r in pts]
        hi = [100 * (r["success_ci95"][1] - r["success_rate"]) for _, r in pts]
        ax1.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=label, color=colour)
        ax2.plot(x, [r["episodes_with_collision"] for _, r in pts], marker="o", label=label, color=colour)
    for r in rows:
        if r["timing"] == "paused":
            ax1.axhline(100 * r["success_rate"], ls="--", color="grey", label="paused (paper's protocol)")
            ax2.axhline(r["episodes_with_collision"], ls="--", color="grey")
    ax1.set(xlabel="injected planning latency (s)", ylabel="handover success (%)", ylim=(0, 100))
    ax2.set(xlabel="injected planning latency (s)", ylabel="episodes with a collision")
    ax1.legend(loc="lower left")
    ax1.grid(alpha=0.3)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latencies", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.6],
                   help="injected latencies, s (default %(default)s)")
    p.add_argument("--episodes", type=int, default=50, help="episodes per run (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="episode seed (default %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="runs at a time, one core each (default %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder (default %(default)s)")
    args = p.parse_args()
    if args.episodes < 1 or args.workers < 1 or any(not (0 <= lat < 10) for lat in args.latencies):
        p.error("need --episodes >= 1, --workers >= 1 and latencies in [0, 10) s")
    args.out.mkdir(parents=True, exist_ok=True)
    todo = runs(args.latencies)
    with ThreadPoolExecutor(args.workers) as pool:
        paths = dict(zip([s for s, _ in todo], pool.map(lambda r: run_one(*r, args), todo), strict=True))
    rows = summarize(paths)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, args.out / "latency_sweep.png")
    for r in rows:
        print(f"{r['run']:22s} {r['successes']:3d}/{r['episodes']}  collisions {r['episodes_with_collision']:3d}  "
              f"dropped {r['plans_dropped']}")


if __name__ == "__main__":
    main()
