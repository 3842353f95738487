"""The joint ("macro-agent") policy of the joint-data baselines: one diffusion policy over both arms'
observations and actions (core/policy.py agents > 1), behind the product's interface (core/composition.py),
trained by ``codi train --joint`` on multi-arm data and planned with by the CoDi planner (CoDi-Joint)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from test_planner import FAST, WORLD, world_state
from test_policy import fit, synthetic_dataset

from codi_ros import cli
from codi_ros.core.composition import JointPolicy, ProductPolicy, base_policy
from codi_ros.core.cost import load_cost_config
from codi_ros.core.networks import UNetConfig
from codi_ros.core.planner import Planner
from codi_ros.core.policy import DEFAULT_MODEL, DiffusionPolicy, PolicyConfig, load_policy
from codi_ros.data.dataset import Dataset, save_dataset
from codi_ros.evaluation import evaluate
from codi_ros.frames import ACT_DIM, OBS_DIM
from codi_ros.paths import models_dir

pytestmark = pytest.mark.usefixtures("one_thread")
H = WORLD.horizon.prediction
TINY_UNET = UNetConfig(down_dims=(16, 32), cond_dim=16)
SINGLE_ARM_MODEL = models_dir() / DEFAULT_MODEL      # the shipped single-arm policy


def two_arm_dataset(episodes: int = 6, steps: int = 20, seed: int = 0) -> Dataset:
    """Two arms per step; arm 2's actions span ten times arm 1's range, so a normaliser mixing the arms'
    columns shows."""
    one = synthetic_dataset(episodes=episodes, steps=steps, seed=seed)
    other = synthetic_dataset(episodes=episodes, steps=steps, seed=seed + 1)
    actions = np.concatenate([one.actions, 10 * other.actions], axis=1)
    return Dataset(np.concatenate([one.obs, other.obs], axis=1), actions, one.episode_ends, one.episodes, one.meta)


def joint_policy(ds: Dataset) -> DiffusionPolicy:
    torch.manual_seed(0)
    return DiffusionPolicy.from_stats(PolicyConfig(horizon=H, unet=TINY_UNET, agents=ds.num_arms),
                                      ds.stats(joint=True)).eval()


def test_the_data_sets_joint_layout_is_the_one_the_joint_policy_reads():
    """What training feeds the joint policy (Dataset.joint_segments) and what the planner hands it
    (JointPolicy of (B, N, H, A) joint chunks) must be the same numbers in the same places."""
    ds = two_arm_dataset()
    policy = joint_policy(ds)
    joint = JointPolicy(policy, 2)
    obs, chunks = ds.segments(H)                          # (S, 2, OBS), (S, 2, H, ACT): the planner's layout
    flat_obs, flat_chunks = ds.joint_segments(H)          # (S, 2 OBS), (S, H, 2 ACT): the training layout
    c, fc = torch.as_tensor(chunks[:5]), torch.as_tensor(flat_chunks[:5])
    t = torch.full((5,), 0.7)
    expected = policy.score(policy.normalize_actions(fc), t, torch.as_tensor(flat_obs[:5]))
    got = joint.score(joint.normalize_actions(c), t, torch.as_tensor(obs[:5]))
    torch.testing.assert_close(got[:, 1, :, :], expected[:, :, ACT_DIM:])   # arm 2 is the second 7 columns
    torch.testing.assert_close(got[:, 0, :, :], expected[:, :, :ACT_DIM])
    torch.testing.assert_close(joint.unnormalize_actions(joint.normalize_actions(c)), c)


def test_each_arm_is_normalised_by_its_own_range():
    ds = two_arm_dataset()
    joint = JointPolicy(joint_policy(ds), 2)
    _, chunks = ds.segments(H)
    normalised = joint.normalize_actions(torch.as_tensor(chunks))
    for arm in range(2):
        assert normalised[:, arm].abs().max() <= 1 + 1e-5
        assert normalised[:, arm, :, :3].abs().max() > 0.9     # each arm's twist range fills the unit box


def test_a_product_and_a_joint_policy_refuse_each_others_policies():
    ds = two_arm_dataset()
    policy = joint_policy(ds)
    with pytest.raises(ValueError, match="agents 1"):
        ProductPolicy(policy, 2)
    with pytest.raises(ValueError, match="acts for 2 arms, the world has 3"):
        JointPolicy(policy, 3)
    assert isinstance(base_policy(policy, 2), JointPolicy)


@pytest.fixture(scope="module")
def trained_joint(tmp_path_factory):
    """``codi train --joint`` on a tiny two-arm data set: the policy directory."""
    root = tmp_path_factory.mktemp("joint")
    data, out = root / "multi", root / "joint"
    save_dataset(two_arm_dataset(), data, summary={})
    tiny = ["--steps", "4", "--eval-every", "2", "--batch-size", "8", "--threads", "1", "--down-dims", "8", "16",
            "--val-samples", "16", "--warmup-steps", "1"]
    assert cli.main(["train", "--data", str(data), "--out", str(out), "--joint", *tiny]) == 0
    return out


def test_codi_train_joint_gives_a_policy_the_planner_plans_both_arms_with(trained_joint):
    policy = load_policy(trained_joint)
    assert (policy.config.agents, policy.config.obs_dim, policy.config.act_dim) == (2, 2 * OBS_DIM, 2 * ACT_DIM)
    assert json.loads((trained_joint / "manifest.json").read_text())["kind"] == "codi.joint_policy"
    result = Planner(policy, WORLD, FAST, load_cost_config()).plan(world_state())
    assert set(result.chunks) == {"left", "right"}
    assert all(c.shape == (H, ACT_DIM) and np.isfinite(c).all() for c in result.chunks.values())


def eval_args(method: str, out, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    return parser.parse_args(["--method", method, "--episodes", "1", "--seconds", "0.3", "--num-samples", "4",
                              "--no-progress", "--out", str(out), *extra])


@pytest.mark.parametrize("method,goal_only", [("codi-joint", False), ("codi-joint-simple", True)])
def test_codi_eval_codi_joint_runs_an_episode_with_the_joint_policy(trained_joint, tmp_path, method, goal_only):
    out = tmp_path / "r.json"
    assert evaluate.run(eval_args(method, out, "--model", str(trained_joint))) == 0
    r = json.loads(out.read_text())
    assert r["method"] == method and r["model"] == str(trained_joint) and len(r["episodes"]) == 1
    assert (r["cost"]["collision"]["weight"] == 0.0) == goal_only


@pytest.mark.parametrize("method,joint_model", [("codi-joint", False), ("codi", True), ("single-arm", True),
                                                ("mimic-d", True)])
def test_codi_eval_refuses_a_policy_of_the_wrong_kind_for_the_method(trained_joint, tmp_path, capsys, method,
                                                                     joint_model):
    model = trained_joint if joint_model else SINGLE_ARM_MODEL
    assert evaluate.run(eval_args(method, tmp_path / "r.json", "--model", str(model))) == 2
    err = capsys.readouterr().err
    assert f"--method {method} needs" in err and ("needs a joint policy" in err) != joint_model
    assert not (tmp_path / "r.json").exists()


def test_codi_train_joint_refuses_single_arm_data(tmp_path, capsys):
    data = tmp_path / "single"
    save_dataset(synthetic_dataset(episodes=4, steps=10), data, summary={})
    assert cli.main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--joint", "--steps", "2"]) == 2
    assert "--joint" in capsys.readouterr().err


def test_a_joint_policy_learns_coordination_a_product_of_its_arms_cannot_represent():
    """Demonstrations where exactly one of the two arms moves (+x at 0.2 m/s), which one drawn per episode:
    the joint policy's chunks keep that (one arm moves, not both, not neither). Each arm's own marginal is a
    coin flip, so a product of per-arm policies would move both or neither in half its chunks."""
    rng = np.random.default_rng(0)
    episodes, steps = 20, 30
    first = np.repeat(rng.random(episodes) < 0.5, steps)
    actions = np.zeros((episodes * steps, 2, ACT_DIM), dtype=np.float32)
    actions[first, 0, 0], actions[~first, 1, 0] = 0.2, 0.2
    actions[..., 6] = 0.08
    ds = Dataset(np.zeros((episodes * steps, 2, OBS_DIM), dtype=np.float32), actions,
                 np.arange(1, episodes + 1) * steps, [{"kind": "synthetic"}] * episodes, {})
    obs, chunks = (torch.as_tensor(x) for x in ds.joint_segments(H))
    policy = fit(PolicyConfig(horizon=H, unet=TINY_UNET, agents=2), ds.stats(joint=True), obs, chunks, steps=600)
    samples = policy.sample(torch.zeros(2 * OBS_DIM), n=64, steps=10, method="heun",
                                   generator=torch.Generator().manual_seed(1))        # (64, H, 2 * ACT_DIM)
    moving = samples[:, 0, [0, ACT_DIM]] > 0.1                                         # (64, 2): each arm's vx
    exactly_one = (moving.sum(1) == 1).float().mean().item()
    assert exactly_one > 0.9, f"only {exactly_one:.0%} of the joint chunks move exactly one arm"
    assert 0.1 < moving[:, 0].float().mean().item() < 0.9, "the joint policy dropped a mode"


def test_codi_eval_mimic_d_runs_each_arm_on_its_own_policy_without_a_coordinator(tmp_path):
    """The decentralised baseline of two-arm data (MIMIC-D): no guidance, no cost in the choice."""
    out = tmp_path / "r.json"
    assert evaluate.run(eval_args("mimic-d", out, "--model", str(SINGLE_ARM_MODEL))) == 0
    r = json.loads(out.read_text())
    assert r["method"] == "mimic-d" and r["planner"]["method"] == "decentralized" and len(r["episodes"]) == 1
