#!/usr/bin/env bash
# Closed-loop evaluations behind the numbers in the README (paper Sec. VII), 50 seeded episodes each.
# Usage: experiments/evaluate_all.sh [EPISODES] [SEED]   (needs `codi` on PATH: make demo sets up .venv)
# Writes experiments/results/<method>.json (per-episode and aggregate metrics, machine, code version).
set -euo pipefail
cd "$(dirname "$0")/.."
episodes=${1:-50}
seed=${2:-0}
out=experiments/results
mkdir -p "$out"
codi eval --method single-arm --episodes "$episodes" --seed "$seed" --out "$out/single_arm.json" --no-progress
codi eval --method single-arm --episodes "$episodes" --seed "$seed" --model models/single_arm_20pct \
  --out "$out/single_arm_20pct.json" --no-progress
for method in codi codi-indep scripted; do
  codi eval --method "$method" --episodes "$episodes" --seed "$seed" --out "$out/${method//-/_}.json" --no-progress
done
codi eval --method codi --episodes "$episodes" --seed "$seed" --model models/single_arm_20pct \
  --out "$out/codi_20pct.json" --no-progress
