"""CoDi sampling: the joint reverse SDE (eq. 11) with score s^(1:N) (eq. 13) + g^J (eq. 17).
(With a learned cost model, g^J is its gradient instead: the classifier-guidance baselines, eq. 49.)

    a(T) ~ N(0, T^2 I),  da = -2t [s^(1:N)(a; t, s) + g^J(a; s, t)] dt + sqrt(2t) dw,  t: T -> 0,

integrated on the EDM time grid by the generic samplers of core/diffusion.py, which take the
composed score as a plain ``score_fn``. Returns the final joint chunk in raw units and the cost
the cost model predicts for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from codi_ros.core import diffusion
from codi_ros.core.composition import JointPolicy, ProductPolicy
from codi_ros.core.cost import Cost, CostValue
from codi_ros.core.guidance import ClassifierGuidance, GuidanceConfig, GuidanceEstimator, tweedie_posterior


@dataclass(frozen=True)
class SamplerConfig:
    steps: int = 32
    guidance: GuidanceConfig | None = field(default_factory=GuidanceConfig)   # None: unguided product
    method: diffusion.SamplerMethod = "sde"   # sde: eq. 11 (Euler-Maruyama); heun, dpmpp2m: probability-flow ODE
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"sampler steps must be >= 1, got {self.steps}")
        if self.method not in diffusion.SAMPLER_METHODS:
            raise ValueError(f"sampler method must be one of {diffusion.SAMPLER_METHODS}, got {self.method!r}")


@dataclass(frozen=True)
class SampleResult:
    actions: Tensor              # (B, N, *event) raw units (policy.unnormalize_actions)
    normalized: Tensor           # (B, N, *event) as sampled
    cost: CostValue | None       # the cost model's prediction for ``actions`` (None without a cost)


class SamplingCancelled(Exception):
    """The caller's ``cancelled()`` turned true: sampling stopped before its next score evaluation."""


class CoDiSampler:
    """Samples joint chunks from pi ∝ exp(-J/lambda) prod_i p^(i) (eq. 7) by the guided reverse SDE."""

    def __init__(self, base: ProductPolicy | JointPolicy, cost: Cost | None, config: SamplerConfig,
                 chunk_shape: tuple[int, ...], cost_model: Any = None):
        """``chunk_shape``: one agent's chunk, (horizon, action dim) -- world.yaml's horizon.prediction and ACT_DIM
        in the planner. ``cost_model``: a noise-conditioned cost model (core/cost_model.py) whose gradient
        replaces g^J (classifier guidance, eq. 49: the CG baselines); ``cost`` then only scores the result."""
        if config.guidance is not None and cost is None:
            raise ValueError("guided sampling needs a cost")
        self.base, self.cost, self.config, self.chunk_shape = base, cost, config, tuple(chunk_shape)
        self.guidance = self.classifier = None
        if config.guidance is not None and cost_model is not None:
            self.classifier = ClassifierGuidance(config.guidance, cost_model, base.unnormalize_actions)
        elif config.guidance is not None:
            self.guidance = GuidanceEstimator(config.guidance, cost, base.unnormalize_actions)

    @torch.no_grad()
    def sample(self, obs: Tensor, state: Any = None, generator: torch.Generator | None = None,
               prefix: Tensor | None = None, warm: tuple[Tensor, float] | None = None,
               cancelled: Callable[[], bool] | None = None) -> SampleResult:
        """obs (B, N, OBS_DIM): B independent joint samples for the same (or per-row) observations.
        ``state`` is handed to the cost; ``generator`` defaults to one seeded with ``config.seed``.

        ``prefix`` (N, d, A) normalised: the first d actions are known (a real-time plan's committed
        actions) and every sample is conditioned on them: a(t)'s prefix is replaced by prefix + t z
        after every step (z: the initial noise), and the guidance's posterior samples carry the prefix
        exactly, so the cost scores the rest together with the motion the prefix commits to. The
        returned samples start with the prefix exactly.

        ``warm = (guess, t_w)``: start from ``guess`` (B, N, *event) normalised, noised to t_w, instead of
        pure noise (:func:`codi_ros.core.diffusion.sample`).

        ``cancelled``: asked before every score evaluation (a few ms apart); True raises
        :class:`SamplingCancelled` (a /codi/stop need not wait for the plan)."""
        cfg, gcfg = self.config, self.config.guidance
        if generator is None:
            generator = torch.Generator().manual_seed(cfg.seed)
        B = obs.shape[0]
        project = pin = None
        if prefix is not None and prefix.shape[-2] > 0:
            d, known = prefix.shape[-2], prefix.to(torch.get_default_dtype())

            def project(x: Tensor, z: Tensor, t: float) -> Tensor:
                x = x.clone()
                x[..., :d, :] = known + t * z[..., :d, :]
                return x

            def pin(samples: Tensor) -> Tensor:
                samples = samples.clone()
                samples[..., :d, :] = known
                return samples

        def score_fn(a: Tensor, t: float) -> Tensor:  # s^(1:N) (eq. 13) + g^J (eq. 17)
            if cancelled is not None and cancelled():
                raise SamplingCancelled(f"cancelled at noise level t = {t:.3g}")
            t_b = torch.full((B,), t, dtype=a.dtype)
            if gcfg is None or not gcfg.active(t):
                return self.base.score(a, t_b, obs)
            if self.classifier is not None:
                return self.base.score(a, t_b, obs) + self.classifier(a, t_b, obs)
            if gcfg.covariance == "jacobian":
                score, jac = self.base.score_and_jacobian(a, t_b, obs)
            else:
                score, jac = self.base.score(a, t_b, obs), None
            posterior = tweedie_posterior(a, t_b, score, gcfg.covariance, gcfg.data_std, jac)
            return score + self.guidance(posterior, state, generator, pin)

        pcfg = self.base.config
        edm = diffusion.EDMConfig(sigma_min=pcfg.sigma_min, sigma_max=pcfg.sigma_max)
        a = diffusion.sample(score_fn, (*obs.shape[:2], *self.chunk_shape), cfg.steps, edm, generator, cfg.method,
                             project=project, warm=warm)
        actions = self.base.unnormalize_actions(a)
        return SampleResult(actions=actions, normalized=a,
                            cost=self.cost(state, actions) if self.cost is not None else None)
