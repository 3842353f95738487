"""When a handover is done, one rule for ``codi eval``, ``codi demo`` and the coordinator (simulated
graph and hardware): the cube has rested within ``goal.tolerance`` of the goal, with no gripper
closed on it, for ``goal.settle_seconds`` (config/world.yaml). It reads only what the planner
observes (tool positions, gripper widths, the cube pose), so the evaluation, which could ask the
simulator's contacts, ends an episode exactly when the coordinator would stop the arms.
"""

from __future__ import annotations

import numpy as np

from codi_ros.config import WorldConfig
from codi_ros.frames import ArmState, WorldState


class Completion:
    """Feed it the observed state as time goes on; :meth:`update` says when the handover is done."""

    def __init__(self, world: WorldConfig):
        self.tolerance, self.settle = world.goal.tolerance, world.goal.settle_seconds
        self.cube_size = world.cube.size
        self.closed_width = (world.cube.size + world.control.gripper_max_width) / 2   # narrower: closing
        self._since: float | None = None     # when the cube came to rest inside, released

    def grips(self, arm: ArmState, cube_pos: np.ndarray) -> bool:
        """A gripper closed (or closing) with the cube between its fingers."""
        return (arm.gripper_width < self.closed_width
                and float(np.linalg.norm(np.asarray(arm.ee_pos) - cube_pos)) < self.cube_size)

    def update(self, state: WorldState, now: float) -> bool:
        cube = np.asarray(state.cube.pos, dtype=float)
        released = not any(self.grips(a, cube) for a in state.arms.values())
        if not (released and float(np.linalg.norm(cube - state.goal)) <= self.tolerance):
            self._since = None
            return False
        if self._since is None:
            self._since = now
        return now - self._since >= self.settle - 1e-9

    def reset(self) -> None:
        self._since = None
