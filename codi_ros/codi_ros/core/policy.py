"""One diffusion policy p_theta(a | s) (paper Sec. III-C): normaliser + score network.

A single-agent policy (``agents: 1``, CoDi's base policy) sees one arm's observation in that arm's
own base frame (frames.observe), so one trained policy serves every identical arm. A joint policy
(``agents: N``, the "macro-agent" of the joint-data baselines, Sec. VII-A) sees all N arms'
observations concatenated in world.yaml's arm order and outputs all N arms' actions per step
(step k of its chunk: arm 1's 7 numbers, then arm 2's, ...), each arm's in its own base frame.

Diffusion runs in the *normalised* action space (each action dimension mapped to [-1, 1] by the
data set's min/max); ``score``/``denoise`` take and return normalised chunks, ``sample`` returns raw
chunks (m/s, rad/s, m).

Saved as ``config.json`` (architecture, noise levels, observation/action layout, format version,
SHA-256 of the weights) + ``model.safetensors`` (weights, normaliser, and a copy of the policy
config in its metadata, so an edited config.json is detected). Loading never unpickles.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from codi_ros.config import from_dict
from codi_ros.core import diffusion
from codi_ros.core.diffusion import EDMConfig
from codi_ros.core.networks import ConditionalUnet1D, UNetConfig
from codi_ros.frames import ACT_DIM, ACTION_FIELDS, OBS_DIM, OBS_FIELDS
from codi_ros.paths import models_dir

FORMAT_VERSION = 1
DEFAULT_MODEL = "single_arm"   # the shipped policy: models/single_arm/
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_SCALE_EPS = 1e-6  # a data range or std below this is treated as constant (scale 1)


class PolicyLoadError(ValueError):
    """A checkpoint is missing, corrupt, or does not match this code."""


@dataclass(frozen=True)
class PolicyConfig:
    horizon: int                                        # actions per chunk (world.yaml horizon.prediction)
    unet: UNetConfig = field(default_factory=UNetConfig)
    edm: EDMConfig = field(default_factory=EDMConfig)
    sample_steps: int = 20                              # default number of sampler steps
    sample_method: str = "sde"                          # "sde" (eq. 5, Euler-Maruyama) or "heun" (ODE)
    agents: int = 1                                     # arms acted for jointly (1: the single-arm policy)

    def __post_init__(self) -> None:
        if self.agents < 1:
            raise ValueError(f"agents must be >= 1, got {self.agents}")
        divisor = 2 ** (len(self.unet.down_dims) - 1)
        if self.horizon < 1 or self.horizon % divisor:
            raise ValueError(f"horizon must be a positive multiple of {divisor} "
                             f"(the UNet halves the chunk {len(self.unet.down_dims) - 1} times), got {self.horizon}")
        if self.sample_steps < 1:
            raise ValueError(f"sample_steps must be >= 1, got {self.sample_steps}")
        if self.sample_method not in diffusion.SAMPLER_METHODS:
            raise ValueError(f"sample_method must be one of {diffusion.SAMPLER_METHODS}, got {self.sample_method!r}")

    @property
    def sigma_min(self) -> float:
        return self.edm.sigma_min

    @property
    def sigma_max(self) -> float:
        return self.edm.sigma_max

    @property
    def obs_dim(self) -> int:
        return self.agents * OBS_DIM

    @property
    def act_dim(self) -> int:
        return self.agents * ACT_DIM

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PolicyConfig:
        """Strict: unknown or missing keys raise ValueError naming them."""
        return from_dict(cls, d, "policy")


def _layout() -> dict[str, list]:
    return {"obs_fields": [list(f) for f in OBS_FIELDS], "action_fields": [list(f) for f in ACTION_FIELDS]}


class DiffusionPolicy(nn.Module):
    """Score model s_theta(a(t); t, s) of one arm, with EDM preconditioning and a normaliser.

    Built with an identity normaliser; use :meth:`from_stats` to set it from ``Dataset.stats()``.
    """

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.config = cfg
        self.net = ConditionalUnet1D(cfg.act_dim, cfg.obs_dim, cfg.unet)
        # normalised = (raw - center) / scale, per dimension
        self.register_buffer("obs_center", torch.zeros(cfg.obs_dim))
        self.register_buffer("obs_scale", torch.ones(cfg.obs_dim))
        self.register_buffer("act_center", torch.zeros(cfg.act_dim))
        self.register_buffer("act_scale", torch.ones(cfg.act_dim))

    @classmethod
    def from_stats(cls, cfg: PolicyConfig, stats: dict[str, dict[str, list[float]]]) -> DiffusionPolicy:
        """Observations by mean/std, actions by min/max to [-1, 1]; constant dimensions get scale 1."""
        policy = cls(cfg)
        obs, act = stats["obs"], stats["actions"]
        values = {"obs_center": obs["mean"], "obs_scale": obs["std"],
                  "act_center": [(hi + lo) / 2 for lo, hi in zip(act["min"], act["max"], strict=True)],
                  "act_scale": [(hi - lo) / 2 for lo, hi in zip(act["min"], act["max"], strict=True)]}
        for name, value in values.items():
            v = torch.as_tensor(value, dtype=torch.float32)
            buf = getattr(policy, name)
            if v.shape != buf.shape or not torch.isfinite(v).all():
                raise ValueError(f"stats for {name} must be {tuple(buf.shape)} finite values, got {tuple(v.shape)}")
            if name.endswith("scale"):
                if (v < 0).any():
                    raise ValueError(f"stats give a negative {name} (min > max or std < 0): {v.tolist()}")
                v = torch.where(v < _SCALE_EPS, torch.ones_like(v), v)
            buf.copy_(v)
        return policy

    @property
    def device(self) -> torch.device:
        return self.obs_center.device

    # --- normalisation -------------------------------------------------------------------------
    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_center) / self.obs_scale

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions - self.act_center) / self.act_scale

    def unnormalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return actions * self.act_scale + self.act_center

    # --- score model -----------------------------------------------------------------------------
    def _check(self, a_t: torch.Tensor, t: torch.Tensor | float, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        shape, obs_dim = (self.config.horizon, self.config.act_dim), self.config.obs_dim
        if a_t.dim() != 3 or tuple(a_t.shape[1:]) != shape:
            raise ValueError(f"a_t must have shape (B, {shape[0]}, {shape[1]}), got {tuple(a_t.shape)}")
        B = a_t.shape[0]
        obs = torch.as_tensor(obs, dtype=a_t.dtype, device=a_t.device)
        if obs.shape[-1:] != (obs_dim,) or obs.dim() > 2 or (obs.dim() == 2 and obs.shape[0] not in (1, B)):
            raise ValueError(f"obs must have shape ({B}, {obs_dim}) or ({obs_dim},), got {tuple(obs.shape)}")
        if not torch.isfinite(obs).all():
            raise ValueError("obs holds NaN or inf")
        t = torch.as_tensor(t, dtype=a_t.dtype, device=a_t.device)
        if t.dim() > 1 or (t.dim() == 1 and t.shape[0] not in (1, B)):
            raise ValueError(f"t must be a scalar or have shape ({B},), got {tuple(t.shape)}")
        if not (t > 0).all():
            raise ValueError("t (noise level) must be > 0")
        return t.expand(B), obs.expand(B, obs_dim)

    def _denoise(self, a_t: torch.Tensor, t: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        c_skip, c_out, c_in, c_noise = diffusion.preconditioning(t, self.config.edm.sigma_data)
        c_skip, c_out, c_in = (c[:, None, None] for c in (c_skip, c_out, c_in))
        return c_skip * a_t + c_out * self.net(c_in * a_t, c_noise, self.normalize_obs(obs))

    def denoise(self, a_t: torch.Tensor, t: torch.Tensor | float, obs: torch.Tensor) -> torch.Tensor:
        """D(a(t); t, s) = c_skip a(t) + c_out F(c_in a(t), c_noise, s) ~ E[a | a(t), s] = a(t) + t^2 s_theta.

        a_t: (B, H, A) normalised, t: scalar or (B,), obs: (B, O) or (O,) raw (A, O: config.act_dim,
        obs_dim). Returns (B, H, A).
        """
        return self._denoise(a_t, *self._check(a_t, t, obs))

    def score(self, a_t: torch.Tensor, t: torch.Tensor | float, obs: torch.Tensor) -> torch.Tensor:
        """s_theta(a(t); t, s) ~ grad log p_t(a(t) | s): (B, H, A), normalised action units; args as denoise."""
        t, obs = self._check(a_t, t, obs)
        return diffusion.score_from_denoiser(self._denoise(a_t, t, obs), a_t, t[:, None, None])

    def loss(self, obs: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """DSM loss (eq. 4) of raw (obs (B, O), action chunks (B, H, A))."""
        return diffusion.dsm_loss(lambda x, t: self.denoise(x, t, obs), self.normalize_actions(actions),
                                  self.config.edm, generator)

    # --- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, obs: torch.Tensor | np.ndarray, n: int = 1, steps: int | None = None,
               generator: torch.Generator | None = None, method: str | None = None) -> torch.Tensor:
        """n raw action chunks per observation: obs (..., O) -> (..., n, H, A) (eq. 5 or Heun)."""
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        obs_dim, act_dim = self.config.obs_dim, self.config.act_dim
        if obs.shape[-1:] != (obs_dim,):
            raise ValueError(f"obs must have shape (..., {obs_dim}), got {tuple(obs.shape)}")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        batch = obs.shape[:-1]
        obs_rep = obs.reshape(-1, obs_dim).repeat_interleave(n, dim=0)
        shape = (obs_rep.shape[0], self.config.horizon, act_dim)
        steps = self.config.sample_steps if steps is None else steps
        x = diffusion.sample(lambda a, t: self.score(a, t, obs_rep), shape, steps, self.config.edm, generator,
                             method or self.config.sample_method, self.device)
        return self.unnormalize_actions(x).reshape(*batch, n, self.config.horizon, act_dim)

    # --- checkpoints -----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write model.safetensors and config.json (each atomically, weights first)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        blob = save_safetensors(tensors, metadata={"format_version": str(FORMAT_VERSION),
                                                   "policy": json.dumps(self.config.to_dict())})
        config = {"format_version": FORMAT_VERSION, "kind": "codi.diffusion_policy", **_layout(),
                  "policy": self.config.to_dict(), "weights_sha256": hashlib.sha256(blob).hexdigest()}
        _atomic_write(d / WEIGHTS_FILE, blob)
        _atomic_write(d / CONFIG_FILE, (json.dumps(config, indent=1) + "\n").encode())

    @classmethod
    def load(cls, directory: str | Path, device: torch.device | str = "cpu") -> DiffusionPolicy:
        """Load a saved policy; raises PolicyLoadError with the reason when anything does not match."""
        d = Path(directory)
        cfg_path, weights_path = d / CONFIG_FILE, d / WEIGHTS_FILE
        for p in (cfg_path, weights_path):
            if not p.is_file():
                raise PolicyLoadError(f"{p}: not found (a policy directory holds {CONFIG_FILE} and {WEIGHTS_FILE})")
        try:
            config = json.loads(cfg_path.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise PolicyLoadError(f"{cfg_path}: not valid JSON ({e})") from None
        if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
            found = config.get("format_version") if isinstance(config, dict) else None
            raise PolicyLoadError(f"{cfg_path}: format_version {found!r}, this code reads {FORMAT_VERSION}")
        expected_keys = {"format_version", "kind", "obs_fields", "action_fields", "policy", "weights_sha256"}
        if set(config) != expected_keys:
            raise PolicyLoadError(f"{cfg_path}: unknown keys {sorted(set(config) - expected_keys)}, "
                                  f"missing keys {sorted(expected_keys - set(config))}")
        for key, value in _layout().items():
            if config[key] != value:
                raise PolicyLoadError(f"{cfg_path}: {key} {config[key]} do not match this code's layout {value} "
                                      "(frames.py changed since the policy was trained)")
        try:
            policy = cls(PolicyConfig.from_dict(config["policy"]))
        except (ValueError, TypeError) as e:
            raise PolicyLoadError(f"{cfg_path}: {e}") from None
        blob = weights_path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != config["weights_sha256"]:
            raise PolicyLoadError(f"{weights_path}: SHA-256 does not match {CONFIG_FILE} (file truncated or modified)")
        try:
            tensors = load_safetensors(blob)
        except (SafetensorError, ValueError) as e:
            raise PolicyLoadError(f"{weights_path}: not a readable safetensors file ({e})") from None
        header = json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])   # safetensors: u64 size + JSON
        trained_with = json.loads(header.get("__metadata__", {}).get("policy", "{}"))
        if trained_with != config["policy"]:
            changed = sorted(k for k in config["policy"] if trained_with.get(k) != config["policy"][k])
            raise PolicyLoadError(f"{cfg_path}: policy.{', policy.'.join(changed)} differ from the config stored with "
                                  f"the weights in {WEIGHTS_FILE} (config.json was edited)")
        _check_state(policy.state_dict(), tensors, weights_path)
        policy.load_state_dict(tensors)
        return policy.to(device).eval()


def load_policy(directory: str | Path | None = None, device: torch.device | str = "cpu") -> DiffusionPolicy:
    """A saved policy; ``None`` loads the shipped one (``models/single_arm``)."""
    return DiffusionPolicy.load(models_dir() / DEFAULT_MODEL if directory is None else directory, device)


def _check_state(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], where: Path) -> None:
    missing, unknown = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or unknown:
        raise PolicyLoadError(f"{where}: weights do not match the config's architecture "
                              f"(missing {missing[:5]}, unknown {unknown[:5]})")
    for k, v in expected.items():
        if found[k].shape != v.shape or found[k].dtype != v.dtype:
            raise PolicyLoadError(f"{where}: {k} is {tuple(found[k].shape)} {found[k].dtype}, "
                                  f"the config's architecture needs {tuple(v.shape)} {v.dtype}")
        if not torch.isfinite(found[k]).all():
            raise PolicyLoadError(f"{where}: {k} holds NaN or inf")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)

