"""Sweeps of ``codi eval`` runs (experiments/latency_sweep.py, experiments/paper.py): one run per worker
process of one torch thread, resumable, and the intervals their tables and figures report."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np


def eval_run(path: Path, options: list[str], episodes: int, seed: int) -> bool:
    """``codi eval --episodes N --seed S --out path OPTIONS`` in a process of one torch thread, unless ``path``
    exists (a sweep resumes where it stopped). True if it ran; CalledProcessError if it failed."""
    if path.exists():
        return False
    cmd = [sys.executable, "-m", "codi_ros.cli", "eval", "--episodes", str(episodes), "--seed", str(seed),
           "--threads", "1", "--no-progress", "--out", str(path), *options]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return True


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate (sound at 0/n and n/n, unlike p +- z sqrt(p(1-p)/n)); it
    brackets p exactly (at n/n its upper bound is 1 only up to rounding), so error bars p - lo, hi - p are >= 0."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (min((centre - half) / (1 + z * z / n), p), max((centre + half) / (1 + z * z / n), p))


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its normal 95 % interval (NaN, NaN for no values; 0 half-width for one)."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        return (math.nan, math.nan)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size) if x.size > 1 else 0.0
    return (float(x.mean()), float(half))
