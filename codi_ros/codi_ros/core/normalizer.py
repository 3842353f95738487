"""The normaliser every learned model here shares: observations by mean/std, actions by min/max to [-1, 1].

Stored as buffers (``obs_center``, ``obs_scale``, ``act_center``, ``act_scale``: normalised = (raw - center)
/ scale, per dimension) so that they travel with the weights. Set from ``Dataset.stats()``.
"""

from __future__ import annotations

from typing import Self

import torch
from torch import nn

_SCALE_EPS = 1e-6  # a data range or std below this is treated as constant (scale 1)


class Normalized(nn.Module):
    """Base class: call :meth:`register_normalizer` in ``__init__``, :meth:`set_stats` once trained data is known."""

    def register_normalizer(self, obs_dim: int, act_dim: int) -> None:
        self.register_buffer("obs_center", torch.zeros(obs_dim))
        self.register_buffer("obs_scale", torch.ones(obs_dim))
        self.register_buffer("act_center", torch.zeros(act_dim))
        self.register_buffer("act_scale", torch.ones(act_dim))

    def set_stats(self, stats: dict[str, dict[str, list[float]]]) -> Self:
        """Observations by mean/std, actions by min/max to [-1, 1]; constant dimensions get scale 1."""
        obs, act = stats["obs"], stats["actions"]
        values = {"obs_center": obs["mean"], "obs_scale": obs["std"],
                  "act_center": [(hi + lo) / 2 for lo, hi in zip(act["min"], act["max"], strict=True)],
                  "act_scale": [(hi - lo) / 2 for lo, hi in zip(act["min"], act["max"], strict=True)]}
        for name, value in values.items():
            v = torch.as_tensor(value, dtype=torch.float32)
            buf = getattr(self, name)
            if v.shape != buf.shape or not torch.isfinite(v).all():
                raise ValueError(f"stats for {name} must be {tuple(buf.shape)} finite values, got {tuple(v.shape)}")
            if name.endswith("scale"):
                if (v < 0).any():
                    raise ValueError(f"stats give a negative {name} (min > max or std < 0): {v.tolist()}")
                v = torch.where(v < _SCALE_EPS, torch.ones_like(v), v)
            buf.copy_(v.to(buf.device))
        return self

    @property
    def device(self) -> torch.device:
        return self.obs_center.device

    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_center) / self.obs_scale

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions - self.act_center) / self.act_scale

    def unnormalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return actions * self.act_scale + self.act_center
