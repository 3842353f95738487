"""Sweeps of codi eval runs: the intervals they report and the paper harness's methods."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
from pathlib import Path

import pytest

from codi_ros.evaluation import evaluate
from codi_ros.evaluation.runs import eval_run, mean_ci95, wilson

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@pytest.mark.parametrize(("k", "n", "interval"), [(46, 50, (0.8117, 0.9685)), (0, 20, (0.0, 0.1611)),
                                                  (20, 20, (0.8389, 1.0))])
def test_wilson_interval_matches_the_textbook_values(k, n, interval):
    assert wilson(k, n) == pytest.approx(interval, abs=1e-4)


def test_mean_interval_skips_missing_values_and_shrinks_with_more_episodes():
    mean, half = mean_ci95([1.0, None, 3.0])
    assert mean == 2.0 and half == pytest.approx(1.96 * math.sqrt(2) / math.sqrt(2))
    assert mean_ci95([1.0, 3.0] * 50)[1] < half
    assert all(math.isnan(v) for v in mean_ci95([None]))


def test_a_run_whose_file_exists_is_not_run_again(tmp_path):
    done = tmp_path / "codi_paused_seed0.json"
    done.write_text("{}")
    assert eval_run(done, ["--method", "no-such-method"], episodes=1, seed=0) is False   # would fail if it ran


def paper_harness():
    spec = importlib.util.spec_from_file_location("paper", EXPERIMENTS / "paper.py")
    paper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(paper)
    return paper


def test_every_method_of_the_paper_harness_is_a_valid_codi_eval_run():
    paper = paper_harness()
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    for name, (_, options, models) in paper.METHODS.items():
        args = parser.parse_args([*options, "--out", "x.json"])
        assert args.method in evaluate.METHODS, name
        model = Path(evaluate.model_of(args))                    # the --model given, else the method's shipped one
        cost_model = evaluate.cost_model_of(args)
        used = {model, *([Path(cost_model)] if cost_model else [])}
        assert all((m / "model.safetensors").exists() and (m / "manifest.json").exists() for m in used), name
        manifest = json.loads((model / "manifest.json").read_text())
        if manifest["kind"] == "codi.residual_policy":               # a fine-tuned policy: its base's training too
            used.add(Path(manifest["train_config"]["base"]))
        assert {m.name for m in used} == set(models), f"{name}: its budget names other models than it runs"


def test_paper_summary_pools_the_seeds_and_plots_rates_of_n_out_of_n(tmp_path):
    """Two seeds' runs of a method pooled into one row; a method that collides in every episode (CoDi-Indep)
    still plots (its Wilson bound is 1 up to rounding)."""
    paper = paper_harness()

    def run(seed: int, collide: bool, success: bool) -> Path:
        episodes = [{"success": success, "min_distance": 0.02 + 0.01 * i, "completion_time": 10.0 if success else None,
                     "collisions": 2 if collide else 0} for i in range(10)]
        path = tmp_path / f"run_{seed}_{collide}.json"
        path.write_text(json.dumps({"seed": seed, "timing": {"mode": "paused"}, "episodes": episodes,
                                    "code_version": "x", "wall_seconds": 1.0, "machine": {}}))
        return path

    rows = [paper.summarize("codi", [run(0, False, True), run(1, False, False)]),
            paper.summarize("codi-indep", [run(0, True, True), run(1, True, True)])]
    assert rows[0]["episodes"] == 20 and rows[0]["successes"] == 10 and rows[0]["seeds"] == [0, 1]
    assert rows[0]["completion_time_s"] == (10.0, 0.0) and rows[1]["episodes_with_collision"] == 20
    paper.plot(rows, tmp_path / "paper.png")
    assert (tmp_path / "paper.png").stat().st_size > 10_000
    table = paper.budget_table(rows).splitlines()                  # a header, a rule and a line per row
    assert len(table) == 4 and table[2].startswith(f"| {rows[0]['name']} | ") and "single_arm: " in table[2]
