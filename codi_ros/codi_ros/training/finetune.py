"""``codi finetune``: the fine-tuning baselines DPMD-Joint, SDAC-Joint, EXPO-Joint (App. D-B to D-D).

    codi finetune --method dpmd --base models/joint --data data/multi --out models/dpmd_joint
                  [--iterations 3 --states 1024 --samples 8 --steps 1500 --temperature 0.1]

Read top to bottom: the base joint policy (codi train --joint) becomes a residual policy s_theta + g_psi
(eq. 45, core/policy.ResidualPolicy, the residual a UNet of the base's family starting at zero). Each iteration
draws ``states`` states of the multi-arm data's training episodes, ``samples`` chunks per state from the current
policy pi_old, their handover cost J (eq. 20, config/cost.yaml, on the kinematic cost simulator), and fits the
residual by the method's loss (core/finetune.py: eq. 52, 55 or 56 with eq. 57) for ``steps`` AdamW steps; the
base stays frozen. After every iteration the mean J of the policy's samples on held-out states is logged (the
objective fine-tuning lowers). The output folder holds the policy (model.safetensors + config.json, kind
codi.residual_policy; ``codi eval --method dpmd-joint --model OUT``), train_log.csv, loss_curve.png and
manifest.json (seed, config, code version, machine, wall time, the J per iteration).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class FinetuneConfig:
    method: str                    # dpmd (eq. 52) | sdac (eq. 55) | expo (eq. 56-57)
    base: str                      # the joint policy fine-tuned (codi train --joint)
    data: str                      # the multi-arm data set it was trained on (codi data generate --mode multi)
    out: str                       # output directory
    iterations: int = 3            # policy iterates pi_old -> pi_new
    states: int = 1024             # data states per iteration
    samples: int = 8               # chunks of pi_old per state
    steps: int = 1500              # AdamW steps per iteration
    batch_size: int = 256
    lr: float = 3e-4               # constant, after a linear warm-up of 100 steps
    temperature: float = 0.1       # lambda of exp(-J / lambda), cost units (J is ~0.1-5 here)
    points: int = 8                # sdac: points a(t) + t eps~ per noisy sample; expo: MPPI perturbations (eq. 57)
    edit_sigma: float = 0.1        # expo: std of the MPPI perturbations, normalised action units
    sample_steps: int = 16         # denoising steps when sampling pi_old (dpmpp2m, the planner's sampler)
    val_states: int = 128          # held-out states whose samples' mean J is logged
    seed: int = 0
    fraction: float = 1.0          # use the first ceil(fraction * E) episodes of the data
    threads: int = 1               # torch CPU threads

    def __post_init__(self) -> None:
        from codi_ros.core.finetune import METHODS

        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name in ("iterations", "states", "samples", "steps", "batch_size", "points", "sample_steps",
                     "val_states", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "temperature", "edit_sigma"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"--{name.replace('_', '-')} must be finite and > 0, got {getattr(self, name)}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"--fraction must be in (0, 1], got {self.fraction}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = {f.name: f.default for f in dataclasses.fields(FinetuneConfig)}
    p.add_argument("--method", required=True, choices=("dpmd", "sdac", "expo"),
                   help="dpmd: cost-weighted DSM (eq. 52) | sdac: soft-optimal score (eq. 55) | expo: DSM of "
                        "MPPI-edited samples (eq. 56-57)")
    p.add_argument("--base", required=True, help="the joint policy to fine-tune (codi train --joint)")
    p.add_argument("--data", required=True, help="the multi-arm data set (codi data generate --mode multi)")
    p.add_argument("--out", required=True, help="output model directory (must not hold a model yet)")
    for name in ("iterations", "states", "samples", "steps", "batch_size", "points", "sample_steps", "val_states",
                 "seed", "threads"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=d[name], help="(default %(default)s)")
    for name in ("lr", "temperature", "edit_sigma", "fraction"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=d[name], help="(default %(default)s)")


def run(args: argparse.Namespace) -> int:
    names = {f.name for f in dataclasses.fields(FinetuneConfig)}
    try:
        finetune(FinetuneConfig(**{k: v for k, v in vars(args).items() if k in names}))
    except ValueError as e:   # bad options, PolicyLoadError, DatasetError: the message names the cause
        print(f"codi finetune: error: {e}", file=sys.stderr)
        return 2
    return 0


def finetune(cfg: FinetuneConfig) -> Path:
    import torch
    from tqdm import tqdm

    from codi_ros.config import load_world_config
    from codi_ros.core import diffusion
    from codi_ros.core.composition import agent_layout
    from codi_ros.core.cost import HandoverCost, load_cost_config
    from codi_ros.core.finetune import CostFn, cost_weights, mppi_edit, sdac_targets
    from codi_ros.core.kinematic_model import KinematicModel
    from codi_ros.core.policy import ResidualPolicy, load_policy
    from codi_ros.data.dataset import load_dataset
    from codi_ros.training.cost_labels import segment_states
    from codi_ros.training.report import CURVE_FILE, LOG_FILE, MANIFEST_FILE, TrainLog, write_manifest
    from codi_ros.training.train import TrainConfig, episode_split
    from codi_ros.version import code_version

    version, start_time = code_version(), time.perf_counter()
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    if (out / "model.safetensors").exists():
        raise ValueError(f"--out {out} already holds a model: choose another --out")

    # --- the base policy, the data's states and their cost ----------------------------------
    world = load_world_config()
    base = load_policy(cfg.base)
    if base.config.agents != len(world.arms) or isinstance(base, ResidualPolicy):
        what = "a fine-tuned policy" if isinstance(base, ResidualPolicy) else f"a policy of {base.config.agents} arm(s)"
        raise ValueError(f"--base {cfg.base}: {what}; fine-tuning needs the plain joint policy of the "
                         f"{len(world.arms)} arms (codi train --joint)")
    ds = load_dataset(cfg.data, cfg.fraction)
    obs_all = torch.as_tensor(ds.joint_segments(base.config.horizon)[0])     # (T, N*O), segment_states' steps
    states = segment_states(ds, world)
    cost_config = load_cost_config()
    cost = HandoverCost(cost_config, KinematicModel(world, cost_config.kinematic_model), world.arm_names)
    val_episodes = episode_split(ds.episode_ends, TrainConfig.val_fraction, cfg.seed)   # codi train's held-out split
    is_val = val_episodes[np.searchsorted(ds.episode_ends, np.arange(ds.num_steps), side="right")]
    rng = np.random.default_rng(cfg.seed)
    train_idx, val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    val_pick = rng.choice(val_idx, min(cfg.val_states, len(val_idx)), replace=False)

    policy = ResidualPolicy.from_base(base)
    generator = torch.Generator().manual_seed(cfg.seed)
    num_arms = len(world.arms)

    def costs(idx: np.ndarray) -> CostFn:
        """J of normalised joint-layout chunks (S, K, H, N*A) at the data states ``idx`` -> (S, K)."""
        def cost_fn(x: torch.Tensor) -> torch.Tensor:
            raw = agent_layout(policy.unnormalize_actions(x), num_arms)      # (S, K, N, H, A)
            return torch.stack([cost(states[i], raw[s]).total for s, i in enumerate(idx)])
        return cost_fn

    @torch.no_grad()
    def draw(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(obs (S, N*O), normalised chunks (S, K, H, N*A)) of the current policy at the states ``idx``."""
        obs = obs_all[idx]
        chunks = torch.cat([policy.sample(o, n=cfg.samples, steps=cfg.sample_steps, generator=generator,
                                          method="dpmpp2m") for o in obs.split(256)])
        return obs, policy.normalize_actions(chunks)

    def mean_cost(idx: np.ndarray) -> float:
        policy.eval()
        return float(costs(idx)(draw(idx)[1]).mean())

    optimizer = torch.optim.AdamW(policy.residual.parameters(), lr=cfg.lr, weight_decay=0.0)
    out.mkdir(parents=True, exist_ok=True)
    log, edm = TrainLog(out / LOG_FILE), policy.config.edm
    history = [{"iteration": 0, "val_mean_cost": round(mean_cost(val_pick), 4)}]
    print(f"codi finetune {cfg.method}: iteration 0, held-out mean J {history[0]['val_mean_cost']}", flush=True)

    # --- the iterations -------------------------------------------------------------------------
    for it in range(1, cfg.iterations + 1):
        idx = rng.choice(train_idx, cfg.states, replace=False)
        policy.eval()
        obs, x0 = draw(idx)                                                  # pi_old's samples
        cost_fn = costs(idx)
        J = cost_fn(x0)                                                      # (S, K)
        weights = None
        if cfg.method == "dpmd":                                             # eq. 52
            weights = cost_weights(J, cfg.temperature)
        elif cfg.method == "expo":                                           # eq. 57, then eq. 56
            x0 = mppi_edit(x0, cost_fn, cfg.temperature, cfg.edit_sigma, cfg.points, generator)
        else:                                                                # eq. 55
            t_all = diffusion.sample_noise_levels(x0.shape[0] * x0.shape[1], edm, generator).reshape(J.shape)
            x_t, target = sdac_targets(x0, t_all, cost_fn, cfg.temperature, cfg.points, generator)
        rows = obs.repeat_interleave(cfg.samples, dim=0)                     # (S*K, N*O)
        flat = lambda x: x.flatten(0, 1)  # noqa: E731
        policy.train()
        running = 0.0
        for step in tqdm(range(cfg.steps), desc=f"{cfg.method} iteration {it}/{cfg.iterations}", unit="step",
                         mininterval=2):
            b = torch.randint(len(rows), (cfg.batch_size,), generator=generator)
            denoise = functools.partial(policy.denoise, obs=rows[b])
            if cfg.method == "sdac":
                loss = diffusion.denoising_loss(denoise, flat(x_t)[b], flat(t_all)[b], flat(target)[b], edm)
            else:
                loss = diffusion.dsm_loss(denoise, flat(x0)[b], edm, generator,
                                          None if weights is None else flat(weights)[b])
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * min(1.0, ((it - 1) * cfg.steps + step + 1) / 100)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item()
        val = mean_cost(val_pick)
        history.append({"iteration": it, "train_mean_cost": round(float(J.mean()), 4), "val_mean_cost": round(val, 4)})
        print(f"codi finetune {cfg.method}: iteration {it}, samples' mean J {float(J.mean()):.4f} (training "
              f"states), {val:.4f} after (held-out)", flush=True)
        elapsed = time.perf_counter() - start_time
        log.append(step=it * cfg.steps, lr=cfg.lr, train_loss=running / cfg.steps, val_loss=val, elapsed_s=elapsed)
        policy.eval().save(out)
        log.plot(out / CURVE_FILE, f"{cfg.method.upper()}-Joint fine-tuning", "loss (train) / mean J (held out)",
                 val_label="mean J of the policy's samples, held-out states")
        write_manifest(out / MANIFEST_FILE, kind="codi.residual_policy", data_path=str(Path(cfg.data).resolve()),
                       data_meta=ds.meta, split={"episodes": ds.num_episodes, "val_episodes": int(val_episodes.sum()),
                                                 "states_per_iteration": cfg.states},
                       train_config=dataclasses.asdict(cfg) | {"base": str(Path(cfg.base).resolve()),
                                                               "cost_history": history},
                       model_config=policy.config.to_dict(), steps=it * cfg.steps,
                       target_steps=cfg.iterations * cfg.steps, wall_time_s=elapsed, log=log, version=version)
    return out
