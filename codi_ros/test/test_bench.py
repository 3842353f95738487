"""``codi bench``: timings with their provenance and a closed-loop check, bad options refused before running."""

from __future__ import annotations

import json

import pytest

from codi_ros import cli


def bench(*argv: str) -> int:
    return cli.main(["bench", *argv])


def test_bench_plan_writes_timings_breakdown_and_the_fitted_growth_in_the_arms(tmp_path):
    out = tmp_path / "plan.json"
    assert bench("plan", "--repeats", "2", "--arms", "2", "3", "--check-episodes", "0", "--out", str(out)) == 0
    r = json.loads(out.read_text())
    assert r["benchmark"] == "plan" and r["torch_threads"] == 1 and r["code_version"] and r["machine"]
    assert 0 < r["plan"]["p50_ms"] <= r["plan"]["p95_ms"] <= r["plan"]["max_ms"]
    assert r["planner"]["steps"] >= 1 and r["planner"]["guidance"]["num_samples"] >= 2   # the config timed
    parts = r["breakdown"]
    assert parts["score network"] > 0 and parts["cost simulator rollout"] > 0
    total = sum(v for k, v in parts.items() if k != "plan_ms_profiled")
    assert total == pytest.approx(parts["plan_ms_profiled"], abs=0.05)
    assert set(r["vs_arms"]) == {"2", "3"} and r["vs_arms_fit_from_2"]["ms_per_arm"] is not None


def test_bench_data_times_demonstrations_beside_the_experts_success(tmp_path):
    out = tmp_path / "data.json"
    assert bench("data", "--check-episodes", "2", "--out", str(out)) == 0
    r = json.loads(out.read_text())
    assert r["episodes"] == 2 and r["wall_seconds"] > 0 and r["minutes_per_1000_per_worker"] > 0
    assert 0.0 <= r["check"]["expert_success_rate"] <= 1.0


@pytest.mark.parametrize(("argv", "message"), [
    (("plan", "--repeats", "0"), "--repeats: timed calls must be a whole number in [1, 100000], got 0"),
    (("plan", "--check-episodes", "-1"), "--check-episodes: episodes of the closed-loop check must be"),
    (("plan", "--arms", "9"), "--arms: 1 to 6 arms, got 9"),
])
def test_bench_refuses_bad_options_in_one_line_before_running(argv, message, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert bench(*argv, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_bench_refuses_an_unwritable_out_before_running(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert bench("data", "--out", str(blocker / "r.json")) == 2
    assert capsys.readouterr().err.startswith("codi bench: error: --out")
