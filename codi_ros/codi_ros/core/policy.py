"""One diffusion policy p_theta(a | s) (paper Sec. III-C): normaliser + score network.

A single-agent policy (``agents: 1``, CoDi's base policy) sees one arm's observation in that arm's
own base frame (frames.observe), so one trained policy serves every identical arm. A joint policy
(``agents: N``, the "macro-agent" of the joint-data baselines, Sec. VII-A) sees all N arms'
observations concatenated in world.yaml's arm order and outputs all N arms' actions per step
(step k of its chunk: arm 1's 7 numbers, then arm 2's, ...), each arm's in its own base frame.

Diffusion runs in the *normalised* action space (each action dimension mapped to [-1, 1] by the
data set's min/max); ``score``/``denoise`` take and return normalised chunks, ``sample`` returns raw
chunks (m/s, rad/s, m).

Saved by core/checkpoint.py as ``config.json`` (architecture, noise levels, observation/action layout,
format version, SHA-256 of the weights) + ``model.safetensors`` (weights, normaliser, and a copy of the
policy config in its metadata, so an edited config.json is detected). Loading never unpickles.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codi_ros.config import from_dict
from codi_ros.core import diffusion
from codi_ros.core.checkpoint import ModelLoadError, load_model, model_kind, save_model
from codi_ros.core.diffusion import EDMConfig
from codi_ros.core.networks import ConditionalUnet1D, UNetConfig
from codi_ros.core.normalizer import Normalized
from codi_ros.frames import ACT_DIM, OBS_DIM
from codi_ros.paths import models_dir

DEFAULT_MODEL = "single_arm"   # the shipped policy: models/single_arm/
KIND = "codi.diffusion_policy"
RESIDUAL_KIND = "codi.residual_policy"   # ResidualPolicy: a base policy + a fine-tuned residual


class PolicyLoadError(ModelLoadError):
    """A policy checkpoint is missing, corrupt, or does not match this code."""


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


class DiffusionPolicy(Normalized):
    """Score model s_theta(a(t); t, s) of one arm, with EDM preconditioning and a normaliser (core/normalizer.py).

    Built with an identity normaliser; use :meth:`from_stats` to set it from ``Dataset.stats()``.
    """

    KIND = KIND   # the kind its checkpoints name (core/checkpoint.py)

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.config = cfg
        self.net = ConditionalUnet1D(cfg.act_dim, cfg.obs_dim, cfg.unet)
        self.register_normalizer(cfg.obs_dim, cfg.act_dim)

    @classmethod
    def from_stats(cls, cfg: PolicyConfig, stats: dict[str, dict[str, list[float]]]) -> DiffusionPolicy:
        return cls(cfg).set_stats(stats)

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
        return c_skip * a_t + c_out * self.network(c_in * a_t, c_noise, self.normalize_obs(obs))

    def network(self, x_in: torch.Tensor, c_noise: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """F(c_in a(t), c_noise, s): the network inside the preconditioning (obs normalised)."""
        return self.net(x_in, c_noise, obs)

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

    def loss(self, obs: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None,
             weights: torch.Tensor | None = None) -> torch.Tensor:
        """DSM loss (eq. 4) of raw (obs (B, O), action chunks (B, H, A)), each sample weighted by ``weights`` (B,)
        if given (DPMD's eq. 52)."""
        return diffusion.dsm_loss(lambda x, t: self.denoise(x, t, obs), self.normalize_actions(actions),
                                  self.config.edm, generator, weights)

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
        """Write model.safetensors and config.json (core/checkpoint.py)."""
        save_model(directory, self, self.KIND, "policy", self.config.to_dict())

    @classmethod
    def load(cls, directory: str | Path, device: torch.device | str = "cpu") -> DiffusionPolicy:
        """Load a saved policy; raises PolicyLoadError with the reason when anything does not match."""
        policy = load_model(directory, cls.KIND, "policy", lambda c: cls(PolicyConfig.from_dict(c)), PolicyLoadError)
        return policy.to(device).eval()


class ResidualPolicy(DiffusionPolicy):
    """A fine-tuned policy s_psi = s_theta + g_psi (App. D, eq. 45): a base policy's network, frozen, plus a
    residual network g_psi of the same family, trained by a fine-tuning loss (core/finetune.py). Inside EDM's
    preconditioning D_psi = D_theta + c_out G_psi, i.e. g_psi = c_out G_psi / t^2; G_psi's last layer starts at
    zero, so an untrained residual policy is its base. Everything that samples a policy samples it unchanged."""

    KIND = RESIDUAL_KIND

    def __init__(self, cfg: PolicyConfig):
        super().__init__(cfg)
        self.net.requires_grad_(False)
        self.residual = ConditionalUnet1D(cfg.act_dim, cfg.obs_dim, cfg.unet)
        torch.nn.init.zeros_(self.residual.final[-1].weight)
        torch.nn.init.zeros_(self.residual.final[-1].bias)

    @classmethod
    def from_base(cls, base: DiffusionPolicy) -> ResidualPolicy:
        """The residual policy of ``base`` (its network and normaliser copied), equal to it until trained."""
        if isinstance(base, ResidualPolicy):
            raise ValueError("the base of a residual policy is a plain one (a fine-tuned policy is not re-based)")
        policy = cls(base.config)
        missing, _ = policy.load_state_dict(base.state_dict(), strict=False)
        assert all(k.startswith("residual.") for k in missing), missing
        return policy.to(base.device)

    def network(self, x_in: torch.Tensor, c_noise: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        return self.net(x_in, c_noise, obs) + self.residual(x_in, c_noise, obs)


def load_policy(directory: str | Path | None = None, device: torch.device | str = "cpu") -> DiffusionPolicy:
    """A saved policy, plain or fine-tuned (:class:`ResidualPolicy`, by the kind its config.json names); ``None``
    loads the shipped one (``models/single_arm``)."""
    path = models_dir() / DEFAULT_MODEL if directory is None else Path(directory)
    cls = ResidualPolicy if model_kind(path) == RESIDUAL_KIND else DiffusionPolicy
    return cls.load(path, device)
