"""Stand-ins shared by the tests: a score policy with an exact score, the EDM noise range it reports, and
shipped config files with one value changed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from codi_ros.core.guidance import GuidanceConfig
from codi_ros.core.planner import PlannerConfig
from codi_ros.frames import OBS_DIM
from codi_ros.paths import config_dir


def small_planner_config(steps: int, num_samples: int, **changes: Any) -> PlannerConfig:
    """A planner cheap enough for tests: one candidate, the reverse SDE, lambda 0.1 and guidance at every
    noise level (the shipped planner.yaml: 8 candidates, Heun, lambda 0.01, t >= 0.3)."""
    guidance = GuidanceConfig(temperature=0.1, num_samples=num_samples, t_range=(0.0, math.inf))
    return PlannerConfig(**{"steps": steps, "sampler": "sde", "candidates": 1, "coherence": 0.0,
                            "guidance": guidance, **changes})


def shipped_config(name: str) -> dict[str, Any]:
    """The installed ``config/<name>`` as a dict."""
    return yaml.safe_load((config_dir() / name).read_text())


def edited_config(folder: Path, name: str, key: str, value: Any) -> Path:
    """``config/<name>`` with ``key`` ("steps", "guidance.temperature") set to ``value``, written into ``folder``."""
    data = shipped_config(name)
    *sections, last = key.split(".")
    target = data
    for section in sections:
        target = target[section]
    target[last] = value
    path = Path(folder) / name
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass(frozen=True)
class EDMGrid:
    sigma_min: float = 0.002
    sigma_max: float = 80.0


class GaussianPolicy:
    """Stand-in for the learned policy: normalised actions ~ N(0, I) whatever the observation,
    raw = 0.1 * a (+0.04 m for the gripper width); ``score_value`` replaces the score (e.g. NaN)."""

    config = EDMGrid()
    scale = torch.tensor([0.1] * 6 + [0.04])
    offset = torch.tensor([0.0] * 6 + [0.04])

    def __init__(self, score_value: float | None = None):
        self.score_value = score_value

    def score(self, a_t, t, obs):
        assert obs.shape == (a_t.shape[0], OBS_DIM)
        if self.score_value is not None:
            return torch.full_like(a_t, self.score_value)
        return -a_t / (1 + t[:, None, None] ** 2)

    def denoise(self, a_t, t, obs):
        return a_t + t[:, None, None] ** 2 * self.score(a_t, t, obs)

    def normalize_actions(self, a):
        return (a - self.offset) / self.scale

    def unnormalize_actions(self, a):
        return a * self.scale + self.offset
