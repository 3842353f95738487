"""Closed-loop receding-horizon execution in the simulated world (paper Sec. VII-A), in real time or paused.

A controller maps the world to one action chunk per arm (H, 7) in each arm's base frame. Its chunks
go, time-stamped with the time the plan started, through each arm's executor (the one the ROS
action nodes run, :mod:`codi_ros.control.executor`); the next plan starts ``execution`` control
steps after the last one, or when the last one is done if it took longer.

Timing (:class:`Timing`):

- ``realtime`` (the default, how users run the system): the world keeps executing what is already
  committed while the planner computes, for the measured latency of that plan rounded up to
  control steps (or a fixed injected ``latency``); the chunk then arrives and the executor takes it
  over by time stamp.
- ``paused`` (the paper's protocol, for comparison with it): the world waits for every plan.

Arms the latest plan leaves out come to rest and hold, with their gripper as it is; arms no plan has
reached yet stay where they are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from codi_ros.control.executor import Chunk
from codi_ros.core.realtime import steps_for
from codi_ros.frames import ArmState, WorldState
from codi_ros.sim.world import TwoArmWorld

TIMING_MODES = ("realtime", "paused")


@dataclass(frozen=True)
class Timing:
    mode: Literal["realtime", "paused"] = "realtime"
    latency: float | None = None       # realtime: a fixed latency per plan, s (None: each plan's measured one)

    def __post_init__(self) -> None:
        if self.mode not in TIMING_MODES:
            raise ValueError(f"timing must be one of {TIMING_MODES}, got {self.mode!r}")
        if self.latency is not None and not (math.isfinite(self.latency) and self.latency >= 0):
            raise ValueError(f"latency must be a finite number of seconds >= 0, got {self.latency}")
        if self.latency is not None and self.mode == "paused":
            raise ValueError("latency: a fixed latency needs timing realtime (paused waits for every plan)")

    def delay_steps(self, measured_s: float, dt: float) -> int:
        """Control steps the world runs on while this plan is computed."""
        if self.mode == "paused":
            return 0
        return steps_for(measured_s if self.latency is None else self.latency, dt)


PAUSED = Timing("paused")


@dataclass
class Plan:
    chunks: dict[str, np.ndarray]      # arm -> (H, 7) raw actions, base frame, action 0 at the plan's start
    committed: int = 0                 # leading actions that repeat what the arm executes (core/realtime.py)


class ChunkSource(Protocol):
    def plan(self, world: TwoArmWorld) -> Plan:
        """Chunks for the controlled arms, from the world as it is now (the plan's start)."""


def world_state(world: TwoArmWorld) -> WorldState:
    """The joint state s the planner sees, read from the simulator (one time stamp for all of it)."""
    return WorldState(arms={a: world.arm_state(a) for a in world.arms}, cube=world.cube_state(),
                      goal=world.goal.copy(), stamp=world.time)


def commitments(world: TwoArmWorld, d: int) -> dict[str, np.ndarray] | None:
    """Per arm, the d actions its executor runs from now on whatever a plan started now decides
    (core/realtime.py); None for d = 0 (nothing committed)."""
    if d == 0:
        return None
    return {arm: ex.chunks.commitment(world.time, d, world.gripper_width(arm)) for arm, ex in world.executors.items()}


def predicted_tools(world: TwoArmWorld, committed: dict[str, np.ndarray]) -> dict[str, ArmState]:
    """Each tool when a chunk planned now takes over, after the committed actions, as its executor predicts it."""
    return {arm: ex.predict(world.time, world.joint_positions(arm), world.joint_velocities(arm),
                            len(committed[arm]) * world.cfg.control.dt, world.gripper_width(arm))
            for arm, ex in world.executors.items()}


@dataclass
class LoopResult:
    steps: int = 0
    plan_latencies: list[float] = field(default_factory=list)   # seconds per controller call
    delays: list[int] = field(default_factory=list)             # control steps the world ran on per plan
    dropped: int = 0                                            # plans the executors refused (late)


def run_closed_loop(world: TwoArmWorld, controller: ChunkSource, max_seconds: float,
                    on_step: Callable[[TwoArmWorld], bool | None] | None = None,
                    execution: int | None = None, timing: Timing = PAUSED) -> LoopResult:
    """Plan, execute, replan, until ``max_seconds`` or ``on_step`` returns True."""
    cfg = world.cfg
    dt = cfg.control.dt
    execution = execution or cfg.horizon.execution
    result = LoopResult()
    pending: tuple[int, float, Plan] | None = None     # (arrival step, plan start time, plan)
    next_plan = 0

    def deliver(step: int) -> None:
        nonlocal pending
        if pending is None or step != pending[0]:
            return
        _, start, plan = pending
        for arm in world.arms:
            if arm in plan.chunks:
                result.dropped += not world.execute(arm, Chunk(start, dt, plan.chunks[arm], plan.committed))
            else:
                world.executors[arm].stop(world.time)    # left out: ramp to rest (never driven: stays put)
        pending = None

    for step in range(int(round(max_seconds * cfg.control.rate_hz))):
        deliver(step)          # a plan arriving as the next one starts is delivered before that one is made
        if step == next_plan:
            start, tic = world.time, time.perf_counter()
            plan = controller.plan(world)
            latency = time.perf_counter() - tic
            delay = timing.delay_steps(latency, dt)
            result.plan_latencies.append(latency)
            result.delays.append(delay)
            pending, next_plan = (step + delay, start, plan), step + max(execution, delay)
            deliver(step)      # paused (delay 0): at once
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


def delay_histogram(delays: list[int]) -> dict[str, int]:
    """{control steps the world ran on during a plan: number of plans}."""
    values, counts = np.unique(np.asarray(delays, dtype=int), return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts, strict=True)}
