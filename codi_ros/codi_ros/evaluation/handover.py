"""Closed-loop evaluation of the two-arm handover task (paper Sec. VII-A, Fig. 2).

Episodes come from a :class:`~codi_ros.sim.tasks.HandoverTask` (default: the cube anywhere on the
left half of the table within some arm's reach, the goal at the right end); an episode succeeds
when the cube ends within the goal tolerance (15 cm). Metrics per episode: success, minimum
cube-to-goal distance, completion time, collisions (end-effector separation under the 30 cm safety
distance), and the planner's latency.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from codi_ros.completion import Completion
from codi_ros.core.realtime import LatencyEstimate
from codi_ros.evaluation.rollout import (
    PAUSED,
    ChunkSource,
    LoopResult,
    Plan,
    Timing,
    commitments,
    delay_histogram,
    latency_summary,
    predicted_tools,
    run_closed_loop,
    world_state,
)
from codi_ros.sim.metrics import EpisodeRecorder
from codi_ros.sim.tasks import HANDOVER, HandoverTask
from codi_ros.sim.world import TwoArmWorld

EPISODE_SEED_STRIDE = 1000   # episode i's plans are seeded from planner seed + 1000 i (an episode has < 1000 plans)


class PlannerSource:
    """Adapts a :class:`codi_ros.core.planner.Planner` (WorldState -> PlanResult) to the loop.

    With a :class:`~codi_ros.core.realtime.LatencyEstimate` (real-time timing) each plan commits to
    the d actions the arms execute while it is computed (what their executors will run from now on)
    and plans the rest after them, from the tool states the executors predict for then; without one
    (paused timing) nothing is committed.

    A state the planner refuses (e.g. the cube knocked off the table) is a failed episode, not a crash:
    the arms hold and ``error`` keeps the planner's message; the episode loop then ends the episode."""

    def __init__(self, planner, overrides=None, latency: LatencyEstimate | None = None):
        self.planner, self.overrides, self.latency = planner, overrides, latency
        self.costs: list[float] = []
        self.error: str | None = None

    def committed(self, world: TwoArmWorld) -> dict[str, np.ndarray] | None:
        return commitments(world, self.latency.commit_steps() if self.latency is not None else 0)

    def plan(self, world: TwoArmWorld) -> Plan:
        from codi_ros.core.planner import PlanningError

        tic = time.perf_counter()
        committed = self.committed(world)
        predicted = None if committed is None else predicted_tools(world, committed)
        preparation = time.perf_counter() - tic
        try:
            result = self.planner.plan(world_state(world), self.overrides, committed, predicted)
        except PlanningError as e:
            self.error = str(e)
            return Plan({})
        if self.latency is not None:   # d covers the prediction and the plan, as the coordinator's does
            self.latency.update(preparation + result.latency_s)
        self.costs.append(result.cost)
        return Plan(result.chunks, result.committed)


class ScriptedSource:
    """The scripted two-arm expert as a controller: one action per call (run it with execution=1)."""

    def __init__(self, world: TwoArmWorld, seed: int):
        from codi_ros.sim.experts import HandoverExpert
        self.expert = HandoverExpert(world, np.random.default_rng(seed))

    def plan(self, world: TwoArmWorld) -> Plan:
        return Plan({a: act[None] for a, act in self.expert.act().items()})


def run_handover_episode(world: TwoArmWorld, controller: ChunkSource, seconds: float,
                         on_step: Callable[[TwoArmWorld], None] | None = None,
                         execution: int | None = None, timing: Timing = PAUSED) -> tuple[dict, LoopResult]:
    recorder = EpisodeRecorder(tolerance=world.cfg.goal.tolerance)
    completion = Completion(world.cfg)   # the episode ends when the coordinator would stop the arms

    def step(w: TwoArmWorld) -> bool:
        recorder.record(w)
        if on_step is not None:
            on_step(w)
        return completion.update(world_state(w), w.time) or getattr(controller, "error", None) is not None

    loop = run_closed_loop(world, controller, seconds, on_step=step, execution=execution, timing=timing)
    summary = {**recorder.summary(), "planning_error": getattr(controller, "error", None),
               "plans_dropped": loop.dropped}
    return summary, loop


def trace_row(world: TwoArmWorld) -> list:
    """One control step of a trace: time, cube position, each arm's end-effector position and gripper
    width, and the arms holding the cube (named by ``trace_columns``)."""
    row = [round(world.time, 2), *np.round(world.cube_state().pos, 4).tolist()]
    for a in world.arms:
        row += [*np.round(world.arm_state(a).ee_pos, 4).tolist(), round(float(world.gripper_width(a)), 4)]
    return row + [[a for a in world.arms if world.holding(a)]]


def trace_columns(arms: list[str]) -> list[str]:
    return ["t", "cube_x", "cube_y", "cube_z", *[f"{a}_{k}" for a in arms for k in ("x", "y", "z", "gripper")],
            "holding"]


def evaluate_handover(make_controller: Callable[[int], ChunkSource], world: TwoArmWorld, episodes: int,
                      seed: int, seconds: float, progress: bool = True, execution: int | None = None,
                      trace_dir: Path | None = None, timing: Timing = PAUSED, task: HandoverTask = HANDOVER) -> dict:
    """Run seeded handover episodes; ``make_controller(i)`` gives the controller of episode i (made after
    the episode's reset, so it may look at the world). With ``trace_dir``, every control step of episode i
    goes to ``trace_dir/episode_{i:03d}.json`` (``trace_row``; experiments/summarize_traces.py reads them)."""
    from tqdm import tqdm

    rows, latencies, delays = [], [], []
    bar = tqdm(range(episodes), desc="handover eval", unit="ep", disable=not progress)
    for i in bar:
        cube = task.reset(world, seed, i)
        trace: list[list] = []
        on_step = (lambda w, trace=trace: trace.append(trace_row(w))) if trace_dir else None
        summary, loop = run_handover_episode(world, make_controller(i), seconds, on_step=on_step,
                                             execution=execution, timing=timing)
        if trace_dir:
            trace_dir.mkdir(parents=True, exist_ok=True)
            (trace_dir / f"episode_{i:03d}.json").write_text(json.dumps(
                {"episode": i, "goal": world.goal.tolist(), "summary": summary,
                 "columns": trace_columns(list(world.arms)), "steps": trace}))
        latencies += loop.plan_latencies
        delays += loop.delays
        rows.append({"episode": i, "cube_start": list(cube), "goal": world.goal.tolist(), **summary})
        bar.set_postfix(success=f"{np.mean([r['success'] for r in rows]):.0%}")
    return {"timing": {"mode": timing.mode, "latency": timing.latency,
                       "delay_steps": delay_histogram(delays)},   # control steps the world ran on per plan
            "episodes": rows, "aggregate": aggregate(rows), "plan_latency": latency_summary(latencies)}


def aggregate(rows: list[dict]) -> dict:
    done = [r["completion_time"] for r in rows if r["completion_time"] is not None]
    return {
        "episodes": len(rows),
        "success_rate": float(np.mean([r["success"] for r in rows])),
        "min_distance_mean": float(np.mean([r["min_distance"] for r in rows])),
        "final_distance_mean": float(np.mean([r["final_distance"] for r in rows])),
        "completion_time_mean": float(np.mean(done)) if done else None,
        "collisions_total": int(sum(r["collisions"] for r in rows)),
        "episodes_with_collision": int(sum(r["collisions"] > 0 for r in rows)),
        "table_contact_episodes": int(sum(r["table_contact_steps"] > 0 for r in rows)),
        "planning_error_episodes": int(sum(r.get("planning_error") is not None for r in rows)),
        "plans_dropped": int(sum(r.get("plans_dropped", 0) for r in rows)),
    }
