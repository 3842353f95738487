"""Gradient-free Monte-Carlo estimate of the guidance score g^J (paper eq. 14-19, Appendix A-C/D).

g^J(a(t)) = E_{a ~ p(a | a(t))}[w(a) grad_{a(t)} log q_t(a(t) | a)],  w = exp(-J/lambda) / E[exp(-J/lambda)] - 1,
with the posterior p(a | a(t)) approximated by Tweedie's Gaussian N(mu, Sigma) (eq. 16). Since
grad_{a(t)} log q_t(a(t) | a) = (a - a(t)) / t^2 and the self-normalised weights average to zero,
eq. 17-19 reduce to

    g = (sum_m softmax_m(-J_m / lambda) a_m - mean_m a_m) / t^2,

the shift from the posterior mean to the cost-tilted posterior mean, divided by t^2. We compute it
in this form (log-sum-exp inside softmax), so it is finite for any costs and exactly zero when all
candidates cost the same. Also here: the reparameterised estimator for differentiable costs
(footnote 3) and independent per-agent guidance (the CoDi-Indep ablation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from codi_ros.core.cost import Cost, CostValue

Covariance = Literal["isotropic", "data_prior", "jacobian"]
Estimator = Literal["score_function", "reparameterized"]


@dataclass(frozen=True)
class GuidanceConfig:
    """Parameters of g^J. ``covariance`` picks Sigma in eq. 16:
    isotropic  t^2 I (the paper's default, the t^4 Jacobian term dropped);
    data_prior t^2 sd^2 / (sd^2 + t^2) per dimension (exact for Gaussian data of spread ``data_std``);
    jacobian   t^2 I + t^4 grad s by autodiff (eq. 16 in full; one Jacobian per step, slow)."""

    temperature: float = 0.01                         # lambda in eq. 7
    num_samples: int = 64                             # M in eq. 17
    t_range: tuple[float, float] = (0.3, 80.0)        # guide only when t_lo <= t <= t_hi
    scale: float = 1.0                                # multiplies g^J
    covariance: Covariance = "isotropic"
    data_std: float = 0.5                             # sd of the normalised actions, for "data_prior"
    estimator: Estimator = "score_function"

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"guidance temperature (lambda) must be > 0, got {self.temperature}")
        if self.num_samples < 2:
            raise ValueError(f"guidance num_samples (M) must be >= 2, got {self.num_samples}")
        if not 0 <= self.t_range[0] <= self.t_range[1]:
            raise ValueError(f"guidance t_range must be (t_lo, t_hi) with 0 <= t_lo <= t_hi, got {self.t_range}")
        if not self.scale >= 0:
            raise ValueError(f"guidance scale must be >= 0, got {self.scale}")
        if self.covariance not in ("isotropic", "data_prior", "jacobian"):
            raise ValueError(f"guidance covariance must be isotropic|data_prior|jacobian, got {self.covariance!r}")
        if not self.data_std > 0:
            raise ValueError(f"guidance data_std must be > 0, got {self.data_std}")
        if self.estimator not in ("score_function", "reparameterized"):
            raise ValueError(f"guidance estimator must be score_function|reparameterized, got {self.estimator!r}")

    def active(self, t: float) -> bool:
        return self.scale > 0 and self.t_range[0] <= t <= self.t_range[1]


def _rows(x: Tensor, ndim: int) -> Tensor:
    """Reshape a per-row (B,) tensor to broadcast against a (B, ...) tensor of ``ndim`` dimensions."""
    return x.reshape(-1, *([1] * (ndim - 1)))


@dataclass(frozen=True)
class Posterior:
    """Tweedie's Gaussian N(mean, Sigma) for p(a | a(t), s, t) (eq. 16), block diagonal over agents.

    Sigma is either diagonal (``std`` broadcastable to ``mean``) or, per agent, given by a square
    root ``cov_sqrt`` (B, N, d, d) with cov_sqrt @ cov_sqrt^T = Sigma.
    """

    mean: Tensor                     # (B, N, *event)
    t: Tensor                        # (B,)
    std: Tensor | None = None
    cov_sqrt: Tensor | None = None

    def sample(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """(B, num, N, *event) samples a_m ~ N(mean, Sigma)."""
        B, N = self.mean.shape[:2]
        z = torch.randn((B, num, *self.mean.shape[1:]), generator=generator, dtype=self.mean.dtype)
        if self.cov_sqrt is None:
            return self.mean[:, None] + self.std[:, None] * z
        lz = (self.cov_sqrt[:, None] @ z.reshape(B, num, N, -1, 1)).reshape(z.shape)
        return self.mean[:, None] + lz

    def mean_jacobian(self, v: Tensor) -> Tensor:
        """(d mu / d a(t)) v = (Sigma / t^2) v for (B, N, *event) v (Tweedie: d mu/d a(t) = I + t^2 grad s)."""
        t2 = _rows(self.t, v.ndim) ** 2
        if self.cov_sqrt is None:
            return self.std**2 / t2 * v
        B, N = v.shape[:2]
        sigma = self.cov_sqrt @ self.cov_sqrt.transpose(-1, -2)
        return (sigma @ v.reshape(B, N, -1, 1)).reshape(v.shape) / t2


def tweedie_posterior(a_t: Tensor, t: Tensor, score: Tensor, covariance: Covariance, data_std: float | Tensor = 0.5,
                      score_jacobian: Tensor | None = None) -> Posterior:
    """Eq. 16: mu = a(t) + t^2 s(a(t)), Sigma by ``covariance`` (see :class:`GuidanceConfig`).

    ``score_jacobian`` (B, N, d, d) per-agent blocks are needed for ``covariance="jacobian"``;
    Sigma is symmetrised and its negative eigenvalues (a learned score need not be monotone) clipped.
    """
    t_b = _rows(t, a_t.ndim)
    mean = a_t + t_b**2 * score
    if covariance == "isotropic":
        return Posterior(mean, t, std=t_b.expand_as(a_t))
    if covariance == "data_prior":
        sd2 = torch.as_tensor(data_std, dtype=a_t.dtype) ** 2
        return Posterior(mean, t, std=(t_b**2 * sd2 / (sd2 + t_b**2)).sqrt().expand_as(a_t))
    if covariance == "jacobian":
        if score_jacobian is None:
            raise ValueError("covariance='jacobian' needs the score Jacobian")
        t2 = _rows(t, 4) ** 2
        eye = torch.eye(score_jacobian.shape[-1], dtype=a_t.dtype)
        sigma = t2 * eye + t2**2 * 0.5 * (score_jacobian + score_jacobian.transpose(-1, -2))
        evals, evecs = torch.linalg.eigh(sigma)
        return Posterior(mean, t, cov_sqrt=evecs * evals.clamp_min(0.0).sqrt()[..., None, :])
    raise ValueError(f"unknown posterior covariance {covariance!r}")


def tilted_weights(cost: Tensor, temperature: float) -> Tensor:
    """softmax over candidates (dim 1) of -J/lambda; (B, M, C) -> (B, M, C).

    NaN costs count as +inf (never preferred); candidates at -inf share all the weight. A row whose
    candidates are all infinitely bad gets uniform weights, i.e. no guidance, instead of NaN.
    """
    logits = torch.nan_to_num(-cost / temperature, nan=-torch.inf, posinf=torch.inf)
    best = torch.isposinf(logits)
    logits = torch.where(best.any(dim=1, keepdim=True), torch.where(best, 0.0, -torch.inf), logits)
    all_bad = torch.isneginf(logits).all(dim=1, keepdim=True)
    return torch.softmax(torch.where(all_bad, 0.0, logits), dim=1)


def _per_agent(weights: Tensor, like: Tensor) -> Tensor:
    """(B, M, C) weights, C = 1 (joint) or N (independent), to broadcast against (B, M, N, *event)."""
    return weights.reshape(*weights.shape, *([1] * (like.ndim - 3)))


def score_function_guidance(samples: Tensor, cost: Tensor, t: Tensor, temperature: float) -> Tensor:
    """Eq. 17-19: g = (sum_m softmax(-J/lambda)_m a_m - mean_m a_m) / t^2.

    samples (B, M, N, *event); cost (B, M, C): C = 1 weights the whole joint chunk by J, C = N weights
    agent i's block by its own cost J_i (independent guidance). Returns (B, N, *event).
    """
    w = _per_agent(tilted_weights(cost, temperature), samples)
    shift = (w * samples).sum(dim=1) - samples.mean(dim=1)
    return shift / _rows(t, shift.ndim) ** 2


def _columns(value: CostValue, batch: int) -> Tensor:
    """The cost columns that guide: (B, M, N) per agent when the cost provides them, else (B, M, 1)."""
    c = value.per_agent if value.per_agent is not None else value.total[:, None]
    return c.reshape(batch, -1, c.shape[-1])


class GuidanceEstimator:
    """g^J for a batch of noisy joint chunks, from black-box evaluations of a cost on raw actions."""

    def __init__(self, config: GuidanceConfig, cost: Cost, unnormalize: Callable[[Tensor], Tensor]):
        self.config, self.cost, self.unnormalize = config, cost, unnormalize

    def __call__(self, posterior: Posterior, state: Any, generator: torch.Generator | None = None,
                 pin: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Scaled guidance score (B, N, *event) for the posterior at a(t); ``state`` is passed to the cost.
        ``pin`` sets the known part of every posterior sample (B, M, N, *event), e.g. the committed prefix
        of a real-time plan: p(a | a(t)) is then exact (a point) there, and g is zero there."""
        samples = posterior.sample(self.config.num_samples, generator)
        if pin is not None:
            samples = pin(samples)
        if self.config.estimator == "reparameterized":
            g = self._reparameterized(posterior, samples, state)
        else:
            with torch.no_grad():
                value = self.cost(state, self.unnormalize(samples.flatten(0, 1)))
            g = score_function_guidance(samples, _columns(value, samples.shape[0]), posterior.t,
                                        self.config.temperature)
        return self.config.scale * g

    def _reparameterized(self, posterior: Posterior, samples: Tensor, state: Any) -> Tensor:
        """Footnote 3: with a_m = mu(a(t)) + Sigma^{1/2} z_m,
        g = grad_{a(t)} log mean_m exp(-J(a_m)/lambda) = -(1/lambda) (d mu/d a(t))^T sum_m softmax_m grad J(a_m)
        (the dependence of Sigma on a(t) is dropped). Needs a cost differentiable in the actions."""
        B, lam = samples.shape[0], self.config.temperature
        with torch.enable_grad():
            x = samples.detach().requires_grad_(True)
            cost = _columns(self.cost(state, self.unnormalize(x.flatten(0, 1))), B)           # (B, M, C)
            C = cost.shape[-1]
            grads = [torch.autograd.grad(cost[..., c].sum(), x, retain_graph=c < C - 1)[0] for c in range(C)]
        # Column c guides agent c (independent) or every agent (joint, C = 1).
        grad = grads[0] if C == 1 else torch.stack([grads[c][:, :, c] for c in range(C)], dim=2)
        w = _per_agent(tilted_weights(cost.detach(), lam), grad)
        return -posterior.mean_jacobian((w * torch.nan_to_num(grad)).sum(dim=1)) / lam


class ClassifierGuidance:
    """Eq. 48-49, the classifier-guidance baselines (CG-Joint, CG-Product): g = -scale grad_{a(t)} J_phi(s, a(t); t)
    / lambda, from a learned noise-conditioned cost model (core/cost_model.py) instead of cost evaluations.

    a(t) is the base policy's normalised joint chunk (B, N, H, A); it is mapped into the cost model's own
    normalisation (raw = ``unnormalize(a(t))``, affine, so the gradient is exact). The noise level is passed
    as it is: exact for a joint policy (the same data statistics), approximate for a product of single-arm
    policies, whose normaliser differs per dimension by the ratio of the two data sets' action ranges."""

    def __init__(self, config: GuidanceConfig, model: Any, unnormalize: Callable[[Tensor], Tensor]):
        self.config, self.model, self.unnormalize = config, model, unnormalize

    def __call__(self, a_t: Tensor, t: Tensor, obs: Tensor) -> Tensor:
        """a_t (B, N, H, A), t (B,), obs (B, N, O) raw -> g (B, N, H, A)."""
        with torch.enable_grad():
            x = a_t.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.model.joint_cost(obs, self.unnormalize(x), t).sum(), x)
        return -self.config.scale * torch.nan_to_num(grad) / self.config.temperature
