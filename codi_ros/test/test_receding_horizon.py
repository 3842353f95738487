"""Receding-horizon control by the single-arm policy: consecutive chunks stay in one mode of the data."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from fakes import edited_config

from codi_ros.config import load_world_config
from codi_ros.evaluation import evaluate
from codi_ros.evaluation.single_arm import PolicySource, coherent_choice

H, A = 16, 7


class BimodalPolicy:
    """Stand-in policy: every sampled chunk is a constant +1 or -1 (two equally likely modes, like the
    two grasp yaws 90 degrees apart) plus small noise."""

    def sample(self, obs, n, steps, generator, method):
        modes = torch.randint(0, 2, (n,), generator=generator) * 2.0 - 1.0
        noise = 0.05 * torch.randn(n, H, A, generator=generator)
        return (modes[:, None, None] + noise)[None]

    def normalize_actions(self, a):
        return a


class OneArmWorld:
    """Stand-in world, paused: no time passes between plans."""

    time = 0.0
    cfg = load_world_config()

    def observation(self, arm):
        return np.zeros(24, dtype=np.float32)


def modes_of(controller: PolicySource, plans: int) -> list[float]:
    return [float(np.sign(controller.plan(OneArmWorld()).chunks["left"].mean())) for _ in range(plans)]


def test_coherent_choice_picks_the_candidate_continuing_the_previous_chunk():
    previous = torch.linspace(0, 1, H)[:, None].expand(H, A)
    continuing = torch.cat([previous[4:], previous[-1:].expand(4, A)])      # the previous chunk, shifted by 4
    candidates = torch.stack([-continuing, continuing + 0.3, continuing, torch.zeros(H, A)])
    assert coherent_choice(BimodalPolicy(), candidates, previous, executed=4) == 2
    assert coherent_choice(BimodalPolicy(), candidates, None, executed=4) == 0     # first plan: no preference


def test_controller_with_candidates_stays_in_one_mode_and_without_them_switches():
    plain = modes_of(PolicySource(BimodalPolicy(), "left", steps=1, seed=0, candidates=1), 30)
    coherent = modes_of(PolicySource(BimodalPolicy(), "left", steps=1, seed=0, candidates=16), 30)
    assert len(set(plain)) == 2                      # independent samples hop between the modes
    assert len(set(coherent)) == 1                   # coherent ones commit to the first


def test_candidates_must_be_positive():
    with pytest.raises(ValueError, match="candidates"):
        PolicySource(BimodalPolicy(), "left", steps=1, candidates=0)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--episodes", "0", "--episodes: episodes must be a whole number in [1, 100000], got 0"),
    ("--candidates", "0", "--candidates: joint chunks sampled per plan must be a whole number in [1, 1024]"),
    ("--seconds", "-5", "--seconds: episode length, s must be a number in [0.1, 3600], got -5.0"),
    ("--seconds", "0", "--seconds: episode length"),   # ran and wrote a results file of nothing
    ("--seed", "-1", "--seed: random seed must be a whole number in [0, 4294967295], got -1"),
    ("--latency", "nan", "--latency: injected planning latency"),
    ("--temperature", "-1", "--temperature: lambda"),
    ("--num-samples", "1", "--num-samples: M, guidance samples per denoising step must be a whole number in [2, "),
    ("--num-samples", "100000000", "--num-samples: M"),   # tried to allocate 716 GB
])
def test_codi_eval_refuses_an_out_of_bounds_option_before_running(option, value, message, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    out = tmp_path / "r.json"
    assert evaluate.run(parser.parse_args(["--method", "codi", "--out", str(out), option, value])) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_codi_eval_refuses_a_plan_over_the_compute_budget_with_the_budget_in_the_message(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    out = tmp_path / "r.json"
    args = parser.parse_args(["--method", "codi", "--out", str(out), "--num-samples", "16000", "--sample-steps", "100"])
    assert evaluate.run(args) == 2
    err = capsys.readouterr().err
    assert "8 x 16000 x 100 = 12,800,000 sample evaluations per plan exceeds the budget of 32,768" in err
    assert not out.exists()


def test_codi_eval_refuses_an_unwritable_out_before_running(tmp_path, capsys):
    """--out /proc/x.json ran the whole job, then crashed on the write with a traceback."""
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = parser.parse_args(["--method", "scripted", "--episodes", "1", "--out", str(blocker / "r.json")])
    assert evaluate.run(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("codi eval: error: --out") and "cannot write" in err


def test_codi_eval_refuses_a_trace_path_that_is_a_file_before_running(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    (tmp_path / "trace").write_text("")
    out = tmp_path / "r.json"
    args = parser.parse_args(["--method", "codi", "--out", str(out), "--trace", str(tmp_path / "trace")])
    assert evaluate.run(args) == 2
    assert "is a file, not a directory" in capsys.readouterr().err and not out.exists()


def test_codi_eval_records_its_cost_config_and_refuses_a_bad_one(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    cost = edited_config(tmp_path, "cost.yaml", "engage.closer", "end_effector")
    out = tmp_path / "r.json"
    common = ["--method", "codi", "--episodes", "1", "--seconds", "0.3", "--num-samples", "4", "--no-progress",
              "--out", str(out), "--cost-config", str(cost)]
    assert evaluate.run(parser.parse_args(common)) == 0
    assert json.loads(out.read_text())["cost"]["engage"]["closer"] == "end_effector"
    out.unlink()
    cost.write_text(cost.read_text().replace("end_effector", "wrist"))
    assert evaluate.run(parser.parse_args(common)) == 2
    assert "engage.closer" in capsys.readouterr().err and not out.exists()


def test_codi_eval_codi_simple_plans_with_the_goal_term_alone(tmp_path):
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    out = tmp_path / "r.json"
    assert evaluate.run(parser.parse_args(["--method", "codi-simple", "--episodes", "1", "--seconds", "0.3",
                                           "--num-samples", "4", "--no-progress", "--out", str(out)])) == 0
    r = json.loads(out.read_text())
    assert r["method"] == "codi-simple" and r["planner"]["method"] == "codi"   # joint guidance, ...
    assert r["cost"]["engage"]["weight"] == r["cost"]["collision"]["weight"] == 0.0   # ... by the goal term alone
    assert r["cost"]["goal"]["weight"] > 0 and len(r["episodes"]) == 1


class RefusingPlanner:
    """Stand-in planner that refuses the state from its third plan on (e.g. the cube fell off the table)."""

    def __init__(self):
        self.calls = 0

    def plan(self, state, overrides=None, committed=None, predicted=None):
        from codi_ros.core.planner import PlanningError, PlanResult

        self.calls += 1
        if self.calls > 2:
            raise PlanningError("state.cube.pos: (-0.973, 0.467, -0.302) is off the table")
        still = np.zeros((H, A))
        return PlanResult(chunks={a: still for a in state.arms}, cost=0.0, cost_terms={}, latency_s=0.0)


def test_refused_state_ends_the_handover_episode_as_failed_instead_of_crashing():
    from codi_ros.config import load_world_config
    from codi_ros.evaluation.handover import PlannerSource, aggregate, run_handover_episode
    from codi_ros.sim.tasks import HANDOVER
    from codi_ros.sim.world import TwoArmWorld

    world = TwoArmWorld(load_world_config())
    HANDOVER.reset(world, seed=0, index=0)
    summary, loop = run_handover_episode(world, PlannerSource(RefusingPlanner()), seconds=30.0)
    assert not summary["success"] and "off the table" in summary["planning_error"]
    assert len(loop.plan_latencies) == 3 and summary["duration"] < 2.0   # ended at the refused plan, not after 30 s
    assert aggregate([summary])["planning_error_episodes"] == 1


def test_codi_eval_writes_step_traces_that_summarize_traces_reads(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    trace = tmp_path / "trace"
    assert evaluate.run(parser.parse_args(["--method", "codi", "--episodes", "1", "--seconds", "0.5", "--num-samples",
                                           "4", "--no-progress", "--out", str(tmp_path / "r.json"),
                                           "--trace", str(trace)])) == 0
    episode = json.loads((trace / "episode_000.json").read_text())
    assert len(episode["steps"]) == 5 and all(len(s) == len(episode["columns"]) for s in episode["steps"])

    # A synthetic episode: the left arm carries the cube 20 cm away from the goal, then the right arm holds it.
    cols = episode["columns"]
    def step(t, x, holding):
        row = dict.fromkeys(cols, 0.0) | {"t": t, "cube_x": x, "cube_z": 0.025, "holding": holding}
        return [row[c] for c in cols]
    steps = [step(0.1 * k, -0.1 - 0.02 * k, ["left"]) for k in range(11)] + [step(1.2, -0.3, ["right"])]
    (trace / "episode_001.json").write_text(json.dumps({**episode, "episode": 1, "goal": [0.3, 0.0, 0.025],
                                                         "steps": steps}))
    script = Path(__file__).resolve().parents[2] / "experiments" / "summarize_traces.py"
    out = subprocess.run([sys.executable, str(script), str(trace)], capture_output=True, text=True, check=True).stdout
    assert "left[0-1s]->(-0.30,+0.00) d=0.60" in out and "episodes: 2" in out
    assert "backward carry: 1" in out and "handed over: 1" in out
    assert "closest left 0.10, right 0.10 m" in out                  # both tools at the origin, the cube 0.1 m off


def test_fuzzed_codi_eval_options_are_refused_in_one_line_naming_the_option_before_any_work(tmp_path, capsys):
    """Random and extreme values for every numeric option of ``codi eval``: exit 2 with one line naming the
    option, or (all in bounds) the refusal of the unwritable --out; nothing runs, nothing raises."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    blocker = tmp_path / "file"
    blocker.write_text("")
    values = st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1", "1e308", "4294967296", "0.5", "30", "64"])

    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(st.sampled_from(sorted(evaluate.OPTION_BOUNDS)), values, min_size=1, max_size=3))
    def check(options):
        parser = argparse.ArgumentParser()
        evaluate.add_arguments(parser)
        argv = ["--method", "codi", "--out", str(blocker / "r.json")]
        for name, value in options.items():
            argv += [f"--{name.replace('_', '-')}", value]
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:                        # argparse: not a number of the option's type
            assert e.code == 2
            capsys.readouterr()
            return
        assert evaluate.run(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("codi eval: error: --"), err

    check()
