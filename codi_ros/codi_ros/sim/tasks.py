"""Seeded task sampling: cube starts, placement targets, goals and start postures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from codi_ros.config import WorldConfig

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


def sample_goal(rng: np.random.Generator, cfg: WorldConfig) -> np.ndarray:
    """Task goal for the cube centre, uniform in the configured goal region, on the table."""
    g = cfg.goal
    return np.array([rng.uniform(*g.x_range), rng.uniform(*g.y_range), cfg.cube.size / 2])


def random_posture(rng: np.random.Generator, cfg: WorldConfig) -> np.ndarray:
    return np.asarray(cfg.home_qpos) + rng.uniform(-START_POSTURE_SPREAD, START_POSTURE_SPREAD, 7)


def random_yaw(rng: np.random.Generator) -> float:
    return float(rng.uniform(-np.pi / 4, np.pi / 4))
