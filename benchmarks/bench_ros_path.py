"""Benchmark: the coordinator's in-process path from state messages to published chunks (issue 5).

    python benchmarks/bench_ros_path.py                # ~1 min on 2 cores
    python benchmarks/bench_ros_path.py --repeats 10   # quicker, noisier

What coordinator_node does on each control tick, minus rclpy itself: the arm-state and cube
messages (the dicts rosidl_runtime_py gives) go through ``Coordinator.on_arm_state`` /
``on_cube_detection``, ``Coordinator.tick`` fuses the cube pose, checks staleness, plans with the
configured planner (config/planner.yaml, the shipped policy) and turns the result into one
ActionChunk dict per arm. The overhead is that total minus the planner's own latency
(``PlanResult.latency_s``); the requirement is total <= plan latency + 10 ms. Not included: the
rclpy (de)serialisation and the executor, which cannot run on a machine without ROS 2.
Writes benchmarks/results/ros_path.json with the machine description.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from bench_plan import scene  # benchmarks/*.py (scripts run from benchmarks/)
from timing import bench_args

from codi_ros.config import load_world_config
from codi_ros.core.planner import Planner
from codi_ros.evaluation.rollout import latency_summary
from codi_ros.nodes.logic.coordinator import Coordinator
from codi_ros.nodes.logic.messages import arm_state_msg, detection_msg
from codi_ros.perception.fusion import Detection
from codi_ros.version import code_version, machine_description

RESULTS = Path(__file__).resolve().parent / "results" / "ros_path.json"
BUDGET_MS = 10.0


class TimedPlanner:
    """The real planner, remembering the latency of its last plan."""

    def __init__(self, planner: Planner):
        self.planner, self.last_s = planner, float("nan")

    def plan(self, state, overrides=None):
        result = self.planner.plan(state, overrides)
        self.last_s = result.latency_s
        return result


def main() -> None:
    args = bench_args(__doc__, 30, "timed ticks")
    world = load_world_config()
    planner = TimedPlanner(Planner.load(world))
    coordinator = Coordinator(world, planner)
    coordinator.start()
    state = scene(world)
    totals, plans, overheads = [], [], []
    now = 0.0
    for i in range(args.repeats + 2):                  # the first two are warm-up
        now += world.horizon.execution * world.control.dt
        msgs = [arm_state_msg(a, s, now) for a, s in state.arms.items()]
        detection = detection_msg(Detection("bench", now, state.cube.pos, state.cube.quat))
        t0 = time.perf_counter()
        for m in msgs:
            coordinator.on_arm_state(m)
        coordinator.on_cube_detection(detection)
        chunks = coordinator.tick(now)
        total_s = time.perf_counter() - t0
        if len(chunks) != len(world.arm_names) or not all(len(c["twists"]) for c in chunks):
            raise SystemExit(f"tick {i} published {len(chunks)} chunks; log: {coordinator.pop_log()}")
        if i >= 2:
            totals.append(total_s)
            plans.append(planner.last_s)
            overheads.append(total_s - planner.last_s)
    result = {"benchmark": "ros_path", "repeats": args.repeats, "arms": len(world.arm_names),
              "state_to_chunks": latency_summary(totals), "plan": latency_summary(plans),
              "overhead": latency_summary(overheads), "budget_ms": BUDGET_MS,
              "within_budget": bool(1e3 * max(overheads) <= BUDGET_MS),
              "torch_threads": args.threads, "torch": torch.__version__, "machine": machine_description(),
              "code_version": code_version()}
    print(json.dumps({k: result[k] for k in ("state_to_chunks", "plan", "overhead", "within_budget")}, indent=1))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
