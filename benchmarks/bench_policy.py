"""Benchmark: speed of the single-arm diffusion policy on this machine's CPU.

    python benchmarks/bench_policy.py [--model models/single_arm] [--threads 2] [--repeats 200]

Issue targets (2 cores): one batched score call for 2 x 64 = 128 chunks <= 3 ms; training of the
shipped model <= 30 minutes. Measured here:

  score   one s_theta(a(t); t, s) evaluation for 2 arms x 64 candidate chunks (what CoDi calls per step)
  sample  a full 20-step sample of those 128 chunks: reverse SDE (eq. 5, 20 calls) and Heun (39 calls)
  train   one optimizer step at the default batch size, and the implied time of the default run
  sizes   (--sizes) the score call of other UNet sizes (random weights), and its floor: the dense
          matrix products the shipped size's convolutions amount to (im2col), timed alone

Other processes share the CPU, so every figure is the median (and 10th percentile) of repeated
runs. Without --model the policy has random weights (speed does not depend on them). Writes
benchmarks/results/policy_speed.json with machine_description().
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from timing import sample_ms  # benchmarks/timing.py (scripts run from benchmarks/)

from codi_ros.config import load_world_config
from codi_ros.core.policy import DiffusionPolicy, PolicyConfig
from codi_ros.frames import ACT_DIM, OBS_DIM
from codi_ros.training.train import TrainConfig
from codi_ros.version import code_version, machine_description

RESULTS = Path(__file__).resolve().parent / "results" / "policy_speed.json"
ARMS, CANDIDATES = 2, 64


def timed(fn: Callable[[], object], repeats: int, warmup: int = 5) -> dict[str, float]:
    ms = sorted(sample_ms(fn, repeats, warmup))
    return {"median_ms": round(statistics.median(ms), 3), "p10_ms": round(ms[len(ms) // 10], 3),
            "min_ms": round(ms[0], 3), "repeats": repeats}


SIZES = [((64,), 5), ((64,), 3), ((48,), 5), ((48,), 3), ((32,), 5), ((32,), 3)]   # (down_dims, kernel_size)


@torch.no_grad()
def sizes(config: PolicyConfig, a_t: torch.Tensor, t: torch.Tensor, obs: torch.Tensor, repeats: int) -> dict:
    """Score-call time of other UNet sizes, and the time of the convolutions of ``config`` as bare matrix
    products: (B*H, C_in*k) @ (C_in*k, C_out) per convolution, no normalisation, activation or FiLM."""
    out = {}
    for dims, k in SIZES:
        cfg = replace(config, unet=replace(config.unet, down_dims=dims, kernel_size=k))
        policy = DiffusionPolicy(cfg).eval()
        out[f"{dims[0]}ch_k{k}"] = {"parameters": sum(p.numel() for p in policy.parameters()),
                                    **timed(lambda policy=policy: policy.score(a_t, t, obs), repeats)}
    rows = a_t.shape[0] * a_t.shape[1]
    convs = [(m.in_channels * m.kernel_size[0], m.out_channels)
             for m in DiffusionPolicy(config).net.modules() if isinstance(m, torch.nn.Conv1d)]
    mats = [(torch.randn(rows, i), torch.randn(i, o)) for i, o in convs]
    out["matmul_floor"] = {"convolutions": len(convs),
                           "gflop": round(sum(2 * rows * i * o for i, o in convs) / 1e9, 3),
                           **timed(lambda: [x @ w for x, w in mats], repeats)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="a saved policy (default: default config, random weights)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=200, help="timed score calls (samples and train steps: 1/10)")
    p.add_argument("--steps", type=int, default=20, help="sampler steps")
    p.add_argument("--sizes", action="store_true", help="also time other UNet sizes and the matrix-product floor")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    horizon = load_world_config().horizon.prediction
    policy = (DiffusionPolicy.load(args.model) if args.model else DiffusionPolicy(PolicyConfig(horizon=horizon))).eval()
    H = policy.config.horizon

    g = torch.Generator().manual_seed(0)
    B = ARMS * CANDIDATES
    a_t, obs = torch.randn(B, H, ACT_DIM, generator=g), 0.1 * torch.randn(B, OBS_DIM, generator=g)
    t = torch.full((B,), 0.5)
    with torch.no_grad():
        score = timed(lambda: policy.score(a_t, t, obs), args.repeats)
    n_sample = max(args.repeats // 10, 5)
    sample = {m: timed(lambda m=m: policy.sample(obs[:ARMS], n=CANDIDATES, steps=args.steps, generator=g, method=m),
                       n_sample, warmup=1) for m in ("sde", "heun")}

    train_cfg = TrainConfig(data="-", out="-")
    train_policy = DiffusionPolicy(policy.config).train()
    optimizer = torch.optim.AdamW(train_policy.parameters(), lr=train_cfg.lr)
    batch_obs = torch.randn(train_cfg.batch_size, OBS_DIM, generator=g)
    batch_act = torch.randn(train_cfg.batch_size, H, ACT_DIM, generator=g)

    def train_step() -> None:
        loss = train_policy.loss(batch_obs, batch_act, g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    train = timed(train_step, max(args.repeats // 4, 10))
    result = {
        "benchmark": "policy_speed", "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
        "model": str(args.model) if args.model else "default config, random weights",
        "policy_config": policy.config.to_dict(),
        "parameters": sum(p.numel() for p in policy.parameters()),
        "score_batch": {"chunks": B, "arms": ARMS, "candidates": CANDIDATES, **score},
        "sample": {"chunks": B, "steps": args.steps, **{m: r for m, r in sample.items()}},
        "train_step": {"batch_size": train_cfg.batch_size, **train,
                       "default_run_steps": train_cfg.steps,
                       "default_run_minutes_at_median": round(train["median_ms"] * train_cfg.steps / 6e4, 1)},
        "sizes": sizes(policy.config, a_t, t, obs, args.repeats) if args.sizes else None,
        "targets": {"score_batch_ms": 3.0, "train_minutes": 30.0},
        "machine": machine_description(), "code_version": code_version(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("parameters", "score_batch", "sample", "train_step", "sizes")}, indent=1))


if __name__ == "__main__":
    main()
