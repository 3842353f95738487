"""Stand-ins shared by the tests: a score policy with an exact score, and the EDM noise range it reports."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from codi_ros.frames import OBS_DIM


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
