"""What a training run leaves beside its checkpoint: train_log.csv, loss_curve.png, manifest.json."""

from __future__ import annotations

import csv
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codi_ros.version import machine_description

LOG_FILE = "train_log.csv"
CURVE_FILE = "loss_curve.png"
MANIFEST_FILE = "manifest.json"
LOG_COLUMNS = ("step", "lr", "train_loss", "val_loss", "elapsed_s")


class TrainLog:
    """Append-only CSV of evaluation points; on resume, rows past the resumed step are dropped."""

    def __init__(self, path: str | Path, resume_step: int | None = None):
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []
        if resume_step is not None and self.path.is_file():
            with self.path.open() as f:
                self.rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)
                             if float(r["step"]) <= resume_step]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, LOG_COLUMNS)
            writer.writeheader()
            writer.writerows(self._formatted(r) for r in self.rows)

    @staticmethod
    def _formatted(row: dict[str, float]) -> dict[str, str]:
        return {k: str(int(row[k])) if k == "step" else f"{row[k]:.6g}" for k in LOG_COLUMNS}

    def append(self, **row: float) -> None:
        self.rows.append(row)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, LOG_COLUMNS).writerow(self._formatted(row))

    def plot(self, path: str | Path, title: str = "single-arm policy", loss: str = "DSM loss (eq. 4, EDM weighting)",
             val_label: str = "validation (EMA weights, held-out episodes)") -> None:
        """Train and validation loss (or ``val_label``'s quantity) against step, log scale."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["step"] for r in self.rows]
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        ax.plot(steps, [r["train_loss"] for r in self.rows], label="train (running mean)")
        ax.plot(steps, [r["val_loss"] for r in self.rows], label=val_label)
        ax.set(xlabel="step", ylabel=loss, yscale="log", title=title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


def write_manifest(path: str | Path, *, kind: str, data_path: str, data_meta: dict[str, Any], split: dict[str, int],
                   train_config: dict[str, Any], model_config: dict[str, Any], steps: int, target_steps: int,
                   wall_time_s: float, log: TrainLog, version: str) -> None:
    """``kind``: what was trained (codi.single_arm_policy, codi.joint_policy, codi.cost_model); ``version``: the
    code version the run started with (the checkout may change while it trains)."""
    last = log.rows[-1] if log.rows else {}
    manifest = {
        "kind": kind,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": version,
        "machine": machine_description(),
        "data": {"path": data_path, "meta": data_meta, "split": split},
        "train_config": train_config,
        "cost_model_config" if kind == "codi.cost_model" else "policy_config": model_config,
        "steps": steps,
        "complete": steps >= target_steps,
        "wall_time_s": round(wall_time_s, 1),
        "final": {k: last[k] if k in last and math.isfinite(last[k]) else None for k in ("train_loss", "val_loss")},
    }
    Path(path).write_text(json.dumps(manifest, indent=1) + "\n")
