"""Fuse the cube poses seen by several cameras into one, rejecting outliers and stale detections.

Each source (a wrist camera, or the simulator's ground truth) keeps its latest detection. A fused
estimate uses only detections younger than ``max_age`` whose reprojection error passes the gate.
Outliers (a wrong flip, a mis-detected marker) are found by consensus: the detection agreeing
with the most others (position within ``max_position_gap``, orientation within ``max_angle_gap``;
ties go to the better-quality one) is the reference, and only detections agreeing with it are
averaged, weighted by quality (more markers, smaller error, not ``ambiguous``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codi_ros.frames import mat_to_quat, quat_to_mat
from codi_ros.perception.aruco import rotation_angle


@dataclass(frozen=True)
class Detection:
    """One cube pose estimate in the world frame (the content of a codi_msgs/CubeDetection)."""

    source: str
    stamp: float                    # s
    pos: np.ndarray                 # (3,)
    quat: np.ndarray                # (4,) (w, x, y, z)
    reprojection_error: float = 0.0
    num_markers: int = 0
    ambiguous: bool = False

    @property
    def finite(self) -> bool:
        return bool(np.all(np.isfinite(self.pos)) and np.all(np.isfinite(self.quat))
                    and np.isfinite(self.reprojection_error) and np.linalg.norm(self.quat) > 0.5)

    @property
    def weight(self) -> float:
        """Fusion weight: more markers and a smaller error count more; an unresolved flip counts little."""
        w = max(self.num_markers, 1) / (0.25 + self.reprojection_error) ** 2
        return 0.1 * w if self.ambiguous else w


@dataclass(frozen=True)
class FusedPose:
    pos: np.ndarray
    quat: np.ndarray                # (w, x, y, z)
    stamp: float                    # oldest detection used
    sources: tuple[str, ...]


@dataclass(frozen=True)
class FusionConfig:
    max_age: float = 1.0                    # s
    max_reprojection_error: float = 2.0     # px
    max_position_gap: float = 0.02          # m
    max_angle_gap: float = 0.35             # rad (20 deg)

    def __post_init__(self) -> None:
        if min(self.max_age, self.max_reprojection_error, self.max_position_gap, self.max_angle_gap) <= 0:
            raise ValueError(f"fusion limits must be positive, got {self}")


class CubePoseFusion:
    def __init__(self, config: FusionConfig | None = None):
        self.config = config or FusionConfig()
        self._latest: dict[str, Detection] = {}
        self.rejected: dict[str, str] = {}          # of the last fuse(): source -> why it was left out

    def add(self, detection: Detection) -> None:
        """Keep the source's newest detection (an older one arriving late is ignored)."""
        old = self._latest.get(detection.source)
        if old is None or detection.stamp >= old.stamp:
            self._latest[detection.source] = detection

    def fuse(self, now: float) -> FusedPose | None:
        """The fused pose at time ``now``, or None when no usable detection is left; ``rejected`` says why
        each left-out detection was left out."""
        cfg = self.config
        self.rejected = rejected = {}
        usable = []
        for d in self._latest.values():
            if not d.finite:
                rejected[d.source] = "NaN or zero quaternion"
            elif now - d.stamp > cfg.max_age:
                rejected[d.source] = f"stale ({now - d.stamp:.2f} s old, limit {cfg.max_age} s)"
            elif d.stamp - now > cfg.max_age:
                rejected[d.source] = f"stamped {d.stamp - now:.2f} s in the future (limit {cfg.max_age} s)"
            elif not 0 <= d.reprojection_error <= cfg.max_reprojection_error:
                rejected[d.source] = (f"reprojection error {d.reprojection_error:.2f} px "
                                      f"not in [0, {cfg.max_reprojection_error}] px")
            else:
                usable.append(d)
        if not usable:
            return None
        rots = [quat_to_mat(d.quat) for d in usable]

        def agree(i: int, j: int) -> bool:
            return (np.linalg.norm(usable[i].pos - usable[j].pos) <= cfg.max_position_gap
                    and rotation_angle(rots[i], rots[j]) <= cfg.max_angle_gap)

        ref = max(range(len(usable)), key=lambda i: (sum(agree(i, j) for j in range(len(usable))), usable[i].weight))
        inliers = [i for i in range(len(usable)) if agree(ref, i)]
        for i in set(range(len(usable))) - set(inliers):
            rejected[usable[i].source] = f"outlier: disagrees with {usable[ref].source}"
        w = np.array([usable[i].weight for i in inliers])
        w /= w.sum()
        pos = sum(wi * usable[i].pos for wi, i in zip(w, inliers, strict=True))
        q_ref = mat_to_quat(rots[ref])
        quats = [mat_to_quat(rots[i]) for i in inliers]
        q = sum(wi * (qi if qi @ q_ref >= 0 else -qi) for wi, qi in zip(w, quats, strict=True))
        return FusedPose(pos=np.asarray(pos, dtype=float), quat=q / np.linalg.norm(q),
                         stamp=min(usable[i].stamp for i in inliers), sources=tuple(usable[i].source for i in inliers))
