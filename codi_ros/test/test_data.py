"""Scripted experts and demonstration data sets: success, determinism, format, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codi_ros.config import load_world_config
from codi_ros.data.dataset import DatasetError, load_dataset
from codi_ros.data.generate import ACTION_NOISE, NOISE_TIME_CONSTANT, PLACE_TOLERANCE, TwistNoise, generate
from codi_ros.frames import ACT_DIM, OBS_DIM, OBS_FIELDS, field_slice

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "single"
    summary = generate("single", 40, seed=3, out=out, reset_prob=0.01, workers=1, progress=False)
    return out, summary


def test_single_arm_expert_picks_and_places_reliably(single):
    out, summary = single
    assert summary["kinds"] == {"pick": 20, "yield": 20}
    # an episode succeeds when every placement it completes is on target
    assert summary["expert_success_rate"] >= 0.9
    episodes = json.loads((out / "episodes.json").read_text())
    picks = [e for e in episodes if e["kind"] == "pick"]
    assert np.mean([len(e["place_errors"]) > 0 for e in picks]) >= 0.7   # 0.78 of 500 with the DART noise
    errors = [x for e in episodes if e["kind"] == "pick" for x in e["place_errors"]]
    assert np.mean(np.asarray(errors) <= PLACE_TOLERANCE) >= 0.95
    assert sum(len(e.get("place_errors", [])) >= 2 for e in episodes) >= 5   # the arm leaves home again for the cube
    assert {e["arm"] for e in episodes} == {"left", "right"}
    assert summary["recovery_resets"] > 0            # the 1% resets happen and are survived


def test_pick_episodes_go_home_while_the_cube_is_out_of_reach(single):
    """Out-of-reach resets teach the receiving arm's behaviour: the cube lies where only the other arm
    reaches it -> the ego arm goes home (to the yield demonstrations' end pose) and waits, gripper open."""
    out, _ = single
    ds, cfg = load_dataset(out), load_world_config()
    cube, ee = ds.obs[:, 0, field_slice(OBS_FIELDS, "cube_pos")], ds.obs[:, 0, field_slice(OBS_FIELDS, "ee_pos")]
    home = np.mean([ds.obs[end - 1, 0, field_slice(OBS_FIELDS, "ee_pos")]
                    for end, ep in zip(ds.episode_ends, ds.episodes, strict=True) if ep["kind"] == "yield"], axis=0)
    checked = 0
    for start, end, ep in zip(ds.episode_starts, ds.episode_ends, ds.episodes, strict=True):
        far = np.linalg.norm(cube[start:end, :2], axis=1) > cfg.reach.max_radius
        if ep["kind"] == "pick" and far[-50:].all():                 # out of reach for the last 5 s
            assert np.linalg.norm(ee[end - 1] - home) < 0.05
            assert ds.actions[end - 1, 0, 6] > 0.07
            checked += 1
    assert checked > 0, "no pick episode ended with the cube out of reach"


def test_action_noise_perturbs_open_gripper_twists_only_with_the_configured_spread():
    """DART noise: an open-gripper twist gets correlated noise of std ACTION_NOISE x the twist limits;
    a closing or closed gripper's action (grasp, carry, place) is executed as the expert gave it."""
    cfg = load_world_config()
    noise = TwistNoise(cfg, ACTION_NOISE, np.random.default_rng(0))
    open_action, closed_action = np.r_[np.zeros(6), 0.08], np.r_[0.1, 0, 0, 0, 0, 0.2, 0.0]
    executed = np.array([noise.perturb(open_action) for _ in range(20_000)])
    np.testing.assert_array_equal(noise.perturb(closed_action), closed_action)
    limits = np.r_[np.full(3, cfg.control.max_linear_speed), np.full(3, cfg.control.max_angular_speed)]
    np.testing.assert_allclose(executed[:, :6].std(axis=0), ACTION_NOISE * limits, rtol=0.15)
    assert np.all(executed[:, 6] == 0.08)
    lag = round(NOISE_TIME_CONSTANT / cfg.control.dt)      # correlated over its time constant: about 1/e
    corr = np.corrcoef(executed[:-lag, 0], executed[lag:, 0])[0, 1]
    assert abs(corr - np.exp(-1)) < 0.1
    silent = TwistNoise(cfg, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(silent.perturb(open_action), open_action)


def test_data_set_records_its_action_noise(single):
    out, _ = single
    assert load_dataset(out).meta["action_noise"] == ACTION_NOISE


def test_multi_arm_expert_completes_handovers(tmp_path):
    summary = generate("multi", 12, seed=5, out=tmp_path / "multi", workers=1, progress=False)
    assert summary["expert_success_rate"] >= 0.95
    ds = load_dataset(tmp_path / "multi")
    assert ds.num_arms == 2
    assert any(len(e["arms_used"]) == 2 for e in ds.episodes), "no episode needed a handover"
    assert ds.meta["reset_prob"] == 0.0 and ds.meta["action_noise"] == 0.0   # what the multi expert ran with


def test_yield_demonstrations_end_at_home(single):
    """Every yield demonstration ends with the tool at home (within 2 cm: the DART noise keeps nudging it,
    the expert keeps correcting it at under 0.1 m/s) and the gripper open."""
    out, _ = single
    ds = load_dataset(out)
    ee = field_slice(OBS_FIELDS, "ee_pos")
    ends = [end for end, ep in zip(ds.episode_ends, ds.episodes, strict=True) if ep["kind"] == "yield"]
    home = np.median([ds.obs[end - 1, 0, ee] for end in ends], axis=0)
    for end in ends:
        assert np.linalg.norm(ds.obs[end - 1, 0, ee] - home) < 0.02
        assert np.linalg.norm(ds.actions[end - 1, 0, :3]) < 0.1
        assert ds.actions[end - 1, 0, 6] > 0.07                      # gripper open


def test_round_trip_segments_and_stats(single):
    out, summary = single
    ds = load_dataset(out)
    assert ds.obs.shape == (summary["steps"], 1, OBS_DIM) and ds.actions.shape == (summary["steps"], 1, ACT_DIM)
    obs, chunks = ds.segments(16)
    assert chunks.shape == (summary["segments"], 1, 16, ACT_DIM)
    # a segment is the next 16 actions of its own episode; past the end the arm holds still
    last = int(ds.episode_ends[0]) - 1
    np.testing.assert_array_equal(chunks[last, 0, 0], ds.actions[last, 0])
    assert np.all(chunks[last, 0, 1:, :6] == 0) and np.all(chunks[last, 0, 1:, 6] == ds.actions[last, 0, 6])
    np.testing.assert_array_equal(chunks[3, 0, :4], ds.actions[3:7, 0])
    stats = json.loads((out / "stats.json").read_text())
    np.testing.assert_allclose(stats["actions"]["mean"], ds.actions.reshape(-1, ACT_DIM).mean(0), rtol=1e-5)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 3 and "code_version" in meta and meta["world_config"]["arms"][0]["name"] == "left"


def test_subset_takes_a_balanced_prefix(single):
    ds = load_dataset(single[0], fraction=0.2)
    assert ds.num_episodes == 8
    assert [e["kind"] for e in ds.episodes].count("pick") == 4
    assert {e["arm"] for e in ds.episodes} == {"left", "right"}


def test_generation_is_deterministic_for_a_seed(tmp_path):
    a = generate("single", 4, seed=11, out=tmp_path / "a", workers=1, progress=False)
    b = generate("single", 4, seed=11, out=tmp_path / "b", workers=2, progress=False)
    assert a["steps"] == b["steps"]
    np.testing.assert_array_equal(load_dataset(tmp_path / "a").obs, load_dataset(tmp_path / "b").obs)
    np.testing.assert_array_equal(load_dataset(tmp_path / "a").actions, load_dataset(tmp_path / "b").actions)
    generate("single", 4, seed=12, out=tmp_path / "c", workers=1, progress=False)
    assert not np.array_equal(load_dataset(tmp_path / "c").obs[:10], load_dataset(tmp_path / "a").obs[:10])


def test_the_support_ablations_drop_the_yield_demonstrations_or_the_out_of_reach_resets(tmp_path):
    """The data of the support ablations (issue 19): picks only (no "stay home" demonstrations), or no reset that
    puts the cube out of the arm's reach (no "cube out of reach -> go home"); the data set records which."""
    picks = generate("single", 4, seed=11, out=tmp_path / "picks", workers=1, progress=False, yields=False)
    assert picks["kinds"] == {"pick": 4}
    assert load_dataset(tmp_path / "picks").meta["yield_episodes"] is False
    often = dict(workers=1, progress=False, reset_prob=0.2)   # many resets in a 30 s pick episode
    with_resets = generate("single", 2, seed=11, out=tmp_path / "with", **often)
    without = generate("single", 2, seed=11, out=tmp_path / "without", out_of_reach=0.0, **often)
    assert with_resets["kinds"] == without["kinds"] == {"pick": 1, "yield": 1}
    count = lambda d: sum(e.get("out_of_reach_resets", 0) for e in load_dataset(d).episodes)  # noqa: E731
    assert count(tmp_path / "with") > 0 and count(tmp_path / "without") == 0
    assert load_dataset(tmp_path / "without").meta["out_of_reach_resets"] == 0.0


def test_incomplete_or_corrupt_data_set_is_refused(single, tmp_path):
    with pytest.raises(DatasetError, match="missing"):
        load_dataset(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in single[0].iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "actions.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DatasetError):
        load_dataset(bad)
    old = tmp_path / "old_layout"                       # a data set from before an observation field was added
    old.mkdir()
    for f in single[0].iterdir():
        (old / f.name).write_bytes(f.read_bytes())
    np.save(old / "obs.npy", np.load(single[0] / "obs.npy")[..., :-2])
    with pytest.raises(DatasetError, match="regenerate it"):
        load_dataset(old)


def _cli(*args, cwd=REPO):
    env = {"PYTHONPATH": str(REPO / "codi_ros"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "codi_ros.cli", "data", "generate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,message", [
    (["--mode", "triple", "--episodes", "2"], "invalid choice"),
    (["--mode", "single", "--episodes", "0"], "--episodes: episodes must be a whole number in [1, 100000]"),
    (["--mode", "single", "--episodes", "-3"], "--episodes: episodes must be"),
    (["--mode", "single", "--episodes", "2", "--seed", "-1"], "--seed: random seed must be"),   # a worker traceback
    (["--mode", "single", "--episodes", "2", "--action-noise", "1.5"], "--action-noise must be in [0, 1]"),
    (["--mode", "single", "--episodes", "2", "--action-noise", "nan"], "--action-noise must be in [0, 1]"),
    (["--mode", "single", "--episodes", "2", "--out-of-reach-resets", "2"], "--out-of-reach-resets must be in [0, 1]"),
])
def test_cli_rejects_bad_arguments(tmp_path, args, message):
    r = _cli(*args, "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_cli_rejects_an_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = _cli("--mode", "single", "--episodes", "1", "--out", str(blocker / "sub" / "out"))
    assert r.returncode != 0 and "cannot write" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_rejects_a_config_with_an_unreachable_goal(tmp_path):
    text = (REPO / "config" / "world.yaml").read_text().replace("x_range: [0.25, 0.35]", "x_range: [0.85, 0.88]")
    (tmp_path / "world.yaml").write_text(text)
    r = _cli("--mode", "multi", "--episodes", "1", "--config", str(tmp_path / "world.yaml"),
             "--out", str(tmp_path / "out"))
    assert r.returncode != 0 and "out of reach" in r.stderr
    assert not (tmp_path / "out").exists()


def test_cli_writes_a_summary(tmp_path):
    r = _cli("--mode", "single", "--episodes", "2", "--seed", "1", "--out", str(tmp_path / "out"), "--no-progress",
             "--workers", "1")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {"episodes", "segments", "expert_success_rate", "seconds"} <= summary.keys()
    assert summary["episodes"] == 2 and summary["segments"] > 0
