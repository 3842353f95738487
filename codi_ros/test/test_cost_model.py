"""The classifier-guidance baselines (App. D-A): the noise-conditioned cost model J_phi fitted by eq. 47, its labels
from the cost simulator, its gradient as the guidance (eq. 49), and CG-Joint / CG-Product end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fakes import GaussianPolicy
from test_joint_policy import SINGLE_ARM_MODEL, eval_args, trained_joint, two_arm_dataset  # noqa: F401 (a fixture)
from test_planner import WORLD, world_state
from test_policy import fit_model

from codi_ros import cli
from codi_ros.core.composition import ProductPolicy, joint_layout
from codi_ros.core.cost import CostValue, HandoverCost, load_cost_config
from codi_ros.core.cost_model import CostModel, CostModelConfig, CostModelLoadError
from codi_ros.core.guidance import ClassifierGuidance, GuidanceConfig
from codi_ros.core.kinematic_model import KinematicModel, SimState
from codi_ros.core.networks import UNetConfig
from codi_ros.core.sampler import CoDiSampler, SamplerConfig
from codi_ros.data.dataset import Dataset, save_dataset
from codi_ros.evaluation import evaluate
from codi_ros.frames import ACT_DIM, OBS_DIM, observe
from codi_ros.training.cost_labels import segment_costs, segment_states

pytestmark = pytest.mark.usefixtures("one_thread")
H = WORLD.horizon.prediction
GOAL = [0.35, 0.0, 0.5 * WORLD.cube.size]


def test_eq47_learns_the_expected_cost_given_the_noisy_chunk():
    """Analytic case: actions a ~ N(0, sd^2) per dimension (normalised units) and J(a) = sum_k raw vx_k, linear.
    Eq. 47's minimiser is E[J(a) | a + t eps = x], whose slope along the vx dimensions shrinks by
    sd^2 / (sd^2 + t^2) (the Gaussian posterior mean): the full slope at t -> 0, half of it at t = sd."""
    rng = np.random.default_rng(0)
    steps, n = 4, 4096
    raw = rng.normal(0.0, 0.3, (n, steps, ACT_DIM)).astype(np.float32)
    rows = raw.reshape(-1, 1, ACT_DIM)
    stats = Dataset(np.zeros((len(rows), 1, OBS_DIM), np.float32), rows, np.array([len(rows)]), [{}], {}).stats()
    costs = raw[:, :, 0].sum(axis=1)
    cfg = CostModelConfig(horizon=steps, agents=1, unet=UNetConfig(down_dims=(16,), cond_dim=16))
    model = fit_model(lambda: CostModel.from_data(cfg, stats, costs),
                      (torch.zeros(n, OBS_DIM), torch.as_tensor(raw), torch.as_tensor(costs)), steps=1500)
    scale = float(model.act_scale[0])                                   # raw = scale * normalised (+ centre)
    sd = 0.3 / scale

    def slope(t: float) -> float:
        x = torch.zeros(2, steps, ACT_DIM)
        x[0, :, 0], x[1, :, 0] = -sd, sd
        with torch.no_grad():
            J = model(torch.zeros(2, OBS_DIM), x, torch.full((2,), t))
        return float(J[1] - J[0]) / (2 * sd)

    exact = steps * scale                                               # dJ/dx along the vx of every step
    assert slope(0.01) == pytest.approx(exact, rel=0.25)
    assert slope(sd) / slope(0.01) == pytest.approx(0.5, abs=0.2)
    assert abs(slope(20.0)) < 0.2 * exact                               # pure noise: no information


def test_the_labels_rebuild_the_world_state_the_planner_scores():
    """The state of a data segment, rebuilt from the arms' observations (each in its own base frame) and the
    episode's goal, is the planner's SimState of that world state; its label is the planner's J of the chunk."""
    state = world_state(cube=(-0.25, 0.12, GOAL[2]), goal=GOAL, left=(-0.3, 0.1, 0.15))
    obs = np.stack([observe(state.arms[n], state.cube, WORLD.base_frame(n)) for n in WORLD.arm_names])[None]
    actions = np.zeros((1, 2, ACT_DIM), np.float32)
    actions[0, 0, 0], actions[0, :, 6] = 0.1, 0.08
    ds = Dataset(obs, actions, np.array([1]), [{"goal": GOAL}], {})
    rebuilt, expected = segment_states(ds, WORLD)[0], SimState.from_world(state, WORLD)
    for name in ("ee_pos", "gripper_width", "cube_pos", "goal", "base_xy", "base_yaw"):
        torch.testing.assert_close(getattr(rebuilt, name), getattr(expected, name), atol=1e-5, rtol=0)
    cost = HandoverCost(load_cost_config(), KinematicModel(WORLD), WORLD.arm_names)
    chunk = torch.as_tensor(ds.segments(H)[1][:1])
    assert segment_costs(ds, H, WORLD, load_cost_config(), progress=False)[0] == pytest.approx(
        float(cost(expected, chunk).total[0]), abs=1e-5)


class LinearCost:
    """A cost model stand-in: J = sum(w * a) of the normalised joint chunk (the joint layout), normalised as
    raw / 2."""

    def __init__(self, w: torch.Tensor):
        self.w = w

    def joint_cost(self, obs, chunks, t):
        return (self.w * joint_layout(chunks) / 2).sum(dim=(1, 2))


def test_classifier_guidance_is_the_cost_gradient_over_lambda():
    """Eq. 49 through the two normalisers: d/d a(t) of J(unnormalise_base(a(t)) / 2) = w * base scale / 2."""
    w = torch.randn(H, 2 * ACT_DIM, generator=torch.Generator().manual_seed(0))
    base = ProductPolicy(GaussianPolicy(), 2)
    config = GuidanceConfig(temperature=0.05, scale=0.5)
    a_t = torch.randn(3, 2, H, ACT_DIM)
    g = ClassifierGuidance(config, LinearCost(w), base.unnormalize_actions)(a_t, torch.ones(3), torch.zeros(3, 2, 22))
    per_arm = w.unflatten(1, (2, ACT_DIM)).transpose(0, 1)                      # (2, H, A)
    expected = -0.5 / 0.05 * per_arm * GaussianPolicy.scale / 2
    torch.testing.assert_close(g, expected.expand_as(g))


def test_classifier_guided_samples_move_to_lower_learned_cost():
    w = torch.zeros(H, 2 * ACT_DIM)
    w[:, 0] = -1.0                                          # the learned cost falls with the left arm's vx
    base = ProductPolicy(GaussianPolicy(), 2)

    def sample(model):
        cfg = SamplerConfig(steps=10, method="heun", guidance=GuidanceConfig(temperature=1.0))
        cost = lambda s, a: CostValue(total=torch.zeros(len(a)), terms={})  # noqa: E731  (scores the result only)
        sampler = CoDiSampler(base, cost, cfg, (H, ACT_DIM), cost_model=model)
        return sampler.sample(torch.zeros(64, 2, OBS_DIM)).actions

    guided, plain = sample(LinearCost(w)), sample(None)
    assert guided[:, 0, :, 0].mean() > plain[:, 0, :, 0].mean() + 0.05        # left vx up
    assert abs(float(guided[:, 1, :, 0].mean() - plain[:, 1, :, 0].mean())) < 0.02   # right arm unguided


def labelled_two_arm_data() -> Dataset:
    ds = two_arm_dataset()
    return Dataset(ds.obs, ds.actions, ds.episode_ends, [dict(e, goal=GOAL) for e in ds.episodes], ds.meta)


@pytest.fixture(scope="module")
def trained_cost_model(tmp_path_factory):
    """``codi train --cost-model`` on a tiny two-arm data set: the model directory."""
    root = tmp_path_factory.mktemp("cost_model")
    data, out = root / "multi", root / "cost_model"
    save_dataset(labelled_two_arm_data(), data, summary={})
    tiny = ["--steps", "4", "--eval-every", "2", "--batch-size", "8", "--threads", "1", "--down-dims", "8",
            "--val-samples", "16", "--warmup-steps", "1"]
    assert cli.main(["train", "--data", str(data), "--out", str(out), "--cost-model", *tiny]) == 0
    return out


def test_codi_train_cost_model_writes_a_loadable_model_and_its_manifest(trained_cost_model):
    model = CostModel.load(trained_cost_model)
    assert (model.config.agents, model.config.horizon) == (2, H)
    manifest = json.loads((trained_cost_model / "manifest.json").read_text())
    assert manifest["kind"] == "codi.cost_model" and manifest["cost_model_config"]["agents"] == 2
    with torch.no_grad():
        J = model(torch.zeros(3, 2 * OBS_DIM), torch.zeros(3, H, 2 * ACT_DIM), torch.full((3,), 0.5))
    assert J.shape == (3,) and torch.isfinite(J).all()


def test_a_policy_is_not_loaded_as_a_cost_model_nor_a_tampered_one(trained_cost_model, tmp_path):
    with pytest.raises(CostModelLoadError, match="'codi.diffusion_policy' model, expected a 'codi.cost_model'"):
        CostModel.load(SINGLE_ARM_MODEL)
    copy = tmp_path / "cm"
    copy.mkdir()
    for f in ("config.json", "model.safetensors"):
        (copy / f).write_bytes((trained_cost_model / f).read_bytes())
    blob = (copy / "model.safetensors").read_bytes()
    (copy / "model.safetensors").write_bytes(blob[:-10])
    with pytest.raises(CostModelLoadError, match="truncated or modified"):
        CostModel.load(copy)


@pytest.mark.parametrize("method", ["cg-joint", "cg-product"])
def test_codi_eval_runs_an_episode_guided_by_the_cost_model(trained_cost_model, trained_joint, method, tmp_path):  # noqa: F811
    model = trained_joint if method == "cg-joint" else SINGLE_ARM_MODEL
    out = tmp_path / "r.json"
    assert evaluate.run(eval_args(method, out, "--model", str(model), "--cost-model", str(trained_cost_model))) == 0
    r = json.loads(out.read_text())
    assert r["method"] == method and r["cost_model"] == str(trained_cost_model) and len(r["episodes"]) == 1


def test_a_cost_model_is_refused_for_a_method_that_does_not_use_one(trained_cost_model, tmp_path, capsys):
    assert evaluate.run(eval_args("codi", tmp_path / "r.json", "--cost-model", str(trained_cost_model))) == 2
    assert "--cost-model: only the classifier-guidance methods" in capsys.readouterr().err


def test_codi_train_cost_model_refuses_single_arm_data(tmp_path, capsys):
    from test_policy import synthetic_dataset

    data = tmp_path / "single"
    save_dataset(synthetic_dataset(episodes=4, steps=10), data, summary={})
    assert cli.main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--cost-model", "--steps", "2"]) == 2
    assert "--cost-model" in capsys.readouterr().err
