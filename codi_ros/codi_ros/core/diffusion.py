"""Continuous-time diffusion with sigma(t) = t (paper Sec. III, eq. 2-5) and EDM ingredients.

Forward process: x(t) = x + t eps, i.e. dx = sqrt(2t) dw (eq. 2). The network is wrapped in the
EDM preconditioning (Karras et al. [12]) to give a denoiser D(x(t); t) ~ E[x | x(t)], from which

    score  s(x(t); t) = (D(x(t); t) - x(t)) / t^2          (Tweedie)

is the quantity every sampler below consumes. The samplers take a generic ``score_fn(x, t)``
(x: any shape, t: float) so that the CoDi coordinator can pass a composed score (eq. 12/13:
stacked per-agent scores plus a guidance term) to the very same time grid and steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

ScoreFn = Callable[[torch.Tensor, float], torch.Tensor]
DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SamplerMethod = Literal["sde", "heun", "dpmpp2m"]
SAMPLER_METHODS: tuple[str, ...] = ("sde", "heun", "dpmpp2m")


@dataclass(frozen=True)
class EDMConfig:
    """Noise levels of training (log-normal) and sampling (EDM grid), in normalised data units."""

    sigma_data: float = 0.5    # std of the (normalised) data, sets the preconditioning
    sigma_min: float = 0.002   # smallest noise level of the sampling grid
    sigma_max: float = 80.0    # T: the sampler starts from N(0, T^2 I)
    rho: float = 7.0           # grid curvature (EDM eq. 5)
    p_mean: float = -1.2       # ln t ~ N(p_mean, p_std^2) during training
    p_std: float = 1.2

    def __post_init__(self) -> None:
        if not self.sigma_data > 0:
            raise ValueError(f"edm.sigma_data must be > 0, got {self.sigma_data}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"edm: need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if not self.rho > 0:
            raise ValueError(f"edm.rho must be > 0, got {self.rho}")
        if not self.p_std > 0:
            raise ValueError(f"edm.p_std must be > 0, got {self.p_std}")


def preconditioning(t: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """EDM's (c_skip, c_out, c_in, c_noise) for D(x; t) = c_skip x + c_out F(c_in x, c_noise)."""
    s2 = t * t + sigma_data**2
    return sigma_data**2 / s2, t * sigma_data / s2.sqrt(), 1.0 / s2.sqrt(), t.log() / 4


def score_from_denoiser(denoised: torch.Tensor, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Tweedie: s = (D - x) / t^2, the inverse of the posterior mean a(t) + t^2 s (eq. 16)."""
    return (denoised - x) / (t * t)


def sample_noise_levels(n: int, cfg: EDMConfig, generator: torch.Generator | None = None,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """t ~ W: ln t ~ N(p_mean, p_std^2) (EDM's training distribution)."""
    return (cfg.p_mean + cfg.p_std * torch.randn(n, generator=generator, device=device)).exp()


def denoising_loss(denoise_fn: DenoiseFn, x_t: torch.Tensor, t: torch.Tensor, target: torch.Tensor, cfg: EDMConfig,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """E [w ||D(x(t); t) - target||^2], each sample weighted by EDM's lambda(t) = (t^2 + sigma_data^2) /
    (t sigma_data)^2 (every noise level then gives the network a unit-scale regression target) and by its
    ``weights`` (B,) if given. Minimised by D(x; t) = the w-weighted mean of the targets of x(t) = x: with the
    target the clean sample, the posterior mean (eq. 4); the fine-tuning losses (core/finetune.py) weight it."""
    tb = t.view(-1, *([1] * (x_t.dim() - 1)))
    weight = (tb * tb + cfg.sigma_data**2) / (tb * cfg.sigma_data) ** 2
    if weights is not None:
        weight = weight * weights.view_as(tb)
    return (weight * (denoise_fn(x_t, t) - target) ** 2).mean()


def dsm_loss(denoise_fn: DenoiseFn, x0: torch.Tensor, cfg: EDMConfig, generator: torch.Generator | None = None,
             weights: torch.Tensor | None = None) -> torch.Tensor:
    """Denoising score matching, eq. 4: E ||t^2 s(x + t eps; t) + t eps||^2 = E ||D(x + t eps; t) - x||^2, with
    t ~ W (:func:`sample_noise_levels`) and EDM's weighting (:func:`denoising_loss`, ``weights`` per sample).
    ``denoise_fn(x_t, t)`` takes t of shape (B,)."""
    t = sample_noise_levels(x0.shape[0], cfg, generator, x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device)
    return denoising_loss(denoise_fn, x0 + t.view(-1, *([1] * (x0.dim() - 1))) * eps, t, x0, cfg, weights)


def time_grid(steps: int, cfg: EDMConfig, device: torch.device | str = "cpu") -> torch.Tensor:
    """EDM discretisation t_0 = sigma_max > ... > t_{steps-1} = sigma_min, then t_steps = 0."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    i = torch.arange(steps, dtype=torch.float64)
    hi, lo = cfg.sigma_max ** (1 / cfg.rho), cfg.sigma_min ** (1 / cfg.rho)
    ramp = i / max(steps - 1, 1)
    t = (hi + ramp * (lo - hi)) ** cfg.rho
    return torch.cat([t, t.new_zeros(1)]).to(device=device, dtype=torch.float32)


def sde_step(score_fn: ScoreFn, x: torch.Tensor, t: float, t_next: float,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """One Euler-Maruyama step of the reverse SDE (eq. 5 / eq. 11) from t down to t_next.

    x <- x + 2t (t - t_next) s(x; t) + sqrt(2t (t - t_next)) z. The final step to t_next = 0 is
    the noise-free Tweedie mean x + t^2 s(x; t) (an Euler-Maruyama step there would overshoot).
    """
    score = score_fn(x, t)
    if t_next == 0:
        return x + t * t * score
    dt = t - t_next
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + 2 * t * dt * score + math.sqrt(2 * t * dt) * z


def heun_step(score_fn: ScoreFn, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """One step of the probability-flow ODE dx/dt = -t s(x; t), Heun's method (EDM Alg. 1).

    Falls back to Euler on the final step to t_next = 0, where the slope is undefined.
    """
    d = -t * score_fn(x, t)
    x_euler = x + (t_next - t) * d
    if t_next == 0:
        return x_euler
    d_next = -t_next * score_fn(x_euler, t_next)
    return x + (t_next - t) * 0.5 * (d + d_next)


def dpmpp2m_step(score_fn: ScoreFn, x: torch.Tensor, t: float, t_next: float,
                 previous: tuple[float, torch.Tensor] | None) -> tuple[torch.Tensor, tuple[float, torch.Tensor]]:
    """One step of DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) on the probability-flow ODE, one score
    evaluation per step: with the denoiser D = x + t^2 s(x; t) (Tweedie) and lambda = -ln t,

        x_next = (t_next / t) x + (1 - t_next / t) D',   D' = (1 + 1/2r) D - (1/2r) D_prev,  r = h_prev / h,

    h = ln(t / t_next): D extrapolated linearly in lambda from the previous step's ``previous = (t_prev,
    D_prev)``, second order. The first step (no previous) and the final one to t_next = 0 use D itself.
    Returns x_next and this step's (t, D) for the next."""
    denoised = x + t * t * score_fn(x, t)
    d = denoised
    if previous is not None and t_next > 0:
        t_prev, denoised_prev = previous
        r = math.log(t_prev / t) / math.log(t / t_next)
        d = (1 + 0.5 / r) * denoised - (0.5 / r) * denoised_prev
    return (t_next / t) * x + (1 - t_next / t) * d, (t, denoised)


def sample(score_fn: ScoreFn, shape: tuple[int, ...], steps: int, cfg: EDMConfig,
           generator: torch.Generator | None = None, method: SamplerMethod = "sde",
           device: torch.device | str = "cpu",
           project: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None = None,
           warm: tuple[torch.Tensor, float] | None = None) -> torch.Tensor:
    """Integrate from x(T) ~ N(0, T^2 I), T = sigma_max, down to t = 0 on the EDM grid (eq. 5).

    ``warm = (x0, t_w)`` starts instead from a guess x0 of the clean sample noised to the first grid
    level t0 <= t_w, x(t0) = x0 + t0 z, and runs only the grid's steps below it (SDEdit's warm start).
    ``project(x, z, t)`` (inpainting by replacement) overwrites the known part of x at noise level t
    after every step, given the initial noise z; at t = 0 it must return the known values."""
    if method not in SAMPLER_METHODS:
        raise ValueError(f"method must be one of {SAMPLER_METHODS}, got {method!r}")
    grid = time_grid(steps, cfg).tolist()
    z = torch.randn(shape, generator=generator, device=device)
    if warm is None:
        x = grid[0] * z
    else:
        x0, t_w = warm
        grid = [t for t in grid if t <= t_w]
        if len(grid) < 2:
            raise ValueError(f"warm start at t = {t_w} leaves no step of the {steps}-step grid")
        x = x0.to(z.dtype) + grid[0] * z
    if project is not None:
        x = project(x, z, grid[0])
    previous = None   # dpmpp2m's last denoised estimate
    for t, t_next in zip(grid[:-1], grid[1:], strict=True):
        if method == "sde":
            x = sde_step(score_fn, x, t, t_next, generator)
        elif method == "heun":
            x = heun_step(score_fn, x, t, t_next)
        else:
            x, previous = dpmpp2m_step(score_fn, x, t, t_next, previous)
        if project is not None:
            x = project(x, z, t_next)
    return x
