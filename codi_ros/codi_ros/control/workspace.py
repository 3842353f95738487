"""Workspace box for the tool centre point: a safety limit shared by the simulator and the arms."""

from __future__ import annotations

import numpy as np


class WorkspaceBounds:
    """Keeps the end effector inside a box: the velocity towards a face is at most distance / ``lookahead``.

    The end effector approaches a face exponentially and never crosses it; outside the box it may
    stay or move back in, never further out.
    """

    def __init__(self, lower, upper, lookahead: float):
        self.lower, self.upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
        if self.lower.shape != (3,) or self.upper.shape != (3,) or np.any(self.lower >= self.upper):
            raise ValueError(f"workspace bounds need lower < upper, 3 values each, got {lower}, {upper}")
        if not lookahead > 0:
            raise ValueError(f"lookahead must be positive, got {lookahead}")
        self.lookahead = lookahead

    def limit(self, pos: np.ndarray, linvel: np.ndarray) -> np.ndarray:
        """The linear velocity (3,) allowed at position ``pos``, both in the box's frame."""
        lo = np.minimum((self.lower - pos) / self.lookahead, 0.0)
        hi = np.maximum((self.upper - pos) / self.lookahead, 0.0)
        return np.minimum(np.maximum(linvel, lo), hi)   # np.clip's result, faster
