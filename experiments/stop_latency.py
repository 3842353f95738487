"""How fast /codi/stop is answered while a long plan runs, through the ROS 2 graph.

    .ros-venv/bin/python experiments/stop_latency.py [--tries 50] [--out experiments/results/stop_latency.json]

Starts the graph of launch/two_arm_sim.launch.py (codi_ros/test/local_graph.py), then per try: the longest
/codi/plan the compute budget of codi_ros/bounds.py allows at the shipped M and candidates (M = 64,
PLAN_BUDGET / (8 x 64) denoising steps, about 0.6-1 s), a random wait of 0.05-0.4 s into it, /codi/stop.
Records the stop's answer time (call to response, as this client sees it), how long after the stop
the long plan's answer came and what it was ("cancelled"). The bar of the bad-input issue: 50 ms.
Writes the quantiles.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from codi_msgs.srv import Plan
from std_srvs.srv import Trigger

from codi_ros.bounds import PLAN_BUDGET
from codi_ros.config import load_world_config
from codi_ros.version import code_version, machine_description

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "codi_ros" / "test"))  # the launch stand-in
from local_graph import STARTUP_S, LocalGraph  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "stop_latency.json"


def quantiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {q: round(float(np.percentile(ms, p)), 1) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))} | {
        "max": round(float(ms.max()), 1), "count": int(ms.size)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tries", type=int, default=50, help="stops, each during its own long plan (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random waits (default %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results JSON (default %(default)s)")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    graph = LocalGraph(Path(tempfile.mkdtemp(prefix="stop_latency_")), domain_id=1 + os.getpid() % 100)
    answers, cancels, outcomes = [], [], []
    try:
        graph.start("sim_node", publish_images=False, publish_true_cube_pose=True)
        graph.start("coordinator_node", autonomous=False, cost_backend="in_process")
        for arm in load_world_config().arm_names:
            graph.start("arm_state_node", namespace=arm, arm=arm)
            graph.start("action_node", namespace=arm, arm=arm)
        graph.plan_when_ready()
        plan, stop = graph.node.create_client(Plan, "/codi/plan"), graph.node.create_client(Trigger, "/codi/stop")
        assert plan.wait_for_service(timeout_sec=STARTUP_S) and stop.wait_for_service(timeout_sec=STARTUP_S)
        for i in range(args.tries):
            long_plan = plan.call_async(Plan.Request(num_samples=64, steps=PLAN_BUDGET // (8 * 64)))
            graph.spin_for(float(rng.uniform(0.05, 0.4)))
            asked = time.monotonic()
            stopped = stop.call_async(Trigger.Request())
            graph.spin_until(stopped.done, 60.0)
            answers.append(time.monotonic() - asked)
            graph.spin_until(long_plan.done, 60.0)
            cancels.append(time.monotonic() - asked)
            outcomes.append(long_plan.result().message.split(":")[0] if long_plan.done() else "no answer")
            print(f"try {i}: stop answered in {answers[-1] * 1e3:.1f} ms, plan ended {cancels[-1] * 1e3:.0f} ms "
                  f"after it ({outcomes[-1]})", flush=True)
        graph.check_alive()
    finally:
        graph.close()
    result = {"experiment": "stop_latency", "tries": args.tries, "stop_answer_ms": quantiles(answers),
              "plan_cancelled_after_stop_ms": quantiles(cancels),
              "plan_outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))},
              "machine": machine_description(), "code_version": code_version()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
