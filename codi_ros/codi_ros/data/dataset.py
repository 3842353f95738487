"""Demonstration data sets: one documented on-disk format and receding-horizon segments.

On disk, a data set is a directory::

    obs.npy           float32 (T, A, OBS_DIM)  per-step observation of each acting arm, own base frame
    actions.npy       float32 (T, A, ACT_DIM)  the action each arm took at that step (base frame)
    episode_ends.npy  int64   (E,)             exclusive end index of each episode in the T axis
    episodes.json     list of E dicts          per-episode facts (kind, arm, success, seed, ...)
    stats.json        per-dimension min/max/mean/std of obs and actions (normalisation)
    meta.json         seed, mode, config, code version, counts, layout names
    summary.json      the generator's report (episodes, segments, expert_success_rate, seconds)

``A`` is 1 for single-arm data (the ego arm) and the number of arms for multi-arm data.
A *segment* (paper Sec. VI: "receding-horizon segments of 16 action predictions") starts at any
step t: the observation at t and the actions t..t+H-1, padded past the episode end with zero
twists and the last gripper width (the arm holds still). Subsets (the paper's 20% study) take the
first ``ceil(fraction * E)`` episodes; the generator interleaves episode kinds and arms so that
every prefix is balanced.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codi_ros.frames import ACT_DIM, OBS_DIM

FORMAT_VERSION = 1
_ARRAYS = ("obs.npy", "actions.npy", "episode_ends.npy")


class DatasetError(ValueError):
    """A data set directory is missing, incomplete or inconsistent."""


@dataclass
class Dataset:
    obs: np.ndarray            # (T, A, OBS_DIM)
    actions: np.ndarray        # (T, A, ACT_DIM)
    episode_ends: np.ndarray   # (E,)
    episodes: list[dict[str, Any]]
    meta: dict[str, Any]

    def __post_init__(self) -> None:
        T = self.obs.shape[0]
        if self.obs.ndim != 3 or self.obs.shape[2] != OBS_DIM:
            raise DatasetError(f"obs must be (T, A, {OBS_DIM}) as frames.OBS_FIELDS lays them out, got "
                               f"{self.obs.shape} (a data set from another code version? regenerate it)")
        if self.actions.shape[:2] != self.obs.shape[:2] or self.actions.shape[2] != ACT_DIM:
            raise DatasetError(f"actions must be (T, A, {ACT_DIM}) matching obs, got {self.actions.shape}")
        ends = self.episode_ends
        bad_ends = len(ends) and (ends[-1] != T or np.any(np.diff(ends) <= 0) or ends[0] <= 0)
        if len(ends) != len(self.episodes) or bad_ends:
            raise DatasetError("episode_ends must be strictly increasing, end at T and match episodes.json")

    @property
    def num_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def num_steps(self) -> int:
        return int(self.obs.shape[0])

    @property
    def num_arms(self) -> int:
        return int(self.obs.shape[1])

    @property
    def episode_starts(self) -> np.ndarray:
        return np.concatenate([[0], self.episode_ends[:-1]]).astype(np.int64)

    def subset(self, fraction: float) -> Dataset:
        """The first ceil(fraction * E) episodes (balanced by construction, see module doc)."""
        if not 0 < fraction <= 1:
            raise DatasetError(f"fraction must be in (0, 1], got {fraction}")
        n = max(1, math.ceil(fraction * self.num_episodes))
        T = int(self.episode_ends[n - 1])
        meta = dict(self.meta, subset_fraction=fraction, subset_episodes=n)
        return Dataset(self.obs[:T], self.actions[:T], self.episode_ends[:n].copy(), self.episodes[:n], meta)

    def segments(self, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """All receding-horizon segments: obs (S, A, OBS_DIM), action chunks (S, A, horizon, ACT_DIM)."""
        idx = segment_indices(self.episode_ends, horizon)        # (S, horizon) into T, -1 = padding
        chunks = self.actions[np.maximum(idx, 0)]                # (S, horizon, A, ACT_DIM)
        pad = idx < 0
        last_valid = np.maximum.accumulate(np.where(pad, 0, idx), axis=1)
        chunks[pad] = self.actions[last_valid[pad]]
        chunks[pad, :, :6] = 0.0                                 # padded steps: hold still, keep gripper
        return self.obs.copy(), np.ascontiguousarray(chunks.transpose(0, 2, 1, 3))

    def stats(self, joint: bool = False) -> dict[str, dict[str, list[float]]]:
        """Per-dimension statistics of one arm's observation and action, over every arm's rows; ``joint``:
        of the A arms' concatenated ones (A * OBS_DIM, A * ACT_DIM), for a policy over all arms at once."""
        T, A = self.obs.shape[:2]
        rows = (T, A * OBS_DIM, A * ACT_DIM) if joint else (T * A, OBS_DIM, ACT_DIM)
        return {"obs": _stats(self.obs.reshape(rows[0], rows[1])),
                "actions": _stats(self.actions.reshape(rows[0], rows[2]))}

    def joint_segments(self, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`segments` with the arms side by side: obs (S, A * OBS_DIM), chunks (S, horizon, A * ACT_DIM)
        (step k: arm 1's action, then arm 2's, ...; the layout of a joint policy, core/policy.py)."""
        obs, chunks = self.segments(horizon)
        return obs.reshape(len(obs), -1), np.ascontiguousarray(chunks.transpose(0, 2, 1, 3)).reshape(
            len(obs), horizon, -1)


def segment_indices(episode_ends: np.ndarray, horizon: int) -> np.ndarray:
    """(T, horizon) step indices of the segment starting at each step; -1 past the episode end."""
    starts = np.concatenate([[0], episode_ends[:-1]])
    T = int(episode_ends[-1]) if len(episode_ends) else 0
    ep_end = np.repeat(episode_ends, episode_ends - starts)      # (T,) end of each step's episode
    idx = np.arange(T)[:, None] + np.arange(horizon)[None, :]
    return np.where(idx < ep_end[:, None], idx, -1)


def _stats(x: np.ndarray) -> dict[str, list[float]]:
    return {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(), "std": x.std(0).tolist()}


def save_dataset(ds: Dataset, out: str | Path, summary: dict[str, Any]) -> None:
    """Write atomically: into ``out.partial`` first, renamed only when complete."""
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    np.save(tmp / "obs.npy", ds.obs.astype(np.float32))
    np.save(tmp / "actions.npy", ds.actions.astype(np.float32))
    np.save(tmp / "episode_ends.npy", ds.episode_ends.astype(np.int64))
    meta = dict(ds.meta, format_version=FORMAT_VERSION, obs_dim=OBS_DIM, act_dim=ACT_DIM,
                episodes=ds.num_episodes, steps=ds.num_steps, arms_per_step=ds.num_arms)
    for name, obj in (("episodes.json", ds.episodes), ("stats.json", ds.stats()), ("meta.json", meta),
                      ("summary.json", summary)):
        (tmp / name).write_text(json.dumps(obj, indent=1))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def load_dataset(path: str | Path, fraction: float = 1.0) -> Dataset:
    """Load a data set directory (no pickles: ``allow_pickle=False``), optionally a subset."""
    p = Path(path)
    missing = [f for f in (*_ARRAYS, "episodes.json", "meta.json") if not (p / f).is_file()]
    if missing:
        raise DatasetError(f"{p} is not a complete data set (missing {', '.join(missing)})")
    try:
        meta = json.loads((p / "meta.json").read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise DatasetError(f"{p}: format_version {meta.get('format_version')} != {FORMAT_VERSION}")
        ds = Dataset(np.load(p / "obs.npy", allow_pickle=False), np.load(p / "actions.npy", allow_pickle=False),
                     np.load(p / "episode_ends.npy", allow_pickle=False),
                     json.loads((p / "episodes.json").read_text()), meta)
    except (ValueError, OSError) as e:
        if isinstance(e, DatasetError):
            raise
        raise DatasetError(f"{p}: cannot read data set: {e}") from None
    return ds if fraction == 1.0 else ds.subset(fraction)
