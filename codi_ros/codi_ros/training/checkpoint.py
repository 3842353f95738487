"""Resumable training state in one safetensors file (no pickles): weights, EMA, AdamW state, RNGs.

Tensors are stored under prefixes ``model/``, ``ema/``, ``optim/<param index>/<name>`` and
``rng/<name>``; the step, elapsed time, training config and optimizer hyper-parameters travel
as JSON in the safetensors metadata.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

STATE_FILE = "train_state.safetensors"
STATE_FORMAT_VERSION = 1


class TrainStateError(ValueError):
    """A training state file is missing, corrupt or does not fit the model being trained."""


@dataclass
class TrainState:
    step: int
    elapsed_s: float
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    param_groups: list[dict[str, Any]]

    def restore(self, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer,
                generators: dict[str, torch.Generator]) -> None:
        """Load everything back in place (raises TrainStateError if it does not fit)."""
        try:
            model.load_state_dict(_prefixed(self.tensors, "model/"))
            ema.load_state_dict(_prefixed(self.tensors, "ema/"))
            state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in _prefixed(self.tensors, "optim/").items():
                index, name = key.split("/", 1)
                state.setdefault(int(index), {})[name] = value
            optimizer.load_state_dict({"state": state, "param_groups": self.param_groups})
            for name, g in generators.items():
                g.set_state(self.tensors[f"rng/{name}"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise TrainStateError(f"training state does not fit this model/optimizer: {e}") from None


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def save_train_state(path: str | Path, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer,
                     generators: dict[str, torch.Generator], step: int, elapsed_s: float,
                     config: dict[str, Any]) -> None:
    """Write atomically (a crash mid-write leaves the previous state intact)."""
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"ema/{k}": v for k, v in ema.state_dict().items()}
    opt = optimizer.state_dict()
    for index, entries in opt["state"].items():
        tensors |= {f"optim/{index}/{name}": torch.as_tensor(v) for name, v in entries.items()}
    tensors |= {f"rng/{name}": g.get_state() for name, g in generators.items()}
    metadata = {"format_version": str(STATE_FORMAT_VERSION), "step": str(step), "elapsed_s": repr(elapsed_s),
                "config": json.dumps(config), "param_groups": json.dumps(opt["param_groups"])}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def load_train_state(path: str | Path) -> TrainState:
    path = Path(path)
    if not path.is_file():
        raise TrainStateError(f"{path}: no training state to resume from")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("format_version") != str(STATE_FORMAT_VERSION):
            raise TrainStateError(f"{path}: format_version {meta.get('format_version')!r}, "
                                  f"this code reads {STATE_FORMAT_VERSION}")
        return TrainState(step=int(meta["step"]), elapsed_s=float(meta["elapsed_s"]),
                          config=json.loads(meta["config"]), tensors=tensors,
                          param_groups=json.loads(meta["param_groups"]))
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        if isinstance(e, TrainStateError):
            raise
        raise TrainStateError(f"{path}: unreadable training state ({type(e).__name__}: {e})") from None
