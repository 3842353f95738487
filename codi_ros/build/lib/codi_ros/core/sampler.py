"""CoDi sampling: the joint reverse SDE (eq. 11) with score s^(1:N) (eq. 13) + g^J (eq. 17).

    a(T) ~ N(0, T^2 I),  da = -2t [s^(1:N)(a; t, s) + g^J(a; s, t)] dt + sqrt(2t) dw,  t: T -> 0,

integrated on the EDM time grid. Returns the final joint chunk in raw units and the cost the
cost model predicts for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from codi_ros.core.composition import ProductPolicy
from codi_ros.core.cost import Cost, CostValue
from codi_ros.core.guidance import GuidanceConfig, GuidanceEstimator, tweedie_posterior


def edm_time_grid(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. (EDM) noise levels t_0 = sigma_max > ... > t_{steps-1} = sigma_min, then t_steps = 0."""
    i = torch.arange(steps, dtype=torch.float64)
    ramp = i / max(steps - 1, 1)
    t = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([t, t.new_zeros(1)])


def reverse_sde_step(a: Tensor, score: Tensor, t: float, t_next: float, generator: torch.Generator | None) -> Tensor:
    """One step of da = -2t s dt + sqrt(2t) dw from t to t_next < t, discretised in t^2 (the
    variance-exact reverse-diffusion step of Song et al.): a + (t^2 - t_next^2) s + sqrt(t^2 - t_next^2) z.
    The last step (t_next = 0) adds no noise: it is Tweedie's denoiser a + t^2 s."""
    dv = t * t - t_next * t_next
    a = a + dv * score
    if t_next > 0:
        a = a + dv**0.5 * torch.randn(a.shape, generator=generator, dtype=a.dtype)
    return a


@dataclass(frozen=True)
class SamplerConfig:
    steps: int = 32
    guidance: GuidanceConfig | None = field(default_factory=GuidanceConfig)   # None: unguided product
    rho: float = 7.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"sampler steps must be >= 1, got {self.steps}")


@dataclass(frozen=True)
class SampleResult:
    actions: Tensor              # (B, N, *event) raw units (policy.unnormalize_actions)
    normalized: Tensor           # (B, N, *event) as sampled
    cost: CostValue | None       # the cost model's prediction for ``actions`` (None without a cost)


class CoDiSampler:
    """Samples joint chunks from pi ∝ exp(-J/lambda) prod_i p^(i) (eq. 7) by the guided reverse SDE."""

    def __init__(self, product: ProductPolicy, cost: Cost | None, config: SamplerConfig,
                 chunk_shape: tuple[int, ...] = (16, 7)):
        if config.guidance is not None and cost is None:
            raise ValueError("guided sampling needs a cost")
        self.product, self.cost, self.config, self.chunk_shape = product, cost, config, tuple(chunk_shape)
        self.guidance = (GuidanceEstimator(config.guidance, cost, product.unnormalize_actions)
                         if config.guidance is not None else None)

    @torch.no_grad()
    def sample(self, obs: Tensor, state: Any = None, generator: torch.Generator | None = None) -> SampleResult:
        """obs (B, N, OBS_DIM): B independent joint samples for the same (or per-row) observations.
        ``state`` is handed to the cost; ``generator`` defaults to one seeded with ``config.seed``."""
        cfg, gcfg = self.config, self.config.guidance
        if generator is None:
            generator = torch.Generator().manual_seed(cfg.seed)
        B, N = obs.shape[:2]
        pcfg = self.product.config
        grid = edm_time_grid(cfg.steps, pcfg.sigma_min, pcfg.sigma_max, cfg.rho).tolist()
        a = grid[0] * torch.randn((B, N, *self.chunk_shape), generator=generator, dtype=obs.dtype)
        for t, t_next in zip(grid[:-1], grid[1:]):
            t_b = torch.full((B,), t, dtype=a.dtype)
            guide = self.guidance is not None and gcfg.active(t)
            if guide and gcfg.covariance == "jacobian":
                score, jac = self.product.score_and_jacobian(a, t_b, obs)
            else:
                score, jac = self.product.score(a, t_b, obs), None
            if guide:
                posterior = tweedie_posterior(a, t_b, score, gcfg.covariance, gcfg.data_std, jac)
                score = score + self.guidance(posterior, state, generator)
            a = reverse_sde_step(a, score, t, t_next, generator)
        actions = self.product.unnormalize_actions(a)
        return SampleResult(actions=actions, normalized=a,
                            cost=self.cost(state, actions) if self.cost is not None else None)
