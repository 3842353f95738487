"""The score network: a 1-D temporal conditional UNet over an action chunk (Chi et al. [1]).

The chunk (B, H, A) is treated as an A-channel signal of length H. Every residual block is
conditioned by FiLM (a per-channel scale and bias) on a vector made of the noise-level embedding
and the normalised observation. Sized for CPU inference (see ``UNetConfig`` defaults and
benchmarks/bench_policy.py); Chi et al.'s own default is ``down_dims=(256, 512, 1024)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    down_dims: tuple[int, ...] = (64, 128)  # channels per resolution level; the chunk is halved between levels
    kernel_size: int = 3
    n_groups: int = 8                       # GroupNorm groups
    noise_embed_dim: int = 32               # width of the noise-level embedding

    def __post_init__(self) -> None:
        if not self.down_dims or any(d <= 0 or d % self.n_groups for d in self.down_dims):
            raise ValueError(f"unet.down_dims must be positive multiples of n_groups={self.n_groups}, "
                             f"got {self.down_dims}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"unet.kernel_size must be odd and positive, got {self.kernel_size}")
        if self.noise_embed_dim < 2 or self.noise_embed_dim % 2:
            raise ValueError(f"unet.noise_embed_dim must be even and >= 2, got {self.noise_embed_dim}")


class NoiseEmbedding(nn.Module):
    """Sinusoidal features of the scalar noise input c_noise = ln(t)/4 (EDM), then an MLP."""

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(100.0), half)), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.Mish(), nn.Linear(2 * dim, dim))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        x = c_noise[:, None] * self.freqs[None, :]
        return self.mlp(torch.cat([x.sin(), x.cos()], dim=-1))


class Conv1dBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, n_groups: int):
        super().__init__(nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2),
                         nn.GroupNorm(n_groups, c_out), nn.Mish())


class ConditionalResidualBlock1D(nn.Module):
    """Two conv blocks with a FiLM modulation (scale, bias from the condition) in between."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.block1 = Conv1dBlock(c_in, c_out, kernel_size, n_groups)
        self.block2 = Conv1dBlock(c_out, c_out, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.residual = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, bias = self.film(cond)[:, :, None].chunk(2, dim=1)
        h = self.block1(x) * scale + bias
        return self.block2(h) + self.residual(x)


class ConditionalUnet1D(nn.Module):
    """F_theta(x_in, c_noise, obs) -> (B, H, A): the raw network inside the EDM preconditioning."""

    def __init__(self, act_dim: int, obs_dim: int, cfg: UNetConfig):
        super().__init__()
        k, g = cfg.kernel_size, cfg.n_groups
        cond_dim = cfg.noise_embed_dim + obs_dim
        self.noise_embedding = NoiseEmbedding(cfg.noise_embed_dim)
        dims = (act_dim, *cfg.down_dims)
        levels = list(zip(dims[:-1], dims[1:]))
        self.down = nn.ModuleList(nn.ModuleList([
            ConditionalResidualBlock1D(c_in, c_out, cond_dim, k, g),
            ConditionalResidualBlock1D(c_out, c_out, cond_dim, k, g),
            nn.Conv1d(c_out, c_out, 3, stride=2, padding=1) if i < len(levels) - 1 else nn.Identity(),
        ]) for i, (c_in, c_out) in enumerate(levels))
        mid = cfg.down_dims[-1]
        self.mid = nn.ModuleList([ConditionalResidualBlock1D(mid, mid, cond_dim, k, g) for _ in range(2)])
        self.up = nn.ModuleList(nn.ModuleList([
            ConditionalResidualBlock1D(2 * c_out, c_in, cond_dim, k, g),
            ConditionalResidualBlock1D(c_in, c_in, cond_dim, k, g),
            nn.ConvTranspose1d(c_in, c_in, 4, stride=2, padding=1),
        ]) for c_in, c_out in reversed(levels[1:]))
        self.final = nn.Sequential(Conv1dBlock(dims[1], dims[1], k, g), nn.Conv1d(dims[1], act_dim, 1))
        self.downsamplings = len(levels) - 1

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """x: (B, H, A) preconditioned input, c_noise: (B,), obs: (B, obs_dim) normalised."""
        if x.shape[1] % (2 ** self.downsamplings):
            raise ValueError(f"chunk length {x.shape[1]} must be divisible by {2 ** self.downsamplings}")
        cond = torch.cat([self.noise_embedding(c_noise), obs], dim=-1)
        h = x.transpose(1, 2)
        skips = []
        for block1, block2, downsample in self.down:
            h = block2(block1(h, cond), cond)
            skips.append(h)
            h = downsample(h)
        for block in self.mid:
            h = block(h, cond)
        for block1, block2, upsample in self.up:
            h = block2(block1(torch.cat([h, skips.pop()], dim=1), cond), cond)
            h = upsample(h)
        return self.final(h).transpose(1, 2)
