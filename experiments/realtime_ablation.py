"""Why did CoDi hand over less often in real time? The latency-aware planner with a perfect state prediction.

    python experiments/realtime_ablation.py --latency 0.1 [--episodes 50] [--seed 0]
                                            [--out experiments/results/realtime_ablation]

At a fixed injected latency (d = ceil(latency / dt) committed steps per plan) the latency-aware
planner (``realtime.method: predict``) plans from the state the committed actions lead to. ``codi
eval`` predicts the tools with the arms' executors (control/executor.py ArmExecutor.predict: the
same IK and limits, the joints following with the arm's tracking lag) and the grippers and the cube
as core/realtime.py predict_state says; before that, everything was first order (the tool at its
commanded twist). ``oracle`` (this script) instead plans from the true state at the chunk's start:
a copy of the simulated world is run on for the d steps the arms execute while the plan is
computed (the same executors, the same physics), and the plan is the committed actions followed by
the first H - d actions planned from there. The gap between a prediction and the oracle is what its
errors cost; the gap between the oracle and the paused protocol is what the committed motion costs.

Writes OUT/oracle_L<ms>.json in `codi eval`'s format with the machine and code version (the same
episodes with `codi eval --latency`: OUT/executor*_L<ms>.json, latency_sweep/latency_aware_L<ms>.json).
``--accuracy`` instead plans as `codi eval` does and measures the predictions against the truth:
OUT/prediction_error_L<ms>.json.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch

from codi_ros.config import load_world_config
from codi_ros.core.cost import load_cost_config
from codi_ros.core.planner import Planner, PlanningError, load_planner_config
from codi_ros.core.policy import load_policy
from codi_ros.core.realtime import LatencyEstimate, predict_state
from codi_ros.evaluation import handover
from codi_ros.evaluation.rollout import Plan, Timing, predicted_tools, world_state
from codi_ros.frames import WorldState
from codi_ros.sim.tasks import HANDOVER
from codi_ros.sim.world import TwoArmWorld
from codi_ros.version import code_version, machine_description

RESULTS = Path(__file__).resolve().parent / "results" / "realtime_ablation"


def true_state_after(world: TwoArmWorld, steps: int) -> WorldState:
    """The state ``steps`` control periods from now, from a copy of the world run on (the world is untouched)."""
    future = copy.deepcopy(world)
    for _ in range(steps):
        future.step_control()
    return world_state(future)


class OracleController(handover.PlannerSource):
    """Plans from the true state d steps ahead (a copy of the world run on), then prefixes the committed actions."""

    def plan(self, world: TwoArmWorld) -> Plan:
        committed = self.committed(world)
        if committed is None:
            return super().plan(world)
        d = len(next(iter(committed.values())))
        try:
            result = self.planner.plan(true_state_after(world, d), self.overrides)
        except PlanningError as e:
            self.error = str(e)
            return Plan({})
        self.costs.append(result.cost)
        H = world.cfg.horizon.prediction
        return Plan({a: np.concatenate([committed[a], c[:H - d]]) for a, c in result.chunks.items()}, d)


class AccuracyController(handover.PlannerSource):
    """Plans as codi eval does, and records how far each prediction of the state at the chunk's start is
    from the truth (a copy of the world run on): first order, and the executors' (what codi eval uses)."""

    def __init__(self, *args, errors: dict[str, list[float]]):
        super().__init__(*args)
        self.errors, self.kinematic = errors, load_cost_config().kinematic_model   # the planner's grasp rule

    def plan(self, world: TwoArmWorld) -> Plan:
        committed = self.committed(world)
        if committed is not None:
            d = len(next(iter(committed.values())))
            truth = true_state_after(world, d)
            now, km = world_state(world), self.kinematic
            for name, arms in (("first_order", None), ("executor", predicted_tools(world, committed))):
                p = predict_state(now, committed, world.cfg, km.grasp_radius, km.hold_width_margin, arms)
                for a in world.cfg.arm_names:
                    for field in ("ee_pos", "ee_linvel", "gripper_width"):
                        err = np.linalg.norm(np.asarray(getattr(p.arms[a], field)) - getattr(truth.arms[a], field))
                        self.errors.setdefault(f"{name}/{field}", []).append(float(err))
                cube_error = float(np.linalg.norm(p.cube.pos - truth.cube.pos))
                self.errors.setdefault(f"{name}/cube_pos", []).append(cube_error)
        return super().plan(world)


def percentiles(errors: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {k: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "max": float(np.max(v)),
                "n": len(v)} for k, v in errors.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latency", type=float, default=0.1, help="injected latency per plan, s")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--accuracy", action="store_true",
                   help="instead: plan as codi eval does and record the state predictions' errors "
                        "(OUT/prediction_error_L<ms>.json: p50/p95/max per field, m, m/s)")
    args = p.parse_args()
    torch.set_num_threads(1)
    version = code_version()

    world_cfg = load_world_config()
    world, config = TwoArmWorld(world_cfg), load_planner_config()
    planner = Planner(load_policy(None), world_cfg, config)
    timing = Timing("realtime", args.latency)

    errors: dict[str, list[float]] = {}

    def controller(i: int) -> handover.PlannerSource:
        planner.reset(seed=config.seed + handover.EPISODE_SEED_STRIDE * i)
        latency = LatencyEstimate(config.realtime, world_cfg.control.dt, args.latency,
                                  delivery_margin=config.realtime.delivery_margin)
        if args.accuracy:
            return AccuracyController(planner, None, latency, errors=errors)
        return OracleController(planner, None, latency)

    results = handover.evaluate_handover(controller, world, args.episodes, args.seed, 30.0, timing=timing,
                                         task=HANDOVER)
    stem = "prediction_error" if args.accuracy else "oracle"
    out = args.out / f"{stem}_L{round(1000 * args.latency):03d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"experiment": "realtime_ablation", "seed": args.seed, "latency": args.latency}
    if args.accuracy:
        record |= {"prediction_error": percentiles(errors), "aggregate": results["aggregate"]}
    else:
        record |= {"predictor": "oracle", **results}
    out.write_text(json.dumps(record | {"machine": machine_description(), "code_version": version}, indent=1))
    agg = results["aggregate"]
    print(f"{stem} at {args.latency} s: success {agg['success_rate']:.0%}, "
          f"{agg['episodes_with_collision']} episodes with a collision -> {out}")


if __name__ == "__main__":
    main()
