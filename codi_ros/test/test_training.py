"""``codi train`` end to end on a tiny synthetic data set: outputs, manifest, resuming, refusals."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_policy import synthetic_dataset

from codi_ros import cli
from codi_ros.core.policy import load_policy
from codi_ros.data.dataset import save_dataset
from codi_ros.frames import OBS_DIM
from codi_ros.training import checkpoint

TINY = ["--steps", "6", "--eval-every", "3", "--batch-size", "16", "--threads", "1", "--down-dims", "8", "16",
        "--val-samples", "64", "--warmup-steps", "2"]


@pytest.fixture(autouse=True, scope="module")
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data") / "synthetic"
    save_dataset(synthetic_dataset(episodes=10, steps=30, seed=5), d, summary={})
    return d


def train(data_dir, out, *extra: str) -> int:
    return cli.main(["train", "--data", str(data_dir), "--out", str(out), *TINY, *extra])


def log_rows(out) -> list[dict[str, str]]:
    with (out / "train_log.csv").open() as f:
        return list(csv.DictReader(f))


def test_train_writes_policy_log_curve_and_manifest(data_dir, tmp_path):
    out = tmp_path / "model"
    assert train(data_dir, out) == 0
    for name in ("model.safetensors", "config.json", "train_state.safetensors", "train_log.csv",
                 "loss_curve.png", "manifest.json"):
        assert (out / name).is_file(), name
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = log_rows(out)
    assert [int(r["step"]) for r in rows] == [3, 6]
    assert all(math.isfinite(float(r[k])) for r in rows for k in ("train_loss", "val_loss", "lr"))

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["steps"] == 6 and manifest["complete"]
    assert manifest["data"]["path"] == str(data_dir.resolve())
    assert manifest["data"]["meta"]["seed"] == 5 and manifest["data"]["meta"]["episodes"] == 10
    split = manifest["data"]["split"]
    assert split["episodes"] == 10 and split["val_episodes"] == 1 and split["train_segments"] == 9 * 30
    assert manifest["train_config"]["down_dims"] == [8, 16] and manifest["train_config"]["seed"] == 0
    assert manifest["final"]["val_loss"] == pytest.approx(float(rows[-1]["val_loss"]), rel=1e-5)
    assert manifest["wall_time_s"] > 0 and manifest["machine"]["cores"] >= 1 and manifest["code_version"]

    policy = load_policy(out)
    assert policy.config.unet.down_dims == (8, 16)
    assert policy.sample(np.zeros(OBS_DIM, dtype=np.float32), n=2, steps=3).shape == (2, 16, 7)


def test_resume_after_an_interruption_reproduces_the_uninterrupted_run(data_dir, tmp_path, monkeypatch):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train(data_dir, straight) == 0

    save = checkpoint.save_train_state

    def save_then_interrupt(*args, **kwargs):  # Ctrl-C right after the step-3 checkpoint
        save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_train_state", save_then_interrupt)
    assert train(data_dir, resumed) == 130
    monkeypatch.setattr(checkpoint, "save_train_state", save)
    assert json.loads((resumed / "manifest.json").read_text())["steps"] == 3

    assert train(data_dir, resumed, "--resume") == 0
    assert [int(r["step"]) for r in log_rows(resumed)] == [3, 6]
    assert json.loads((resumed / "manifest.json").read_text())["steps"] == 6
    a, b = load_file(straight / "train_state.safetensors"), load_file(resumed / "train_state.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_extends_a_finished_run(data_dir, tmp_path):
    out = tmp_path / "model"
    assert train(data_dir, out) == 0
    assert train(data_dir, out, "--resume", "--steps", "9") == 0
    assert [int(r["step"]) for r in log_rows(out)] == [3, 6, 9]
    assert json.loads((out / "manifest.json").read_text())["steps"] == 9


def test_refusals_name_the_cause(data_dir, tmp_path, capsys):
    out = tmp_path / "model"
    assert train(data_dir, out, "--resume") == 2
    assert "no training state" in capsys.readouterr().err
    assert train(data_dir, out) == 0
    assert train(data_dir, out) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert train(data_dir, out, "--resume", "--lr", "0.5") == 2
    assert "--lr" in capsys.readouterr().err
    assert train(data_dir, out, "--resume") == 2                       # --steps 6 is already done
    assert "already has 6 steps" in capsys.readouterr().err
    assert train(data_dir, tmp_path / "other", "--fraction", "0") == 2
    assert "--fraction" in capsys.readouterr().err

    one_episode = tmp_path / "one_episode"
    save_dataset(synthetic_dataset(episodes=1, steps=30), one_episode, summary={})
    assert train(one_episode, tmp_path / "m1") == 2
    assert "at least 2 episodes" in capsys.readouterr().err
