"""Episode metrics: cube-to-goal distance over time, completion time, separation, collisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from codi_ros.sim.world import TwoArmWorld

# m, end-effector separation under which a step counts as a collision: the paper's metric (Sec. VII), fixed so
# that results stay comparable when cost.yaml's collision.threshold (the cost's Delta, also 0.30 in Table I) is tuned
SAFETY_DISTANCE = 0.30


@dataclass
class EpisodeRecorder:
    """Records one sample per control step; :meth:`summary` gives the paper's metrics."""

    tolerance: float                       # success radius around the goal, m
    times: list[float] = field(default_factory=list)
    cube_goal_dist: list[float] = field(default_factory=list)
    ee_separation: list[float] = field(default_factory=list)
    table_contacts: list[int] = field(default_factory=list)

    def record(self, world: TwoArmWorld) -> None:
        self.times.append(world.time)
        self.cube_goal_dist.append(float(np.linalg.norm(world.cube_state().pos - world.goal)))
        ee = [world.arm_state(a).ee_pos for a in world.arms]
        sep = min((float(np.linalg.norm(p - q)) for p, q in combinations(ee, 2)), default=float("inf"))
        self.ee_separation.append(sep)
        self.table_contacts.append(world.arm_table_contacts())

    @property
    def success(self) -> bool:
        return bool(self.cube_goal_dist) and self.cube_goal_dist[-1] <= self.tolerance

    def summary(self) -> dict[str, float | int | bool | None]:
        d = np.asarray(self.cube_goal_dist)
        inside = np.nonzero(d <= self.tolerance)[0]
        sep = np.asarray(self.ee_separation)
        close = sep < SAFETY_DISTANCE
        return {
            "success": self.success,
            "final_distance": float(d[-1]),
            "min_distance": float(d.min()),
            "completion_time": float(self.times[inside[0]] - self.times[0]) if len(inside) else None,
            "min_ee_separation": float(sep.min()) if np.isfinite(sep).all() else None,
            # a collision = entering the safety distance (counted once per entry, not per step)
            "collisions": int(np.sum(close[1:] & ~close[:-1]) + int(close[0])) if len(close) else 0,
            "table_contact_steps": int(np.count_nonzero(self.table_contacts)),
            "duration": float(self.times[-1] - self.times[0]),
        }
