"""Benchmark: time to generate single-arm demonstrations (issue bar: 1000 in <= 10 min on 2 cores).

    python benchmarks/bench_data.py --episodes 1000 --workers 2

Writes benchmarks/results/data_generation.json with the machine description. The data set goes to
a temporary directory (or --out) and is the same one `codi data generate` writes for that seed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from codi_ros.data.generate import generate
from codi_ros.version import code_version, machine_description

RESULTS = Path(__file__).resolve().parent / "results" / "data_generation.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=1000, help="single-arm demonstrations to generate")
    p.add_argument("--workers", type=int, default=2, help="worker processes (one per core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="keep the data set here (default: a temporary dir)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "single"
        summary = generate("single", args.episodes, args.seed, out, workers=args.workers)
    result = {"benchmark": "data_generation", "episodes": args.episodes, "workers": args.workers,
              "wall_seconds": summary["seconds"],
              "minutes_per_1000": round(summary["seconds"] / args.episodes * 1000 / 60, 2),
              "physics_steps_per_second": summary["physics_steps_per_second"],
              "expert_success_rate": summary["expert_success_rate"], "segments": summary["segments"],
              "machine": machine_description(), "code_version": code_version()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
