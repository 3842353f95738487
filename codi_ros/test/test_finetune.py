"""The fine-tuning baselines DPMD-Joint, SDAC-Joint, EXPO-Joint (App. D, eq. 45, 50-57): each loss on a Gaussian
case whose minimiser is known in closed form, the MPPI edit, the residual policy, and ``codi finetune`` then
``codi eval`` end to end on tiny models."""

from __future__ import annotations

import json

import pytest
import torch
from test_cost_model import labelled_two_arm_data
from test_joint_policy import TINY_UNET, H, eval_args, trained_joint  # noqa: F401 (a fixture)

from codi_ros import cli
from codi_ros.core import diffusion
from codi_ros.core.finetune import cost_weights, mppi_edit, sdac_targets
from codi_ros.core.policy import DiffusionPolicy, PolicyConfig, ResidualPolicy, load_policy
from codi_ros.data.dataset import save_dataset
from codi_ros.evaluation import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")
CFG = diffusion.EDMConfig()
LAM, M, V = 0.1, 1.5, 0.25   # lambda; J = lambda (a - M)^2 / (2 V): exp(-J / lambda) is N(M, V) up to a factor


def quadratic_cost(x: torch.Tensor) -> torch.Tensor:
    """J of 1-D samples (..., 1) -> (...)."""
    return LAM * (x[..., 0] - M) ** 2 / (2 * V)


def fit_gaussian_denoiser(loss_of) -> tuple[float, float]:
    """(mean, variance) of the Gaussian whose exact denoiser D(x; t) = (v x + t^2 m) / (v + t^2) minimises
    ``loss_of(denoise_fn)``: the minimiser of a denoising loss whose targets come from N(m, v)."""
    m, log_v = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([m, log_v], lr=0.05)
    for _ in range(400):
        def denoise(x, t):
            v, t2 = log_v.exp(), t.view(-1, 1) ** 2
            return (v * x + t2 * m) / (v + t2)
        opt.zero_grad()
        loss_of(denoise).backward()
        opt.step()
    return float(m.detach()), float(log_v.detach().exp())


def test_dpmd_loss_is_minimised_by_the_score_of_the_old_policy_tilted_by_the_cost():
    """Eq. 51-52: samples of pi_old = N(0, 1), weights exp(-J / lambda) of N(M, V): the fitted denoiser is the
    product's, N(mu, s^2) with s^2 = 1 / (1 + 1 / V), mu = s^2 M / V."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(20000, 1, generator=g)
    w = cost_weights(quadratic_cost(x0), LAM)
    s2 = 1 / (1 + 1 / V)
    mean, var = fit_gaussian_denoiser(
        lambda d: diffusion.dsm_loss(d, x0, CFG, torch.Generator().manual_seed(1), weights=w))
    assert mean == pytest.approx(s2 * M / V, abs=0.05) and var == pytest.approx(s2, rel=0.1)


def test_sdac_loss_is_minimised_by_the_score_of_the_soft_optimal_policy():
    """Eq. 54-55: whatever pi_old is (here N(1, 0.7^2), what h_t noises), the fit is the denoiser of
    exp(-J / lambda) = N(M, V). (Far from the target, M points a(t) + t eps~ estimate it badly: the t <= 2 here.)"""
    g = torch.Generator().manual_seed(0)
    x0 = 1.0 + 0.7 * torch.randn(1, 20000, 1, generator=g)             # one state, its samples
    t = diffusion.sample_noise_levels(20000, CFG, g).clamp(max=2.0).reshape(1, -1)
    x_t, target = sdac_targets(x0, t, quadratic_cost, LAM, points=256, generator=g)
    mean, var = fit_gaussian_denoiser(lambda d: diffusion.denoising_loss(d, x_t[0], t[0], target[0], CFG))
    assert mean == pytest.approx(M, abs=0.03) and var == pytest.approx(V, rel=0.1)


def test_the_mppi_edit_lowers_the_cost_and_expo_fits_the_edited_samples():
    """Eq. 57 with J = lambda (a - M)^2 / 2 and perturbations N(0, sigma^2): the edit tends to c (M - a),
    c = sigma^2 / (sigma^2 + 1), so edited N(0, 1) samples are N(c M, (1 - c)^2); eq. 56 fits that Gaussian."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 20000, 1, generator=g)
    sigma, cost = 0.3, lambda x: LAM * (x[..., 0] - M) ** 2 / 2
    edited = mppi_edit(x0, cost, LAM, sigma, points=256, generator=g)
    assert cost(edited).mean() < 0.9 * cost(x0).mean()
    c = sigma**2 / (sigma**2 + 1)
    assert float(edited.mean()) == pytest.approx(c * M, abs=0.05)
    assert float(edited.std()) == pytest.approx(1 - c, rel=0.05)
    mean, var = fit_gaussian_denoiser(lambda d: diffusion.dsm_loss(d, edited[0], CFG, torch.Generator().manual_seed(1)))
    assert mean == pytest.approx(c * M, abs=0.05) and var == pytest.approx((1 - c) ** 2, rel=0.1)


def test_a_residual_policy_starts_as_its_base_and_trains_only_its_residual(trained_joint):  # noqa: F811
    base = load_policy(trained_joint)
    policy = ResidualPolicy.from_base(base)
    x = torch.randn(3, base.config.horizon, base.config.act_dim, generator=torch.Generator().manual_seed(0))
    obs, t = torch.zeros(3, base.config.obs_dim), torch.full((3,), 0.5)
    with torch.no_grad():
        torch.testing.assert_close(policy.denoise(x, t, obs), base.denoise(x, t, obs))
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("residual.") for n in trainable)


@pytest.fixture(scope="module", params=["dpmd", "sdac", "expo"])
def finetuned(request, trained_joint, tmp_path_factory):  # noqa: F811
    """``codi finetune --method M`` of the tiny joint policy on the tiny two-arm data: (M, the model directory)."""
    root = tmp_path_factory.mktemp(f"finetune_{request.param}")
    save_dataset(labelled_two_arm_data(), root / "multi", summary={})
    tiny = ["--iterations", "2", "--states", "8", "--samples", "2", "--steps", "3", "--batch-size", "4",
            "--sample-steps", "2", "--val-states", "4", "--points", "2"]
    assert cli.main(["finetune", "--method", request.param, "--base", str(trained_joint), "--data",
                     str(root / "multi"), "--out", str(root / "model"), *tiny]) == 0
    return request.param, root / "model"


def test_codi_finetune_gives_a_residual_policy_that_codi_eval_runs_unguided(finetuned, tmp_path):
    method, model = finetuned
    assert isinstance(load_policy(model), ResidualPolicy)
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["kind"] == "codi.residual_policy" and manifest["complete"]
    assert [h["iteration"] for h in manifest["train_config"]["cost_history"]] == [0, 1, 2]
    out = tmp_path / "r.json"
    assert evaluate.run(eval_args(f"{method}-joint", out, "--model", str(model))) == 0
    r = json.loads(out.read_text())
    assert r["method"] == f"{method}-joint" and r["planner"]["method"] == "unguided" and len(r["episodes"]) == 1


def test_the_fine_tuned_methods_refuse_a_plain_policy_and_fine_tuning_refuses_a_single_arm_one(
        trained_joint, tmp_path, capsys):  # noqa: F811
    assert evaluate.run(eval_args("dpmd-joint", tmp_path / "r.json", "--model", str(trained_joint))) == 2
    assert "needs a fine-tuned joint policy (codi finetune)" in capsys.readouterr().err
    single = tmp_path / "single"
    DiffusionPolicy(PolicyConfig(horizon=H, unet=TINY_UNET)).save(single)
    save_dataset(labelled_two_arm_data(), tmp_path / "multi", summary={})
    assert cli.main(["finetune", "--method", "sdac", "--base", str(single), "--data", str(tmp_path / "multi"),
                     "--out", str(tmp_path / "m")]) == 2
    assert "fine-tuning needs the plain joint policy of the 2 arms" in capsys.readouterr().err
