"""The single-arm diffusion policy (core/policy.py): API shapes and units, normalisation, checkpoints."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from codi_ros.core.networks import UNetConfig
from codi_ros.core.policy import DiffusionPolicy, PolicyConfig, PolicyLoadError, load_policy
from codi_ros.data.dataset import Dataset
from codi_ros.frames import ACT_DIM, OBS_DIM, OBS_FIELDS, field_slice

H = 16
TINY = PolicyConfig(horizon=H, unet=UNetConfig(down_dims=(8, 16), cond_dim=16))
CONSTANT_DIM = 5   # angular z velocity: always 0 in the synthetic data (a zero range to guard)
GRIPPER_DIM = 6


def synthetic_dataset(episodes: int = 8, steps: int = 30, seed: int = 0) -> Dataset:
    """Random observations with actions that follow from them: move towards the cube (saturated
    at 0.3 m/s), a small angular velocity, zero yaw rate, gripper open when far and closed when near."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(0.0, 0.15, (episodes * steps, 1, OBS_DIM)).astype(np.float32)
    rel = obs[:, :, field_slice(OBS_FIELDS, "cube_rel")]
    actions = np.zeros((episodes * steps, 1, ACT_DIM), dtype=np.float32)
    actions[..., 0:3] = np.clip(2.0 * rel, -0.3, 0.3)
    actions[..., 3:5] = 0.5 * np.sin(4 * obs[..., 9:11])
    actions[..., 6] = np.where(np.linalg.norm(rel, axis=-1) > 0.25, 0.08, 0.0)
    ends = np.arange(1, episodes + 1) * steps
    return Dataset(obs, actions, ends, [{"kind": "synthetic", "seed": seed}] * episodes, {"seed": seed})


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: torch on one thread in this module


@pytest.fixture(scope="module")
def data():
    ds = synthetic_dataset()
    obs, chunks = ds.segments(H)
    return ds, torch.as_tensor(obs[:, 0]), torch.as_tensor(chunks[:, 0])


def fit_model(build, data: tuple[torch.Tensor, ...], steps: int = 300):
    """``build()`` (a model with ``loss(*batch, generator)``) trained on ``data`` for ``steps`` AdamW steps of 64
    rows, seeded (the initial weights included)."""
    torch.manual_seed(0)
    model = build()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(len(data[0]), (64,), generator=g)
        loss = model.loss(*(x[idx] for x in data), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def fit(config: PolicyConfig, stats: dict, obs: torch.Tensor, chunks: torch.Tensor,
        steps: int = 300) -> DiffusionPolicy:
    """A policy of ``config`` trained on (obs, chunks) (fit_model)."""
    return fit_model(lambda: DiffusionPolicy.from_stats(config, stats), (obs, chunks), steps)


@pytest.fixture(scope="module")
def trained(data):
    ds, obs, chunks = data
    return fit(TINY, ds.stats(), obs, chunks)


def noisy(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, H, ACT_DIM, generator=torch.Generator().manual_seed(seed))


def test_score_denoise_shapes_and_tweedie(trained, data):
    obs = data[1][:4]
    a_t, t = noisy(4), torch.tensor([0.1, 0.5, 1.0, 5.0])
    with torch.no_grad():
        score, denoised = trained.score(a_t, t, obs), trained.denoise(a_t, t, obs)
        assert score.shape == denoised.shape == (4, H, ACT_DIM)
        assert torch.allclose(denoised, a_t + t[:, None, None] ** 2 * score, atol=1e-5)
        # a scalar t and a single observation broadcast over the batch
        expanded = trained.score(a_t, torch.full((4,), 0.5), obs[:1].expand(4, -1))
        assert torch.allclose(trained.score(a_t, 0.5, obs[0]), expanded)


def test_rows_do_not_interact(trained, data):
    """CoDi stacks both arms' chunks and many candidates in one batch (eq. 13): each row's score
    must depend on that row only (GroupNorm normalises per row)."""
    obs, a_t = data[1][:3], noisy(3)
    changed = a_t.clone()
    changed[0] += 1.0
    with torch.no_grad():
        assert torch.equal(trained.score(a_t, 0.3, obs)[1:], trained.score(changed, 0.3, obs)[1:])


def test_sample_shapes(trained, data):
    obs = data[1]
    g = torch.Generator().manual_seed(0)
    assert trained.sample(obs[0], n=5, steps=3, generator=g).shape == (5, H, ACT_DIM)
    assert trained.sample(obs[:3], n=2, steps=3, generator=g, method="heun").shape == (3, 2, H, ACT_DIM)
    assert trained.sample(obs[:4].numpy(), n=1, steps=3, generator=g).shape == (4, 1, H, ACT_DIM)   # numpy in


def test_samples_are_raw_actions_within_the_data_range(trained, data):
    ds = data[0]
    lo, hi = (np.array(ds.stats()["actions"][k]) for k in ("min", "max"))
    chunks = trained.sample(data[1][::20], n=16, generator=torch.Generator().manual_seed(0)).numpy()
    varying = hi - lo > 0
    margin = 0.25 * (hi - lo)
    inside = (chunks >= lo - margin) & (chunks <= hi + margin)
    assert inside[..., varying].mean() > 0.95, inside.mean(axis=(0, 1, 2))
    assert 0.01 < chunks[..., GRIPPER_DIM].mean() < 0.07      # metres (data: 0 or 0.08), not [-1, 1]


def test_sampling_is_seeded(trained, data):
    obs = data[1][:2]
    a = trained.sample(obs, n=3, steps=5, generator=torch.Generator().manual_seed(7))
    b = trained.sample(obs, n=3, steps=5, generator=torch.Generator().manual_seed(7))
    c = trained.sample(obs, n=3, steps=5, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_normalisation_maps_the_action_range_to_unit_box(data):
    ds = data[0]
    policy = DiffusionPolicy.from_stats(TINY, ds.stats())
    act = ds.stats()["actions"]
    lo, hi = torch.tensor(act["min"]), torch.tensor(act["max"])
    varying = hi > lo
    assert not varying[CONSTANT_DIM] and varying.sum() == ACT_DIM - 1
    assert torch.allclose(policy.normalize_actions(lo)[varying], -torch.ones(ACT_DIM - 1))
    assert torch.allclose(policy.normalize_actions(hi)[varying], torch.ones(ACT_DIM - 1))
    x = data[2][:5]
    normalised = policy.normalize_actions(x)
    assert torch.isfinite(normalised).all() and bool((normalised[..., CONSTANT_DIM] == 0).all())
    assert torch.allclose(policy.unnormalize_actions(normalised), x, atol=1e-6)
    obs = data[1]
    assert torch.allclose(policy.normalize_obs(obs).mean(0), torch.zeros(OBS_DIM), atol=1e-4)


def test_bad_statistics_are_refused(data):
    stats = data[0].stats()
    bad = json.loads(json.dumps(stats))
    bad["actions"]["min"][0], bad["actions"]["max"][0] = 1.0, -1.0
    with pytest.raises(ValueError, match="act_scale"):
        DiffusionPolicy.from_stats(TINY, bad)
    short = json.loads(json.dumps(stats))
    short["obs"]["mean"] = short["obs"]["mean"][:-1]
    with pytest.raises(ValueError, match="obs_center"):
        DiffusionPolicy.from_stats(TINY, short)


def test_bad_inputs_get_clear_errors(trained, data):
    obs, a_t = data[1][:2], noisy(2)
    with pytest.raises(ValueError, match="obs"):
        trained.score(a_t, 0.5, torch.zeros(2, OBS_DIM - 1))
    with pytest.raises(ValueError, match="obs"):
        trained.sample(torch.zeros(OBS_DIM + 1))
    with pytest.raises(ValueError, match="NaN"):
        trained.sample(torch.full((OBS_DIM,), float("nan")))
    with pytest.raises(ValueError, match="steps"):
        trained.sample(obs[0], steps=0)
    with pytest.raises(ValueError, match="a_t"):
        trained.score(noisy(2)[:, :8], 0.5, obs)
    with pytest.raises(ValueError, match="t "):
        trained.score(a_t, 0.0, obs)
    with pytest.raises(ValueError, match="horizon"):
        PolicyConfig(horizon=15, unet=UNetConfig(down_dims=(8, 16)))
    with pytest.raises(ValueError, match="sample_method"):
        PolicyConfig(horizon=H, sample_method="ddim")


def test_save_load_round_trip_is_bit_identical(trained, data, tmp_path):
    trained.save(tmp_path)
    loaded = load_policy(tmp_path)
    assert loaded.config == trained.config
    obs, a_t = data[1][:4], noisy(4)
    with torch.no_grad():
        assert torch.equal(loaded.score(a_t, 0.7, obs), trained.score(a_t, 0.7, obs))
    assert torch.equal(loaded.sample(obs, n=2, steps=4, generator=torch.Generator().manual_seed(3)),
                       trained.sample(obs, n=2, steps=4, generator=torch.Generator().manual_seed(3)))


def test_truncated_or_tampered_weights_are_refused(trained, tmp_path):
    trained.save(tmp_path)
    weights = tmp_path / "model.safetensors"
    blob = weights.read_bytes()
    weights.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(PolicyLoadError, match="truncated or modified"):
        DiffusionPolicy.load(tmp_path)
    flipped = bytearray(blob)
    flipped[-100] ^= 0x40
    weights.write_bytes(bytes(flipped))
    with pytest.raises(PolicyLoadError, match="truncated or modified"):
        DiffusionPolicy.load(tmp_path)
    # garbage whose checksum was updated too: caught by the safetensors reader, never unpickled
    weights.write_bytes(b"\x80\x04not a safetensors file")
    config = json.loads((tmp_path / "config.json").read_text())
    config["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(PolicyLoadError, match="not a readable safetensors"):
        DiffusionPolicy.load(tmp_path)


def _edit_config(path, edit) -> None:
    config = json.loads((path / "config.json").read_text())
    edit(config)
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["policy"].update(extra=1), "unknown keys"),
    (lambda c: c["policy"]["unet"].pop("kernel_size"), "missing keys"),
    (lambda c: c.update(format_version=99), "format_version"),
    (lambda c: c["policy"]["unet"].update(down_dims=[16, 32]), "policy.unet differ"),
    (lambda c: c["policy"]["unet"].update(down_dims="wide"), "down_dims"),
    (lambda c: c["obs_fields"].reverse(), "layout"),
    (lambda c: c["policy"].update(horizon=10), "policy.horizon differ"),
    (lambda c: c["policy"]["edm"].update(sigma_data=1.0), "policy.edm differ"),
])
def test_config_mismatch_is_refused(trained, tmp_path, edit, message):
    trained.save(tmp_path)
    _edit_config(tmp_path, edit)
    with pytest.raises(PolicyLoadError, match=message):
        DiffusionPolicy.load(tmp_path)


def test_weights_that_do_not_fit_the_architecture_are_refused(trained, tmp_path):
    """As if networks.py had changed since the checkpoint was written: the config agrees, the tensors do not."""
    from safetensors.torch import save as save_safetensors

    trained.save(tmp_path)
    other = DiffusionPolicy(PolicyConfig(horizon=H, unet=UNetConfig(down_dims=(16, 32), cond_dim=16)))
    blob = save_safetensors({k: v.contiguous() for k, v in other.state_dict().items()},
                            metadata={"format_version": "1", "policy": json.dumps(trained.config.to_dict())})
    (tmp_path / "model.safetensors").write_bytes(blob)
    _edit_config(tmp_path, lambda c: c.update(weights_sha256=hashlib.sha256(blob).hexdigest()))
    with pytest.raises(PolicyLoadError, match="architecture needs"):
        DiffusionPolicy.load(tmp_path)


def test_missing_or_unreadable_checkpoint(trained, tmp_path):
    with pytest.raises(PolicyLoadError, match="not found"):
        DiffusionPolicy.load(tmp_path / "nowhere")
    trained.save(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(PolicyLoadError, match="JSON"):
        DiffusionPolicy.load(tmp_path)
