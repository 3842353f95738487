"""The multi-agent cost J(s, a) of the handover task (paper eq. 20, Appendix C eq. 40-44, Table I).

A cost is any batched callable ``J(state, joint_chunks) -> CostValue`` (a black box to the
guidance estimator): ``joint_chunks`` are K candidate joint chunks (K, N, H, 7) of raw actions,
each arm in its own base frame. :class:`HandoverCost` predicts the trajectories with a
:class:`~codi_ros.core.kinematic_model.CostSimulator` and scores them.

Sign convention. Eq. 42-44 as printed use min{., 0}, which would make every penalty <= 0, i.e. a
reward for violations; the text says each term *penalises* a violation. We implement the text:
goal and engagement are hinges max{d - Delta, 0} (zero inside the threshold, growing with the
distance), and collision is the hinge max{Delta - d, 0} on the closest end-effector approach.
The hinge (rather than Section VI's binary indicator) is what eq. 43 computes up to the sign and
what "penalises the largest safety-distance violation" describes; it also grades candidates that
all violate the radius, so the self-normalised weights (eq. 18) still prefer the less bad ones.

Goal distance. Eq. 42 as printed scores the cube's *closest approach* to the goal along the horizon.
With base policies that carry the cube to a place of their own choosing, a chunk that carries the
cube through the goal and on costs as little as one that stops there, and closed-loop arms did
carry it past (README). ``goal.measure: final`` measures the cube's distance at the *end* of the
predicted horizon instead; ``closest`` (eq. 42 as printed) is the default (no worse in closed loop).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch
import yaml
from torch import Tensor

from codi_ros.config import ConfigError, from_dict
from codi_ros.core.kinematic_model import CostSimulator, KinematicModelConfig, SimState, Trajectories
from codi_ros.paths import config_dir


@dataclass(frozen=True)
class CostValue:
    """Cost of K candidates: the total J (K,), its weighted terms (each (K,), summing to the total)
    and, for independent guidance, one cost per arm (K, N) whose column i guides arm i only."""

    total: Tensor
    terms: dict[str, Tensor]
    per_agent: Tensor | None = None


class Cost(Protocol):
    def __call__(self, state: Any, joint_chunks: Tensor) -> CostValue: ...


@dataclass(frozen=True)
class CostTerm:
    threshold: float  # Delta, m
    weight: float     # w

    def __post_init__(self) -> None:
        if self.threshold < 0 or self.weight < 0:
            raise ConfigError(f"cost term needs threshold >= 0 and weight >= 0, got {self}")


GOAL_MEASURES = ("final", "closest")


@dataclass(frozen=True)
class GoalTerm(CostTerm):
    """The goal term and which distance of the predicted cube trajectory it penalises (module docstring)."""

    measure: str = "closest"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.measure not in GOAL_MEASURES:
            raise ConfigError(f"goal.measure must be one of {GOAL_MEASURES}, got {self.measure!r}")


ENGAGE_CLOSER = ("end_effector", "base")


@dataclass(frozen=True)
class EngageTerm(CostTerm):
    """The engagement term and how it picks "the closer robot" of eq. 44.

    ``end_effector`` (as printed): the arm whose end effector is nearest the cube now. The arm that last
    put the cube down stays nearest, so it keeps being pulled back to the cube and the other arm is
    never engaged. ``base``: the arm whose base is nearest the cube -- the robot in whose half of the
    table the cube lies -- and no arm while one holds the cube after the first predicted step (a
    held cube is engaged already; pulling the other arm to it would fight the collision term)."""

    closer: str = "base"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.closer not in ENGAGE_CLOSER:
            raise ConfigError(f"engage.closer must be one of {ENGAGE_CLOSER}, got {self.closer!r}")


@dataclass(frozen=True)
class CostConfig:
    """Paper Table I defaults; loaded from ``config/cost.yaml``."""

    goal: GoalTerm = GoalTerm(threshold=0.01, weight=1.0, measure="closest")
    engage: EngageTerm = EngageTerm(threshold=0.20, weight=10.0, closer="base")
    collision: CostTerm = CostTerm(threshold=0.30, weight=10.0)
    kinematic_model: KinematicModelConfig = field(default_factory=KinematicModelConfig)

    def goal_only(self) -> CostConfig:
        """The goal term of eq. 20 alone (engagement and collision weighted 0): the cost of CoDi-Simple
        (Sec. VII-E, the base-policy support study)."""
        return replace(self, engage=replace(self.engage, weight=0.0), collision=replace(self.collision, weight=0.0))

    def widened(self, margin: float) -> CostConfig:
        """The collision radius ``margin`` m wider (a real-time plan's, core/realtime.py)."""
        return replace(self, collision=replace(self.collision, threshold=self.collision.threshold + margin))


def load_cost_config(path: str | Path | None = None) -> CostConfig:
    """``cost.yaml`` (default: the installed one), strictly: every key given, none unknown. Its values are
    the dataclasses' defaults (test_config.py)."""
    p = Path(path) if path is not None else config_dir() / "cost.yaml"
    try:
        return from_dict(CostConfig, yaml.safe_load(p.read_text()), "cost")
    except (OSError, yaml.YAMLError, ValueError) as e:
        raise ConfigError(f"{p}: bad cost config ({type(e).__name__}: {e})") from None


def hinge(x: Tensor) -> Tensor:
    return x.clamp_min(0.0)


def closest_approach(p: Tensor, q: Tensor) -> Tensor:
    """Eq. 40/41: min over the horizon of ||p_k - q_k|| for (..., K, 3) positions (q may be a point)."""
    return (p - q).norm(dim=-1).amin(dim=-1)


def goal_cost(traj: Trajectories, goal: Tensor, term: GoalTerm) -> Tensor:
    """Eq. 42 (sign fixed): the cube's distance to the goal beyond Delta_goal, at the end of the horizon
    (``final``) or at its closest approach along it (``closest``, as printed)."""
    d = (traj.cube_pos[..., -1, :] - goal).norm(dim=-1) if term.measure == "final" else \
        closest_approach(traj.cube_pos, goal)
    return term.weight * hinge(d - term.threshold)


def collision_cost(traj: Trajectories, term: CostTerm) -> Tensor:
    """Eq. 43 (sign fixed): the largest violation of the safety radius by any pair of end effectors."""
    N = traj.ee_pos.shape[1]
    if N < 2:
        return traj.ee_pos.new_zeros(traj.ee_pos.shape[0])
    i, j = torch.triu_indices(N, N, offset=1)
    d = closest_approach(traj.ee_pos[:, i], traj.ee_pos[:, j])                          # (K, pairs)
    return term.weight * hinge(term.threshold - d).amax(dim=1)


def engage_cost(ee_pos: Tensor, cube_pos: Tensor, term: CostTerm) -> Tensor:
    """Eq. 44 (sign fixed): an arm's (..., H, 3) closest approach to the cube, beyond Delta_engage."""
    return term.weight * hinge(closest_approach(ee_pos, cube_pos) - term.threshold)


class HandoverCost:
    """J = w_goal J_goal + w_collision J_collision + w_engage J_engage (eq. 20).

    ``independent=False`` (CoDi): engagement applies to "the closer robot" (eq. 44), chosen as
    ``config.engage.closer`` says (see EngageTerm).
    ``independent=True`` (the CoDi-Indep ablation, Sec. VII-C): no collision term; each arm i gets its
    own goal + engagement cost, predicted with only arm i acting (the others hold still), so that
    nothing in arm i's cost depends on another arm's actions. ``per_agent`` then holds these costs.
    """

    def __init__(self, config: CostConfig, simulator: CostSimulator, arm_names: tuple[str, ...],
                 independent: bool = False):
        self.config, self.simulator, self.arm_names, self.independent = config, simulator, arm_names, independent

    def __call__(self, state: SimState, joint_chunks: Tensor) -> CostValue:
        if joint_chunks.ndim != 4 or joint_chunks.shape[1] != len(self.arm_names):
            raise ValueError(f"joint_chunks must be (K, {len(self.arm_names)}, H, 7), got {tuple(joint_chunks.shape)}")
        return self._independent(state, joint_chunks) if self.independent else self._joint(state, joint_chunks)

    def _joint(self, state: SimState, chunks: Tensor) -> CostValue:
        cfg = self.config
        traj = self.simulator.rollout(state, chunks)
        engaged = self.engaged_arm(state, traj)
        engage = engage_cost(traj.ee_pos[torch.arange(len(engaged)), engaged.clamp_min(0)], traj.cube_pos, cfg.engage)
        terms = {"goal": goal_cost(traj, state.goal, cfg.goal),
                 "collision": collision_cost(traj, cfg.collision),
                 "engage": torch.where(engaged >= 0, engage, 0.0)}
        return CostValue(total=sum(terms.values()), terms=terms)

    def engaged_arm(self, state: SimState, traj: Trajectories) -> Tensor:
        """(K,) index of the arm that eq. 44 pulls to the cube in each candidate, -1 for none (see EngageTerm)."""
        K = traj.cube_pos.shape[0]
        if self.config.engage.closer == "end_effector":
            return (state.ee_pos - state.cube_pos).norm(dim=-1).argmin().expand(K)
        nearest = (state.base_xy - state.cube_pos[:2]).norm(dim=-1).argmin()
        return torch.where(traj.holder[:, 0] >= 0, -1, nearest)

    def _independent(self, state: SimState, chunks: Tensor) -> CostValue:
        K, N = chunks.shape[:2]
        # Copy i keeps arm i's chunk; every other arm holds still: zero twist, gripper commanded to its measured
        # width (a holder keeps its grip, see KinematicModel).
        hold = torch.zeros_like(chunks)
        hold[..., 6] = state.gripper_width.to(chunks.dtype)[None, :, None]
        solo = torch.eye(N, dtype=torch.bool)[:, None, :, None, None]                     # (N, 1, N, 1, 1)
        traj = self.simulator.rollout(state, torch.where(solo, chunks, hold).reshape(N * K, *chunks.shape[1:]))
        goal = goal_cost(traj, state.goal, self.config.goal).reshape(N, K)
        arm = torch.arange(N)
        own_ee = traj.ee_pos.reshape(N, K, *traj.ee_pos.shape[1:])[arm, :, arm]           # (N, K, H, 3)
        engage = engage_cost(own_ee, traj.cube_pos.reshape(N, K, -1, 3), self.config.engage)
        terms = {f"goal/{n}": goal[i] for i, n in enumerate(self.arm_names)}
        terms |= {f"engage/{n}": engage[i] for i, n in enumerate(self.arm_names)}
        per_agent = (goal + engage).T                                                      # (K, N)
        return CostValue(total=per_agent.sum(dim=1), terms=terms, per_agent=per_agent)
