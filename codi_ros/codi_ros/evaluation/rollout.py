"""Closed-loop receding-horizon execution in the simulated world (paper Sec. VII-A).

A controller maps the world to one action chunk per arm (H, 7) in each arm's base frame; the loop
executes the first ``execution`` actions at the control rate, then asks again. Arms a controller
leaves out hold still with their gripper as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from codi_ros.frames import WorldState
from codi_ros.sim.world import TwoArmWorld


class ChunkController(Protocol):
    def plan(self, world: TwoArmWorld) -> dict[str, np.ndarray]:
        """Action chunk (H, ACT_DIM) per controlled arm, base frames."""


def world_state(world: TwoArmWorld) -> WorldState:
    """The joint state s the planner sees, read from the simulator."""
    return WorldState(arms={a: world.arm_state(a) for a in world.arms}, cube=world.cube_state(),
                      goal=world.goal.copy(), stamp=world.time)


@dataclass
class LoopResult:
    steps: int = 0
    plan_latencies: list[float] = field(default_factory=list)   # seconds per controller call


def run_closed_loop(world: TwoArmWorld, controller: ChunkController, max_seconds: float,
                    on_step: Callable[[TwoArmWorld], bool | None] | None = None,
                    execution: int | None = None) -> LoopResult:
    """Plan, execute ``execution`` steps, replan, until ``max_seconds`` or ``on_step`` returns True."""
    cfg = world.cfg
    execution = execution or cfg.horizon.execution
    result = LoopResult()
    chunks: dict[str, np.ndarray] = {}
    for step in range(int(round(max_seconds * cfg.control.rate_hz))):
        k = step % execution
        if k == 0:
            t0 = time.perf_counter()
            chunks = controller.plan(world)
            result.plan_latencies.append(time.perf_counter() - t0)
        for arm in world.arms:
            if arm in chunks:
                world.apply_action(arm, chunks[arm][min(k, len(chunks[arm]) - 1)])
            else:
                world.apply_action(arm, np.r_[np.zeros(6), world.gripper_width(arm)])
        world.step_control()
        result.steps += 1
        if on_step is not None and on_step(world):
            break
    return result


def latency_summary(latencies: list[float]) -> dict[str, float]:
    ms = np.asarray(latencies) * 1e3
    if ms.size == 0:
        return {}
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "max_ms": float(ms.max()), "calls": int(ms.size)}
