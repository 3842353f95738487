"""A saved model: one directory with ``config.json`` + ``model.safetensors``, loaded without pickles.

``config.json`` holds the format version, the model's ``kind`` (e.g. ``codi.diffusion_policy``), the
observation/action layout it was trained on (frames.py), its configuration under the kind's section
name and the SHA-256 of the weights. The weights file carries a copy of that configuration in its
metadata, so a config.json edited after training is detected. Both files are written atomically,
weights first. Every refusal says what is wrong with which file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from codi_ros.frames import ACTION_FIELDS, OBS_FIELDS

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class ModelLoadError(ValueError):
    """A saved model is missing, corrupt, of another kind, or does not match this code."""


def layout() -> dict[str, list]:
    """The observation and action layout of this code (a model trained on another one is refused)."""
    return {"obs_fields": [list(f) for f in OBS_FIELDS], "action_fields": [list(f) for f in ACTION_FIELDS]}


def save_model(directory: str | Path, module: nn.Module, kind: str, section: str, config: dict[str, Any]) -> None:
    """Write ``module``'s state and its ``config`` (stored under ``section``) as a model of ``kind``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    blob = save_safetensors(tensors, metadata={"format_version": str(FORMAT_VERSION), section: json.dumps(config)})
    manifest = {"format_version": FORMAT_VERSION, "kind": kind, **layout(), section: config,
                "weights_sha256": hashlib.sha256(blob).hexdigest()}
    _atomic_write(d / WEIGHTS_FILE, blob)
    _atomic_write(d / CONFIG_FILE, (json.dumps(manifest, indent=1) + "\n").encode())


def model_kind(directory: str | Path) -> str | None:
    """The ``kind`` the model in ``directory`` says it is, or None when its config.json cannot tell (loading it
    then says why)."""
    try:
        config = json.loads((Path(directory) / CONFIG_FILE).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return config.get("kind") if isinstance(config, dict) else None


def load_model(directory: str | Path, kind: str, section: str, build: Callable[[dict[str, Any]], nn.Module],
               error: type[ModelLoadError] = ModelLoadError) -> nn.Module:
    """The saved model of ``kind`` in ``directory``: ``build(config)`` makes the empty module (its ValueError or
    TypeError is a bad config), then the checked weights are loaded into it. Raises ``error`` with the reason."""
    d = Path(directory)
    cfg_path, weights_path = d / CONFIG_FILE, d / WEIGHTS_FILE
    for p in (cfg_path, weights_path):
        if not p.is_file():
            raise error(f"{p}: not found (a model directory holds {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        config = json.loads(cfg_path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise error(f"{cfg_path}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
        found = config.get("format_version") if isinstance(config, dict) else None
        raise error(f"{cfg_path}: format_version {found!r}, this code reads {FORMAT_VERSION}")
    if config.get("kind") != kind:
        raise error(f"{cfg_path}: a {config.get('kind')!r} model, expected a {kind!r} one")
    expected_keys = {"format_version", "kind", "obs_fields", "action_fields", section, "weights_sha256"}
    if set(config) != expected_keys:
        raise error(f"{cfg_path}: unknown keys {sorted(set(config) - expected_keys)}, "
                    f"missing keys {sorted(expected_keys - set(config))}")
    for key, value in layout().items():
        if config[key] != value:
            raise error(f"{cfg_path}: {key} {config[key]} do not match this code's layout {value} "
                        "(frames.py changed since the model was trained)")
    try:
        module = build(config[section])
    except (ValueError, TypeError) as e:
        raise error(f"{cfg_path}: {e}") from None
    blob = weights_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != config["weights_sha256"]:
        raise error(f"{weights_path}: SHA-256 does not match {CONFIG_FILE} (file truncated or modified)")
    try:
        tensors = load_safetensors(blob)
    except (SafetensorError, ValueError) as e:
        raise error(f"{weights_path}: not a readable safetensors file ({e})") from None
    header = json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])   # safetensors: u64 size + JSON
    trained_with = json.loads(header.get("__metadata__", {}).get(section, "{}"))
    if trained_with != config[section]:
        changed = sorted(k for k in config[section] if trained_with.get(k) != config[section][k])
        raise error(f"{cfg_path}: {section}.{f', {section}.'.join(changed)} differ from the config stored with "
                    f"the weights in {WEIGHTS_FILE} (config.json was edited)")
    _check_state(module.state_dict(), tensors, weights_path, error)
    module.load_state_dict(tensors)
    return module


def _check_state(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], where: Path,
                 error: type[ModelLoadError]) -> None:
    missing, unknown = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or unknown:
        raise error(f"{where}: weights do not match the config's architecture "
                    f"(missing {missing[:5]}, unknown {unknown[:5]})")
    for k, v in expected.items():
        if found[k].shape != v.shape or found[k].dtype != v.dtype:
            raise error(f"{where}: {k} is {tuple(found[k].shape)} {found[k].dtype}, "
                        f"the config's architecture needs {tuple(v.shape)} {v.dtype}")
        if not torch.isfinite(found[k]).all():
            raise error(f"{where}: {k} holds NaN or inf")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
