"""Tasks and seeded sampling: cube starts, placement targets, goals and start postures.

A :class:`HandoverTask` is data (where the cube starts, where the goal is, how the arms start),
loaded from YAML by :func:`load_task`; the paper's handover (Sec. VI: cube on the left half, goal
at the right end, arms near home) is the default. Episode ``index`` of a run with ``seed`` is
``task.reset(world, seed, index)``, the same in ``codi eval``, ``codi demo``, the experiments and
``sim_node``'s resets.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from codi_ros.config import ConfigError, WorldConfig

START_POSTURE_SPREAD = 0.2   # rad, uniform perturbation of each joint around home at episode start


def sample_table_xy(rng: np.random.Generator, cfg: WorldConfig, reachable_by: Sequence[str] | None = None,
                    x_range: tuple[float, float] | None = None, out_of_reach_of: Sequence[str] = (),
                    max_tries: int = 10_000) -> tuple[float, float]:
    """Uniform point on the table (inside the cube margin) reachable by at least one of ``reachable_by``
    (default: any arm) and by none of ``out_of_reach_of``; ``x_range`` restricts it further (e.g. the
    left half)."""
    hx = cfg.table.size[0] / 2 - cfg.cube.margin
    hy = cfg.table.size[1] / 2 - cfg.cube.margin
    lo, hi = x_range if x_range is not None else (-hx, hx)
    arms = tuple(reachable_by) if reachable_by is not None else cfg.arm_names
    for _ in range(max_tries):
        xy = (float(rng.uniform(max(lo, -hx), min(hi, hx))), float(rng.uniform(-hy, hy)))
        if any(cfg.reachable(a, xy) for a in arms) and not any(cfg.reachable(a, xy) for a in out_of_reach_of):
            return xy
    unreachable = f" and by none of {tuple(out_of_reach_of)}" if out_of_reach_of else ""
    raise ValueError(f"no table point in x {lo}..{hi} is reachable by {arms}{unreachable}")


def random_posture(rng: np.random.Generator, cfg: WorldConfig) -> np.ndarray:
    return np.asarray(cfg.home_qpos) + rng.uniform(-START_POSTURE_SPREAD, START_POSTURE_SPREAD, 7)


def random_yaw(rng: np.random.Generator) -> float:
    return float(rng.uniform(-np.pi / 4, np.pi / 4))


@dataclass(frozen=True)
class HandoverTask:
    """One task family. Ranges are (low, high) in the world frame; None: as wide as the table (cube) or
    world.yaml's goal region (goal). The cube start is always on the table and within some arm's reach."""

    cube_x_range: tuple[float, float] | None = (-math.inf, 0.0)     # the left half of the table
    cube_yaw_range: tuple[float, float] = (-math.pi / 4, math.pi / 4)
    goal_x_range: tuple[float, float] | None = None
    goal_y_range: tuple[float, float] | None = None
    posture_spread: float = START_POSTURE_SPREAD                    # rad, per joint around home

    def __post_init__(self) -> None:
        for name in ("cube_x_range", "cube_yaw_range", "goal_x_range", "goal_y_range"):
            r = getattr(self, name)
            if r is not None and not (len(r) == 2 and r[0] <= r[1] and not any(map(math.isnan, r))):
                raise ConfigError(f"task.{name} must be (low, high) with low <= high, got {r}")
        if not 0 <= self.posture_spread < 1.0:
            raise ConfigError(f"task.posture_spread must be in [0, 1) rad, got {self.posture_spread}")

    def reset(self, world: Any, seed: int, index: int) -> tuple[float, float]:
        """Start episode ``index`` of ``seed`` in ``world`` (a TwoArmWorld); the cube's start (x, y)."""
        cfg = world.cfg
        rng = np.random.default_rng([seed, index])
        cube = sample_table_xy(rng, cfg, x_range=self.cube_x_range)
        yaw = float(rng.uniform(*self.cube_yaw_range))
        g = cfg.goal
        goal = np.array([rng.uniform(*(self.goal_x_range or g.x_range)), rng.uniform(*(self.goal_y_range or g.y_range)),
                         cfg.cube.size / 2])
        world.reset(cube_xy=cube, cube_yaw=yaw, goal=goal,
                    arm_qpos={a: np.asarray(cfg.home_qpos) + rng.uniform(-self.posture_spread, self.posture_spread, 7)
                              for a in cfg.arm_names})
        return cube


HANDOVER = HandoverTask()
MULTI_DATA_TASK = HandoverTask(cube_x_range=None)   # the multi-arm demonstrations: the cube anywhere in reach


def load_task(path: str | Path | None) -> HandoverTask:
    """A task from YAML (keys: the fields of :class:`HandoverTask`; unknown keys refused); None: the default."""
    if path is None or str(path) == "":
        return HANDOVER
    p = Path(path)
    try:
        d = yaml.safe_load(p.read_text()) or {}
        if not isinstance(d, dict):
            raise ConfigError("expected a mapping")
        known = {f.name for f in dataclasses.fields(HandoverTask)}
        if unknown := set(d) - known:
            raise ConfigError(f"unknown keys {sorted(unknown)} (known: {sorted(known)})")
        return HandoverTask(**{k: tuple(float(x) for x in v) if isinstance(v, list) else v for k, v in d.items()})
    except (OSError, yaml.YAMLError, TypeError, ValueError) as e:
        raise ConfigError(f"{p}: bad task file ({type(e).__name__}: {e})") from None
