"""The noise-conditioned cost model J_phi(s, a(t); t) of the classifier-guidance baselines (App. D-A, eq. 46-49).

CG-Joint (Sec. VII-B) and CG-Product (Sec. VII-D) never evaluate the cost while sampling. A network is fitted
once to the multi-arm demonstrations by eq. 47,

    L_CG(phi) = E_{(s, a) ~ D_MA, t ~ W, eps ~ N(0, I)} [J_phi(s, a + t eps; t) - J(s, a)]^2,

each segment labelled with the handover cost J(s, a) of its chunk (the eq. 20 cost CoDi evaluates, on the same
cost simulator), and its gradient is the guidance (eq. 49): g(a(t); s, t) = -grad_{a(t)} J_phi(s, a(t); t) / lambda.

Network: the score network's family (core/networks.py): two FiLM residual 1-D conv blocks conditioned on the
noise level and the observation, the mean over the chunk, a linear head. It reads the joint layout of a joint
policy (all arms' observations side by side; (B, H, N*A) chunks normalised by the multi-arm data's min/max,
core/normalizer.py) and predicts in cost units ((J - mean) / std of the training labels inside).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from codi_ros.config import WorldConfig, from_dict
from codi_ros.core import diffusion
from codi_ros.core.checkpoint import ModelLoadError, load_model, save_model
from codi_ros.core.composition import joint_layout
from codi_ros.core.cost import CostValue
from codi_ros.core.diffusion import EDMConfig
from codi_ros.core.networks import ConditionalResidualBlock1D, ConditionEncoder, UNetConfig
from codi_ros.core.normalizer import Normalized
from codi_ros.frames import ACT_DIM, OBS_DIM, WorldState, observe

KIND = "codi.cost_model"
DEFAULT_MODEL = "cost_model"   # models/cost_model: fitted on the multi-arm demonstrations


class CostModelLoadError(ModelLoadError):
    """A cost model checkpoint is missing, corrupt, or does not match this code."""


@dataclass(frozen=True)
class CostModelConfig:
    horizon: int                                          # actions per chunk (world.yaml horizon.prediction)
    agents: int = 2                                       # arms of the joint layout it reads
    unet: UNetConfig = field(default_factory=UNetConfig)  # down_dims[0]: channels of its blocks; kernel, groups, cond
    edm: EDMConfig = field(default_factory=EDMConfig)     # noise range of eq. 47's W; sigma_data scales inputs

    def __post_init__(self) -> None:
        if self.horizon < 1 or self.agents < 1:
            raise ValueError(f"cost_model: horizon and agents must be >= 1, got {self.horizon}, {self.agents}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CostModelConfig:
        return from_dict(cls, d, "cost_model")


class CostNet(nn.Module):
    """F_phi(x, c_noise, obs) -> (B,): FiLM residual blocks over the chunk, mean over time, linear head."""

    def __init__(self, act_dim: int, obs_dim: int, cfg: UNetConfig):
        super().__init__()
        c, k, g = cfg.down_dims[0], cfg.kernel_size, cfg.n_groups
        self.blocks = nn.ModuleList([ConditionalResidualBlock1D(act_dim, c, k, g),
                                     ConditionalResidualBlock1D(c, c, k, g)])
        self.cond = ConditionEncoder(obs_dim, cfg.cond_dim)
        self.film = nn.Linear(cfg.cond_dim, sum(b.film_dim for b in self.blocks))
        self.head = nn.Linear(c, 1)

    def forward(self, x: Tensor, c_noise: Tensor, obs: Tensor) -> Tensor:
        films = self.film(self.cond(c_noise, obs)).split([b.film_dim for b in self.blocks], dim=1)
        h = x.transpose(1, 2)
        for block, film in zip(self.blocks, films, strict=True):
            h = block(h, film)
        return self.head(h.mean(dim=2)).squeeze(-1)


class CostModel(Normalized):
    """J_phi(s, a(t); t): obs (B, N*O) raw, a(t) (B, H, N*A) normalised, t (B,) -> (B,) predicted cost."""

    def __init__(self, cfg: CostModelConfig):
        super().__init__()
        self.config = cfg
        self.net = CostNet(cfg.agents * ACT_DIM, cfg.agents * OBS_DIM, cfg.unet)
        self.register_normalizer(cfg.agents * OBS_DIM, cfg.agents * ACT_DIM)
        self.register_buffer("cost_center", torch.zeros(()))
        self.register_buffer("cost_scale", torch.ones(()))

    @classmethod
    def from_data(cls, cfg: CostModelConfig, stats: dict[str, dict[str, list[float]]], costs: np.ndarray) -> CostModel:
        """Normalised by the joint data statistics (Dataset.stats(joint=True)) and the labels' mean and spread."""
        if costs.ndim != 1 or len(costs) < 2 or not np.all(np.isfinite(costs)):
            raise ValueError(f"cost labels must be >= 2 finite values, got shape {costs.shape}")
        model = cls(cfg).set_stats(stats)
        model.cost_center.fill_(float(costs.mean()))
        model.cost_scale.fill_(max(float(costs.std()), 1e-6))
        return model

    def forward(self, obs: Tensor, a_t: Tensor, t: Tensor) -> Tensor:
        _, _, c_in, c_noise = diffusion.preconditioning(t, self.config.edm.sigma_data)   # EDM's input scaling
        out = self.net(c_in[:, None, None] * a_t, c_noise, self.normalize_obs(obs))
        return self.cost_center + self.cost_scale * out

    def joint_cost(self, obs: Tensor, chunks: Tensor, t: Tensor) -> Tensor:
        """J_phi of raw joint chunks (B, N, H, A) (the planner's layout) for observations (B, N, O)."""
        return self(obs.flatten(1), self.normalize_actions(joint_layout(chunks)), t)

    def loss(self, obs: Tensor, chunks: Tensor, costs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Eq. 47 on raw (obs (B, N*O), chunks (B, H, N*A), J (B,)), in units of the labels' spread. W is
        log-uniform over the sampler's noise levels [sigma_min, sigma_max]: the gradient guides at every level
        the sampler visits, and EDM's training W (ln t ~ N(-1.2, 1.2^2)) leaves t > 5 unseen."""
        a, edm = self.normalize_actions(chunks), self.config.edm
        lo, hi = np.log(edm.sigma_min), np.log(edm.sigma_max)
        t = (lo + (hi - lo) * torch.rand(len(a), generator=generator, device=a.device)).exp()
        eps = torch.randn(a.shape, generator=generator, device=a.device)
        return (((self(obs, a + t[:, None, None] * eps, t) - costs) / self.cost_scale) ** 2).mean()

    def save(self, directory: str | Path) -> None:
        save_model(directory, self, KIND, "cost_model", self.config.to_dict())

    @classmethod
    def load(cls, directory: str | Path) -> CostModel:
        return load_model(directory, KIND, "cost_model", lambda c: cls(CostModelConfig.from_dict(c)),
                          CostModelLoadError).eval()


class LearnedCost:
    """The cost model as a :class:`~codi_ros.core.cost.Cost` on world states: J_phi at the smallest noise level,
    what a classifier-guided method knows of J (the planner ranks its candidates by it)."""

    def __init__(self, model: CostModel, world: WorldConfig):
        self.model, self.world = model, world

    @torch.no_grad()
    def __call__(self, state: WorldState, joint_chunks: Tensor) -> CostValue:
        obs = np.stack([observe(state.arms[n], state.cube, self.world.base_frame(n)) for n in self.world.arm_names])
        K = joint_chunks.shape[0]
        obs_t = torch.as_tensor(obs, dtype=joint_chunks.dtype).expand(K, *obs.shape)
        t = torch.full((K,), self.model.config.edm.sigma_min, dtype=joint_chunks.dtype)
        J = self.model.joint_cost(obs_t, joint_chunks, t)
        return CostValue(total=J, terms={"learned": J})
