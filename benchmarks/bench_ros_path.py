"""Benchmark: the coordinator's path from state messages to published chunks (issue 5), for both cost backends.

    python benchmarks/bench_ros_path.py                # ~1 min on 2 cores
    python benchmarks/bench_ros_path.py --repeats 10   # quicker, noisier

What coordinator_node does on each control tick, minus rclpy itself: the arm-state and cube
messages (the dicts ros/msg_dict.py gives) go through ``Coordinator.on_arm_state`` /
``on_cube_detection``, ``Coordinator.tick`` fuses the cube pose, checks staleness, plans with the
configured planner (config/planner.yaml, the shipped policy) and turns the result into one
ActionChunk dict per arm. The overhead is that total minus the planner's own latency
(``PlanResult.latency_s``); the requirement is total <= plan latency + 10 ms. Not included: the
rclpy (de)serialisation and the executor, which cannot run on a machine without ROS 2.

The same ticks run, interleaved, with ``cost_backend: service``: the planner's guidance evaluates the
cost through /codi/evaluate_cost, here an in-memory transport calling ``CostService.handle`` (what
cost_service_node runs, minus rclpy). Both planners start from the same seed, so they compute the same
plans (test_remote_cost.py) and the paired difference of their plan latencies is what building the
requests, validating them and parsing the answers cost per plan (not the ROS transport itself).
Writes benchmarks/results/ros_path.json (in-process) and ros_path_service.json with the machine description.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from codi_ros.config import WorldConfig, load_world_config
from codi_ros.core.planner import Planner
from codi_ros.evaluation.bench import scene
from codi_ros.evaluation.rollout import latency_summary
from codi_ros.frames import WorldState
from codi_ros.perception.fusion import Detection
from codi_ros.ros.coordinator import Coordinator
from codi_ros.ros.messages import arm_state_msg, detection_msg
from codi_ros.ros.remote_cost import RemoteCost
from codi_ros.ros.services import CostService, kinematic_cost_evaluator
from codi_ros.version import code_version, machine_description

RESULTS = {"in_process": Path(__file__).resolve().parent / "results" / "ros_path.json",
           "service": Path(__file__).resolve().parent / "results" / "ros_path_service.json"}
BUDGET_MS = 10.0


class TimedPlanner:
    """The real planner, remembering the latency of its last plan."""

    def __init__(self, planner: Planner):
        self.planner, self.last_s = planner, float("nan")

    def plan(self, state, overrides=None):
        result = self.planner.plan(state, overrides)
        self.last_s = result.latency_s
        return result


class InMemoryCostService:
    """/codi/evaluate_cost without rclpy: CostService.handle on the request dict; counts the calls."""

    def __init__(self, world: WorldConfig):
        self.service, self.calls = CostService(world, kinematic_cost_evaluator(world)), 0

    def __call__(self, request: dict, timeout_s: float) -> dict:
        self.calls += 1
        return self.service.handle(request)


def tick(coordinator: Coordinator, state: WorldState, now: float) -> float:
    """Seconds from the state messages to the chunk dicts of one replanning tick."""
    msgs = [arm_state_msg(a, s, now) for a, s in state.arms.items()]
    detection = detection_msg(Detection("bench", now, state.cube.pos, state.cube.quat))
    t0 = time.perf_counter()
    for m in msgs:
        coordinator.on_arm_state(m)
    coordinator.on_cube_detection(detection)
    chunks = coordinator.tick(now)
    total_s = time.perf_counter() - t0
    if len(chunks) != len(coordinator.world.arm_names) or not all(len(c["twists"]) for c in chunks):
        raise SystemExit(f"{now:.1f} s: published {len(chunks)} chunks; log: {coordinator.pop_log()}")
    return total_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=30, help="timed ticks per cost backend (default %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    world = load_world_config()
    service = InMemoryCostService(world)
    planners = {"in_process": TimedPlanner(Planner.load(world)),
                "service": TimedPlanner(Planner.load(world, cost=RemoteCost(service)))}
    coordinators = {b: Coordinator(world, p) for b, p in planners.items()}
    for c in coordinators.values():
        c.start()
    state = scene(world)
    totals, plans = {b: [] for b in planners}, {b: [] for b in planners}
    now = 0.0
    for i in range(args.repeats + 2):                  # the first two are warm-up
        now += world.horizon.execution * world.control.dt
        calls = service.calls
        for backend, coordinator in coordinators.items():
            total_s = tick(coordinator, state, now)
            if i >= 2:
                totals[backend].append(total_s)
                plans[backend].append(planners[backend].last_s)
        calls_per_plan = service.calls - calls
    common = {"benchmark": "ros_path", "repeats": args.repeats, "arms": len(world.arm_names),
              "torch_threads": args.threads, "torch": torch.__version__, "machine": machine_description(),
              "code_version": code_version()}
    for backend, path in RESULTS.items():
        overheads = [t - p for t, p in zip(totals[backend], plans[backend], strict=True)]
        result = {**common, "cost_backend": backend, "state_to_chunks": latency_summary(totals[backend]),
                  "plan": latency_summary(plans[backend]), "overhead": latency_summary(overheads),
                  "budget_ms": BUDGET_MS, "within_budget": bool(1e3 * max(overheads) <= BUDGET_MS)}
        if backend == "service":
            extra = [s - p for s, p in zip(plans["service"], plans["in_process"], strict=True)]
            result |= {"cost_service_calls_per_plan": calls_per_plan,
                       "plan_minus_in_process_plan": latency_summary(extra)}
        keys = ("state_to_chunks", "plan", "overhead", "plan_minus_in_process_plan", "cost_service_calls_per_plan")
        print(backend, json.dumps({k: result[k] for k in keys if k in result}, indent=1))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
