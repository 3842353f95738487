"""What the fine-tuning baselines DPMD-Joint, SDAC-Joint and EXPO-Joint fit (App. D-B to D-D, eq. 50-57).

Each fine-tunes the residual g_psi of a :class:`~codi_ros.core.policy.ResidualPolicy` (eq. 45, s_psi = s_theta +
g_psi) on chunks a ~ pi_old(. | s) of its current iterate at states s of the multi-arm data, scored by the
handover cost J (eq. 20 on the cost simulator, the J CoDi's guidance evaluates). All three are one denoising
loss (:func:`~codi_ros.core.diffusion.denoising_loss`; with D = a(t) + t^2 s, ||t^2 s_psi(a + t eps) + t eps||^2
is ||D_psi(a + t eps) - a||^2):

- DPMD (eq. 52): the DSM loss of the samples, each weighted by exp(-J(s, a) / lambda). Minimised by the score of
  pi_old exp(-J / lambda) (eq. 51), the mirror-descent step from pi_old.
- SDAC (eq. 55): at a(t) = a + t eps, M points a~_m = a(t) + t eps~_m, weighted by exp(-J(s, a~_m) / lambda);
  D_psi(a(t)) is fitted to their weighted mean, by Tweedie the denoiser of exp(-J / lambda) (eq. 54) noised to
  t (:func:`sdac_targets`). Eq. 55 as printed (J at a(t) + t eps~, +t eps~ in the norm) is minimised by the
  opposite sign; this is the consistent form.
- EXPO (eq. 56): the plain DSM loss of the samples after the MPPI edit of eq. 57 (:func:`mppi_edit`).

The weights exp(-J / lambda) are normalised over the samples of one state (SDAC: over the M points of one
a(t)). Per state the minimiser stays as it is; a state whose samples all cost much does not vanish from the fit.
Everything here is in the policy's normalised action space; ``cost_fn`` maps normalised chunks to J.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

CostFn = Callable[[Tensor], Tensor]   # (S, K, ...) normalised chunks of S states -> (S, K) J
METHODS = ("dpmd", "sdac", "expo")


def cost_weights(J: Tensor, temperature: float) -> Tensor:
    """exp(-J / lambda) over the last dimension (the samples of one state), normalised to mean 1."""
    return torch.softmax(-J / temperature, dim=-1) * J.shape[-1]


def _around(x0: Tensor, offsets: Tensor, cost_fn: CostFn, temperature: float) -> Tensor:
    """Weights (M, S, K) of the M points x0 + offsets[m] (offsets (M, S, K, ...)), softmax of -J / lambda over m."""
    M, S, K = offsets.shape[:3]
    points = (x0 + offsets).movedim(0, 2).flatten(1, 2)                   # (S, K * M, ...), m fastest
    J = cost_fn(points).reshape(S, K, M)
    return torch.softmax(-J / temperature, dim=-1).movedim(-1, 0)


def _weighted_sum(w: Tensor, x: Tensor) -> Tensor:
    """sum_m w[m] x[m] for weights (M, S, K) and x (M, S, K, ...)."""
    return (w.reshape(*w.shape, *([1] * (x.dim() - w.dim()))) * x).sum(0)


def sdac_targets(x0: Tensor, t: Tensor, cost_fn: CostFn, temperature: float, points: int,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """SDAC's regression pairs: x0 (S, K, ...) samples of pi_old, t (S, K) their noise levels -> a(t) = x0 + t eps
    and the weighted mean of the ``points`` a(t) + t eps~_m (weights exp(-J / lambda) over m), the target of
    D_psi(a(t)) (:func:`~codi_ros.core.diffusion.denoising_loss`)."""
    tb = t.reshape(*t.shape, *([1] * (x0.dim() - 2)))
    x_t = x0 + tb * torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    offsets = tb * torch.randn((points, *x0.shape), generator=generator, dtype=x0.dtype)
    return x_t, x_t + _weighted_sum(_around(x_t, offsets, cost_fn, temperature), offsets)


def mppi_edit(x0: Tensor, cost_fn: CostFn, temperature: float, sigma: float, points: int,
              generator: torch.Generator | None = None) -> Tensor:
    """Eq. 57: x0 (S, K, ...) + sum_i w_i a^_i, a^_i ~ N(0, sigma^2 I), w_i proportional to
    exp(-J(s, x0 + a^_i) / lambda): EXPO's locally improved demonstrations."""
    offsets = sigma * torch.randn((points, *x0.shape), generator=generator, dtype=x0.dtype)
    return x0 + _weighted_sum(_around(x0, offsets, cost_fn, temperature), offsets)
