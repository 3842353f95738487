"""``codi train``: fit a diffusion policy (or the baselines' cost model) to a demonstration data set.

    codi train --data data/single --out models/single_arm [--steps 40000 --batch-size 256 --resume]
    codi train --data data/multi --joint --out models/joint      # one policy over both arms (CoDi-Joint)
    codi train --data data/multi --cost-model --out models/cost_model   # J_phi of eq. 47 (CG-Joint, CG-Product)

One file, read top to bottom (CleanRL style): config, data split by episode, model + EMA + AdamW,
the loop (DSM loss, eq. 4; for the cost model eq. 47 on labels from the cost simulator,
training/cost_labels.py), periodic validation on held-out episodes and checkpointing. The output
folder holds the EMA model (model.safetensors + config.json, see core/checkpoint.py),
train_state.safetensors (what --resume needs), train_log.csv, loss_curve.png and manifest.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class TrainError(ValueError):
    """A training request that cannot run; the message names the offending option."""


@dataclass(frozen=True)
class TrainConfig:
    data: str                                  # data set directory (data/dataset.py format)
    out: str                                   # output directory
    steps: int = 40_000                        # total optimizer steps (also with --resume)
    batch_size: int = 256
    lr: float = 1e-3                           # AdamW peak learning rate (linear warm-up, cosine decay)
    weight_decay: float = 1e-6
    warmup_steps: int = 500
    ema_decay: float = 0.999                   # the shipped weights are this EMA of the trained ones
    seed: int = 0
    device: str = "cpu"
    fraction: float = 1.0                      # train on the first ceil(fraction * E) episodes
    val_fraction: float = 0.05                 # share of those episodes held out for validation
    eval_every: int = 1000                     # validate, log and checkpoint every this many steps
    val_samples: int = 4096                    # held-out segments per validation (fixed noise)
    threads: int = 0                           # torch CPU threads (0: torch's default)
    down_dims: tuple[int, ...] | None = None   # UNet channels per level (None: core/networks.py default)
    kernel_size: int | None = None             # UNet kernel size (None: core/networks.py default)
    joint: bool = False                        # multi-arm data: one policy over all arms' concatenated observations
                                               # and actions (the macro-agent); False: every arm's rows train one
                                               # single-arm policy
    cost_model: bool = False                   # multi-arm data: fit the noise-conditioned cost model J_phi of the
                                               # classifier-guidance baselines (eq. 47) instead of a policy

    # options that may differ when resuming a run; all others must match the run being resumed
    RESUMABLE = ("steps", "device", "threads", "eval_every", "out")

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "val_samples"):
            if getattr(self, name) < 1:
                raise TrainError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise TrainError(f"--lr must be finite and > 0, got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise TrainError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        if not 0 < self.fraction <= 1:
            raise TrainError(f"--fraction must be in (0, 1], got {self.fraction}")
        if not 0 < self.val_fraction < 1:
            raise TrainError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        if self.threads < 0 or self.warmup_steps < 0 or self.weight_decay < 0:
            raise TrainError("--threads, --warmup-steps and --weight-decay must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    p.add_argument("--data", required=True, help="data set directory (codi data)")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--steps", type=int, default=d["steps"], help="total optimizer steps (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d["batch_size"], help="(default %(default)s)")
    p.add_argument("--lr", type=float, default=d["lr"], help="peak learning rate (default %(default)s)")
    p.add_argument("--weight-decay", type=float, default=d["weight_decay"], help="(default %(default)s)")
    p.add_argument("--warmup-steps", type=int, default=d["warmup_steps"], help="(default %(default)s)")
    p.add_argument("--ema-decay", type=float, default=d["ema_decay"], help="(default %(default)s)")
    p.add_argument("--seed", type=int, default=d["seed"], help="(default %(default)s)")
    p.add_argument("--device", default=d["device"], help="torch device, e.g. cpu or cuda (default %(default)s)")
    p.add_argument("--fraction", type=float, default=d["fraction"],
                   help="train on this leading share of the episodes (default %(default)s)")
    p.add_argument("--val-fraction", type=float, default=d["val_fraction"],
                   help="share of episodes held out for validation (default %(default)s)")
    p.add_argument("--eval-every", type=int, default=d["eval_every"],
                   help="validate, log and checkpoint every N steps (default %(default)s)")
    p.add_argument("--val-samples", type=int, default=d["val_samples"], help="(default %(default)s)")
    p.add_argument("--threads", type=int, default=d["threads"], help="torch CPU threads, 0: default")
    p.add_argument("--down-dims", type=int, nargs="+", help="UNet channels per level (default: the policy's)")
    p.add_argument("--kernel-size", type=int, help="UNet temporal kernel size (default: the policy's)")
    p.add_argument("--joint", action="store_true",
                   help="multi-arm data: train one policy over all arms' observations and actions (the macro-agent "
                        "of the joint-data baselines) instead of one single-arm policy on every arm's rows")
    p.add_argument("--cost-model", action="store_true",
                   help="multi-arm data: fit the noise-conditioned cost model of the classifier-guidance baselines "
                        "(eq. 47; labels: the handover cost of every segment on the cost simulator) instead of a "
                        "policy")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")


def run(args: argparse.Namespace) -> int:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values["data"] = str(Path(values["data"]).resolve())
    if values["down_dims"] is not None:
        values["down_dims"] = tuple(values["down_dims"])
    try:
        train(TrainConfig(**values), resume=args.resume)
    except ValueError as e:   # TrainError, TrainStateError, DatasetError, ConfigError: the message names the cause
        print(f"codi train: error: {e}", file=sys.stderr)
        return 2
    return 0


def episode_split(episode_ends: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask over episodes: True for the (seeded, random) held-out validation episodes."""
    E = len(episode_ends)
    if E < 2:
        raise TrainError(f"--data: need at least 2 episodes to hold some out for validation, got {E}")
    n_val = min(E - 1, max(1, round(val_fraction * E)))
    val = np.zeros(E, dtype=bool)
    val[np.random.default_rng(seed).permutation(E)[:n_val]] = True
    return val


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 0 at cfg.steps."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    return cfg.lr * warm * 0.5 * (1 + math.cos(math.pi * min(step / cfg.steps, 1.0)))


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    import copy

    import torch
    from tqdm import tqdm

    from codi_ros.config import load_world_config
    from codi_ros.core.cost import load_cost_config
    from codi_ros.core.cost_model import CostModel, CostModelConfig
    from codi_ros.core.networks import UNetConfig
    from codi_ros.core.policy import DiffusionPolicy, PolicyConfig
    from codi_ros.data.dataset import load_dataset
    from codi_ros.training.checkpoint import STATE_FILE, load_train_state, save_train_state
    from codi_ros.training.cost_labels import segment_costs
    from codi_ros.training.report import CURVE_FILE, LOG_FILE, MANIFEST_FILE, TrainLog, write_manifest
    from codi_ros.version import code_version

    version = code_version()    # the code that trains, not what is checked out when a checkpoint is written

    unet = UNetConfig(**{k: v for k in ("down_dims", "kernel_size") if (v := getattr(cfg, k)) is not None})
    cfg = dataclasses.replace(cfg, down_dims=unet.down_dims, kernel_size=unet.kernel_size)   # as recorded
    out = Path(cfg.out)
    state = load_train_state(out / STATE_FILE) if resume else None
    if state is None and (out / STATE_FILE).exists():
        raise TrainError(f"--out {out} already holds a training run: pass --resume or choose another --out")
    if state is not None:
        now = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.to_dict().items()}   # as JSON stores it
        changed = [k for k, v in now.items() if k not in TrainConfig.RESUMABLE and state.config.get(k) != v]
        if changed:
            raise TrainError(f"--resume: {', '.join('--' + k.replace('_', '-') for k in changed)} differ from the "
                             f"run saved in {out} ({', '.join(f'{k}={state.config.get(k)!r}' for k in changed)})")
        if cfg.steps <= state.step:
            raise TrainError(f"--steps {cfg.steps}: the run in {out} already has {state.step} steps")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)

    # --- data: receding-horizon segments, split by episode -----------------------------------
    world = load_world_config()
    horizon = world.horizon.prediction
    ds = load_dataset(cfg.data, cfg.fraction)
    joint = cfg.joint or cfg.cost_model
    if joint and ds.num_arms < 2:
        raise TrainError(f"--{'cost-model' if cfg.cost_model else 'joint'}: the data set {cfg.data} holds "
                         f"{ds.num_arms} arm per step (single-arm data); it needs multi-arm data "
                         "(codi data generate --mode multi)")
    if joint:   # one row per step, the arms side by side: (T, 1, A*OBS), (T, 1, H, A*ACT)
        columns = [x[:, None] for x in ds.joint_segments(horizon)]
    else:       # every arm's rows: (T, A, OBS), (T, A, H, ACT)
        columns = list(ds.segments(horizon))
    if cfg.cost_model:   # and the label J(s, a) of every segment: (T, 1)
        columns.append(segment_costs(ds, horizon, world, load_cost_config())[:, None].astype(np.float32))
    val_episodes = episode_split(ds.episode_ends, cfg.val_fraction, cfg.seed)
    is_val = val_episodes[np.searchsorted(ds.episode_ends, np.arange(ds.num_steps), side="right")]

    def to_tensors(mask: np.ndarray) -> list[torch.Tensor]:   # arms flattened into the batch
        return [torch.as_tensor(x[mask].reshape(-1, *x.shape[2:]), device=device) for x in columns]

    train_data, val_data = to_tensors(~is_val), to_tensors(is_val)
    val_pick = torch.randperm(len(val_data[0]), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.val_samples]
    val_data = [x[val_pick.to(device)] for x in val_data]
    split = {"train_segments": len(train_data[0]), "val_segments_total": int(is_val.sum()) * columns[0].shape[1],
             "val_segments_used": len(val_data[0]), "episodes": ds.num_episodes,
             "val_episodes": int(val_episodes.sum())}

    # --- model, EMA, optimizer, random streams -----------------------------------------------
    torch.manual_seed(cfg.seed)
    if cfg.cost_model:
        model_cfg = CostModelConfig(horizon=horizon, agents=ds.num_arms, unet=unet)
        model = CostModel.from_data(model_cfg, ds.stats(joint=True), train_data[2].double().numpy())
        kind, loss_label = "codi.cost_model", "cost model loss (eq. 47, / label std)^2"
    else:
        model_cfg = PolicyConfig(horizon=horizon, unet=unet, agents=ds.num_arms if cfg.joint else 1)
        model = DiffusionPolicy.from_stats(model_cfg, ds.stats(joint=cfg.joint))
        kind = "codi.joint_policy" if cfg.joint else "codi.single_arm_policy"
        loss_label = "DSM loss (eq. 4, EDM weighting)"
    model = model.to(device).train()
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rngs = {"batch": torch.Generator().manual_seed(cfg.seed),                 # which segments
            "noise": torch.Generator(device).manual_seed(cfg.seed + 1)}       # t and eps of the loss
    start, elapsed_before = 0, 0.0
    if state is not None:
        state.restore(model, ema, optimizer, rngs)
        start, elapsed_before = state.step, state.elapsed_s
    out.mkdir(parents=True, exist_ok=True)
    log = TrainLog(out / LOG_FILE, resume_step=start if state is not None else None)

    @torch.no_grad()
    def validation_loss() -> float:  # same noise every time, so successive values are comparable
        g = torch.Generator(device).manual_seed(cfg.seed + 2)
        batches = zip(*(x.split(1024) for x in val_data), strict=True)
        return sum(ema.loss(*b, g).item() * len(b[0]) for b in batches) / len(val_data[0])

    def checkpoint(step: int, elapsed: float) -> None:   # the training state last: --resume starts from it
        ema.save(out)
        log.plot(out / CURVE_FILE, kind.removeprefix("codi.").replace("_", " "), loss_label)
        write_manifest(out / MANIFEST_FILE, kind=kind, data_path=cfg.data, data_meta=ds.meta, split=split,
                       train_config=cfg.to_dict(), model_config=model_cfg.to_dict(), steps=step,
                       target_steps=cfg.steps, wall_time_s=elapsed, log=log, version=version)
        save_train_state(out / STATE_FILE, model, ema, optimizer, rngs, step, elapsed, cfg.to_dict())

    # --- the loop ----------------------------------------------------------------------------
    t0, running, count = time.perf_counter(), 0.0, 0
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="train", unit="step", smoothing=0.05)
    for step in bar:
        idx = torch.randint(len(train_data[0]), (cfg.batch_size,), generator=rngs["batch"]).to(device)
        loss = model.loss(*(x[idx] for x in train_data), rngs["noise"])
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
        running, count = running + loss.item(), count + 1
        if count % 50 == 0:
            bar.set_postfix(loss=f"{running / count:.4f}", refresh=False)

        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            elapsed = elapsed_before + time.perf_counter() - t0
            val = validation_loss()
            log.append(step=step + 1, lr=lr_at(step, cfg), train_loss=running / count, val_loss=val, elapsed_s=elapsed)
            checkpoint(step + 1, elapsed)
            bar.set_postfix(loss=f"{running / count:.4f}", val=f"{val:.4f}")
            running, count = 0.0, 0
    bar.close()
    return out
