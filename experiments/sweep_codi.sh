#!/usr/bin/env bash
# CoDi's sensitivity to the guidance temperature lambda and to the lowest guided noise level t_lo
# (config/planner.yaml: guidance.temperature, guidance.t_range), to the goal measure
# (config/cost.yaml: goal.measure final) and to the policy's size (models/single_arm_32ch, 32 channels),
# 50 seeded episodes per setting, two at a time.
# Usage: experiments/sweep_codi.sh [EPISODES] [SEED]   (needs `codi` on PATH: make demo sets up .venv)
# Writes experiments/results/sweep/codi_lambda<L>.json, codi_tlo<T>.json, codi_goal_final.json and
# codi_32ch.json; the shipped setting (lambda 0.01, t_lo 0.3) is experiments/results/codi.json.
set -euo pipefail
cd "$(dirname "$0")/.."
episodes=${1:-50}
seed=${2:-0}
out=experiments/results/sweep
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() {  # run NAME [codi eval options...]
  local name=$1; shift
  codi eval --method codi --episodes "$episodes" --seed "$seed" --no-progress --out "$out/$name.json" "$@" \
    > "$tmp/$name.log" 2>&1 || { cat "$tmp/$name.log"; return 1; }
}
for lam in 0.03 0.1; do
  run "codi_lambda$lam" --temperature "$lam" &
  [[ $(jobs -r | wc -l) -ge 2 ]] && wait -n
done
for tlo in 0.1 1.0; do
  sed "s/^  t_range: \[0.3, 80.0\]/  t_range: [$tlo, 80.0]/" config/planner.yaml > "$tmp/planner_tlo$tlo.yaml"
  grep -q "t_range: \[$tlo, 80.0\]" "$tmp/planner_tlo$tlo.yaml" || { echo "config/planner.yaml: t_range not found"; exit 1; }
  run "codi_tlo$tlo" --planner-config "$tmp/planner_tlo$tlo.yaml" &
  [[ $(jobs -r | wc -l) -ge 2 ]] && wait -n
done
sed "s/^  measure: closest/  measure: final  /" config/cost.yaml > "$tmp/cost_final.yaml"
grep -q "measure: final" "$tmp/cost_final.yaml" || { echo "config/cost.yaml: goal.measure not found"; exit 1; }
run codi_goal_final --cost-config "$tmp/cost_final.yaml" &
[[ $(jobs -r | wc -l) -ge 2 ]] && wait -n
run codi_32ch --model models/single_arm_32ch &
for job in $(jobs -p); do wait "$job"; done
