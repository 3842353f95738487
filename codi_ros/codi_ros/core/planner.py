"""The CoDi planner: world state -> one guided joint action chunk per arm (paper Sec. IV-V).

``Planner.plan(state)`` validates the state, builds every arm's observation in its own base frame
(f_single), samples a joint chunk from pi ∝ exp(-J/lambda) prod_i p^(i) with the guided reverse
SDE, clips it to the control limits and returns it per arm, with the cost the cost simulator
predicts for it. Configured by ``config/planner.yaml``; ``PlanOverrides`` change one request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import yaml
from torch import Tensor

from codi_ros import bounds
from codi_ros.config import ConfigError, WorldConfig, from_dict
from codi_ros.core import diffusion
from codi_ros.core.coherence import coherence_gap
from codi_ros.core.composition import ProductPolicy, ScorePolicy, base_policy
from codi_ros.core.cost import Cost, CostConfig, CostValue, HandoverCost, load_cost_config
from codi_ros.core.cost_model import CostModel, LearnedCost
from codi_ros.core.guidance import GuidanceConfig
from codi_ros.core.kinematic_model import CostSimulator, KinematicModel, SimState, clip_to_limits
from codi_ros.core.realtime import RealtimeConfig, predict_state
from codi_ros.core.sampler import CoDiSampler, SamplerConfig
from codi_ros.frames import ACT_DIM, ArmState, CubeState, WorldState, observe
from codi_ros.paths import config_dir

UNGUIDED = ("decentralized", "unguided")   # planner methods that sample without guidance and choose without the cost


class PlanningError(ValueError):
    """A plan request that cannot be served; the message starts with the offending field."""


@dataclass
class PlanOverrides:
    """Per-request changes to the configured planner (None: use the configured value)."""

    num_samples: int | None = None     # M
    temperature: float | None = None   # lambda
    steps: int | None = None           # denoising steps
    seed: int | None = None


@dataclass
class PlanResult:
    chunks: dict[str, np.ndarray]      # arm name -> (H, 7) raw actions in that arm's base frame
    cost: float                        # predicted J of the returned joint chunk
    cost_terms: dict[str, float]       # its weighted terms (they sum to ``cost``)
    latency_s: float
    committed: int = 0                 # leading actions frozen to the committed ones (core/realtime.py)


@dataclass(frozen=True)
class PlannerConfig:
    """``config/planner.yaml``. method: codi (joint guidance) | codi-indep (the Sec. VII-C ablation) |
    decentralized (no guidance and no cost: every arm samples from its own policy and keeps its own candidate
    that best continues its previous chunk; the decentralised execution of the MIMIC-D baseline) | unguided
    (no guidance and no cost: the joint candidate that best continues the previous plan; a fine-tuned policy
    of the DPMD, SDAC and EXPO baselines, whose fine-tuning took the cost in)."""

    method: Literal["codi", "codi-indep", "decentralized", "unguided"] = "codi"
    cost_simulator: Literal["kinematic", "physics"] = "kinematic"
    steps: int = 16
    sampler: diffusion.SamplerMethod = "dpmpp2m"
    seed: int = 0
    candidates: int = 8    # joint chunks sampled per plan; the one with the lowest J + coherence * gap is returned
    coherence: float = 1.0  # cost units per unit of mean squared gap to the rest of the previous plan (core/coherence)
    warm_start: float | None = None   # t_w: start from the rest of the previous plan noised to t_w (None: pure noise)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    realtime: RealtimeConfig = field(default_factory=RealtimeConfig)

    def __post_init__(self) -> None:
        try:   # the bounds a /codi/plan request or a codi option meets (codi_ros/bounds.py)
            bounds.check("candidates", self.candidates, "planner.candidates")
            bounds.check("steps", self.steps, "planner.steps")
            bounds.check("seed", self.seed, "planner.seed")
            bounds.check("num_samples", self.guidance.num_samples, "planner.guidance.num_samples")
            bounds.check_plan_work(self.candidates, self.guidance.num_samples, self.steps,
                                   "planner.candidates x guidance.num_samples x steps")
        except bounds.BoundsError as e:
            raise ConfigError(str(e)) from None
        if not (self.coherence >= 0 and math.isfinite(self.coherence)):
            raise ConfigError(f"planner.coherence must be finite and >= 0, got {self.coherence}")
        if self.method not in UNGUIDED + ("codi", "codi-indep"):
            raise ConfigError(f"planner.method must be codi, codi-indep, decentralized or unguided, "
                              f"got {self.method!r}")
        if self.cost_simulator not in ("kinematic", "physics"):
            raise ConfigError(f"planner.cost_simulator must be kinematic or physics, got {self.cost_simulator!r}")
        if self.warm_start is not None and not (self.warm_start > 0 and math.isfinite(self.warm_start)):
            raise ConfigError(f"planner.warm_start must be null or a finite noise level > 0, got {self.warm_start}")
        try:
            self.sampler_config()
        except ValueError as e:
            raise ConfigError(f"planner: {e}") from None

    def sampler_config(self, overrides: PlanOverrides | None = None) -> SamplerConfig:
        o = overrides or PlanOverrides()
        guidance = replace(self.guidance,
                           num_samples=self.guidance.num_samples if o.num_samples is None else o.num_samples,
                           temperature=self.guidance.temperature if o.temperature is None else o.temperature)
        return SamplerConfig(steps=self.steps if o.steps is None else o.steps,
                             guidance=None if self.method in UNGUIDED else guidance,
                             method=self.sampler, seed=self.seed if o.seed is None else o.seed)


def load_planner_config(path: str | Path | None = None) -> PlannerConfig:
    """``planner.yaml`` (default: the installed one), strictly: every key given, none unknown. Its values are
    the dataclasses' defaults (test_config.py), so ``PlannerConfig()`` is the shipped planner."""
    p = Path(path) if path is not None else config_dir() / "planner.yaml"
    try:
        return from_dict(PlannerConfig, yaml.safe_load(p.read_text()), "planner")
    except (OSError, yaml.YAMLError, ValueError) as e:
        raise ConfigError(f"{p}: bad planner config ({type(e).__name__}: {e})") from None


def check_overrides(o: PlanOverrides, config: PlannerConfig) -> None:
    """PlanningError naming the field when an override is out of bounds or the plan it asks for exceeds the
    compute budget (codi_ros/bounds.py)."""
    try:
        for name in ("num_samples", "temperature", "steps", "seed"):
            if getattr(o, name) is not None:
                bounds.check(name, getattr(o, name))
        sampler = config.sampler_config(o)
        samples = sampler.guidance.num_samples if sampler.guidance is not None else 1   # UNGUIDED: none
        bounds.check_plan_work(config.candidates, samples, sampler.steps,
                               "num_samples x steps (x the planner's candidates)")
    except bounds.BoundsError as e:
        raise PlanningError(str(e)) from None


class Planner:
    """Guided joint sampling over N copies of one single-arm policy (one per configured arm), or over a
    joint policy of all N arms (CoDi-Joint; see core/composition.py).

    The cost J is the configured :class:`HandoverCost` on ``simulator`` (called with the state's
    :class:`SimState`), or an injected ``cost`` such as the /codi/evaluate_cost client, called with the
    :class:`WorldState` itself; ``method`` and ``cost_simulator`` then do not apply.

    ``cost_model`` (the classifier-guidance baselines CG-Joint, CG-Product; core/cost_model.py): its gradient
    is the guidance (eq. 49) and its prediction the J that ranks the candidates; no cost is evaluated.
    """

    def __init__(self, policy: ScorePolicy, world: WorldConfig, config: PlannerConfig | None = None,
                 cost_config: CostConfig | None = None, simulator: CostSimulator | None = None,
                 cost: Cost | None = None, cost_model: CostModel | None = None):
        self.world, self.config = world, config or PlannerConfig()
        self.base = base_policy(policy, len(world.arms))
        self.cost_model = cost_model
        if self.config.method == "decentralized" and not isinstance(self.base, ProductPolicy):
            raise ConfigError("planner.method 'decentralized' runs one single-arm policy per arm, "
                              "not a joint policy")
        if cost_model is not None:
            if cost_model.config.agents != len(world.arms):
                raise ConfigError(f"the cost model reads {cost_model.config.agents} arms, "
                                  f"the world has {len(world.arms)}")
            if self.config.method != "codi":
                raise ConfigError(f"planner.method is {self.config.method!r}: a cost model guides by its gradient "
                                  "(classifier guidance) and needs method 'codi'")
            cost = cost if cost is not None else LearnedCost(cost_model, world)
        self._injected_cost = cost is not None
        self._kinematic = (cost_config or CostConfig()).kinematic_model   # grasp rule of the state prediction
        predicted = cost   # an injected cost keeps its own terms: no radius to widen
        if cost is None:
            cost_config = cost_config or CostConfig()
            if simulator is None:
                if self.config.cost_simulator != "kinematic":
                    raise ConfigError("planner.cost_simulator is 'physics': pass simulator="
                                      "codi_ros.sim.physics_model.PhysicsModel(world) (core does not import sim)")
                simulator = KinematicModel(world, cost_config.kinematic_model)
            if self.config.guidance.estimator == "reparameterized":
                raise ConfigError("planner.guidance.estimator 'reparameterized' needs a differentiable cost, and the "
                                  "cost simulators are black boxes (as the paper's): use 'score_function' or "
                                  "inject a differentiable cost")
            indep = self.config.method == "codi-indep"
            cost = HandoverCost(cost_config, simulator, world.arm_names, independent=indep)
            predicted = HandoverCost(cost_config.widened(self.config.realtime.collision_margin), simulator,
                                     world.arm_names, independent=indep)   # for a plan with committed actions
        elif self.config.method == "codi-indep":
            raise ConfigError("planner.method is 'codi-indep', which builds its own per-arm cost; "
                              "an injected cost needs method 'codi'")
        self.cost: Cost = cost
        self._predicted_cost: Cost = predicted
        self.reset()

    @classmethod
    def load(cls, world: WorldConfig, planner_config: str | Path | None = None, checkpoint: str | Path | None = None,
             simulator: CostSimulator | None = None, cost: Cost | None = None) -> Planner:
        """The planner of ``config/planner.yaml`` (or a given file) with a saved policy (single-arm or joint)."""
        from codi_ros.core.policy import load_policy

        return cls(load_policy(checkpoint), world, load_planner_config(planner_config), load_cost_config(), simulator,
                   cost)

    def reset(self, seed: int | None = None) -> None:
        """Start an episode: forget the previous plan and count plans from 0 again, plan i seeded with
        ``seed + i`` (default: the configured seed), so that an episode replays alone."""
        self._seed = self.config.seed if seed is None else seed
        self._plans = 0
        self._previous: tuple[float, Tensor] | None = None   # (state stamp, joint chunk) of the last plan

    def warm_up(self) -> float:
        """Plan once from a nominal state (each tool halfway from its base to the table centre, cube at
        the centre), then :meth:`reset`: a process's first plan pays one-off costs (about 5x a later plan
        in a check on 1 thread), which a node should pay at start-up, not in its first answer. Returns the
        seconds taken."""
        start = time.perf_counter()
        w, down = self.world, np.diag([1.0, -1.0, -1.0])          # tool z axis pointing at the table
        arms = {n: ArmState(np.array([*(0.5 * np.asarray(w.arm(n).base_xy)), 0.2]), down, np.zeros(3), np.zeros(3),
                            w.control.gripper_max_width) for n in w.arm_names}
        cube = CubeState(np.array([0.0, 0.0, w.cube.size / 2]), np.array([1.0, 0.0, 0.0, 0.0]))
        self.plan(WorldState(arms=arms, cube=cube, goal=np.array(w.goal_centre())))
        self.reset()
        return time.perf_counter() - start

    def plan(self, state: WorldState, overrides: PlanOverrides | None = None,
             committed: dict[str, np.ndarray] | None = None,
             predicted: dict[str, ArmState] | None = None,
             cancelled: Callable[[], bool] | None = None) -> PlanResult:
        """One joint chunk for ``state``. Raises :class:`PlanningError` naming the bad field, and
        :class:`~codi_ros.core.sampler.SamplingCancelled` once ``cancelled()`` is true (asked before every
        score evaluation: a stop interrupts a plan within one network call).

        ``committed``: per arm, the d raw actions (d, 7) the arm executes from ``state.stamp`` on while
        this plan is computed (core/realtime.py); the chunk then starts with exactly these, and the rest
        is planned from the state they lead to (``realtime.method: predict``) or sampled conditioned on
        them (``inpaint``). ``predicted``: per arm, the tool's state after them as the caller's executors
        predict it (:func:`~codi_ros.core.realtime.predict_state`; default: first order)."""
        start = time.perf_counter()
        o = overrides or PlanOverrides()
        check_overrides(o, self.config)
        self.validate(state)
        prefix = self._prefix(committed)
        sampler_config = self.config.sampler_config(o)
        if o.seed is None:   # successive plans differ; a run stays reproducible from the configured seed
            sampler_config = replace(sampler_config, seed=self._seed + self._plans)
        self._plans += 1

        names, H = self.world.arm_names, self.world.horizon.prediction
        d = 0 if prefix is None else prefix[0].shape[1]
        predict = d > 0 and self.config.realtime.method == "predict"
        if predict:   # plan a whole chunk from the state the committed actions lead to (core/realtime.py)
            km = self._kinematic
            if predicted is not None and set(predicted) != set(names):
                raise PlanningError(f"predicted: expected the configured arms {list(names)}, got {sorted(predicted)}")
            state = predict_state(state, committed, self.world, km.grasp_radius, km.hold_width_margin, predicted)
        obs = np.stack([observe(state.arms[n], state.cube, self.world.base_frame(n)) for n in names])
        unguided = self.config.method in UNGUIDED   # no cost while sampling or choosing
        cost = self._predicted_cost if d else self.cost     # d > 0: for a predicted state (core/realtime.py)
        sampler = CoDiSampler(self.base, None if unguided else cost, sampler_config,
                              chunk_shape=(H, ACT_DIM), cost_model=self.cost_model)
        obs_batch = torch.as_tensor(obs)[None].expand(self.config.candidates, *obs.shape)
        cost_state = state if self._injected_cost else SimState.from_world(state, self.world)
        result = sampler.sample(obs_batch, cost_state, prefix=prefix[1] if d and not predict else None,
                                warm=self._warm(state.stamp, self.config.candidates), cancelled=cancelled)
        if unguided:   # chosen without the cost: each arm its own candidate (decentralized), or the joint one
            if self.config.method == "decentralized":
                chosen = result.actions[self.arm_choices(state.stamp, result.actions), torch.arange(len(names))]
            else:
                chosen = result.actions[int(self.choice_scores(state.stamp, result.actions,
                                                               torch.zeros(len(result.actions))).argmin())]
            value = cost(cost_state, chosen[None])                       # reported, never used to choose
        else:
            best = int(self.choice_scores(state.stamp, result.actions, result.cost.total).argmin())
            chosen = result.actions[best]
            value = CostValue(total=result.cost.total[best:best + 1],
                              terms={k: v[best:best + 1] for k, v in result.cost.terms.items()})
        planned = clip_to_limits(chosen, self.world.control)
        if not torch.isfinite(planned).all():
            raise PlanningError("actions: the sampler produced non-finite actions (policy or guidance diverged)")
        self._previous = (state.stamp, planned)
        # predict: the committed actions, then the new chunk (inpaint: the prefix is already in place)
        actions = torch.cat([prefix[0].to(planned.dtype), planned[:, :H - d]], dim=1) if predict else planned
        chunks = {n: actions[i].double().numpy() for i, n in enumerate(names)}
        for n in chunks if d else ():
            chunks[n][:d] = committed[n]                           # bit for bit what the arms execute
        return PlanResult(chunks=chunks, cost=float(value.total[0]),
                          cost_terms={k: float(v[0]) for k, v in value.terms.items()},
                          latency_s=time.perf_counter() - start, committed=d)

    def _prefix(self, committed: dict[str, np.ndarray] | None) -> tuple[Tensor, Tensor] | None:
        """(raw (N, d, 7), normalised (N, d, 7)) committed actions in config arm order, or None."""
        if not committed:
            return None
        names, H = self.world.arm_names, self.world.horizon.prediction
        if set(committed) != set(names):
            raise PlanningError(f"committed: expected the configured arms {list(names)}, got {sorted(committed)}")
        raw = np.stack([np.asarray(committed[n], dtype=float) for n in names])
        if raw.ndim != 3 or raw.shape[2] != ACT_DIM or not 0 < raw.shape[1] < H or not np.all(np.isfinite(raw)):
            raise PlanningError(f"committed: expected (d, {ACT_DIM}) finite actions per arm with 0 < d < {H}, "
                                f"got shape {raw.shape[1:]}")
        raw_t = torch.as_tensor(raw, dtype=torch.get_default_dtype())
        return raw_t, self.base.normalize_actions(raw_t)

    def _warm(self, stamp: float, batch: int) -> tuple[Tensor, float] | None:
        """The warm start of a plan at ``stamp`` (``warm_start``): the not yet executed rest of the previous
        plan, normalised, padded with its last action to a whole chunk; None before a first plan, after
        :meth:`reset`, or when nothing of the previous plan is left."""
        since = self._since_previous(stamp) if self.config.warm_start is not None else None
        if since is None or not 0 <= since[0] < since[1].shape[1]:
            return None
        offset, previous = since
        rest = previous[:, offset:]
        guess = torch.cat([rest, rest[:, -1:].expand(-1, offset, -1)], dim=1)
        guess = self.base.normalize_actions(guess).to(torch.get_default_dtype())
        return guess.expand(batch, *guess.shape), self.config.warm_start

    def choice_scores(self, stamp: float, chunks: Tensor, cost: Tensor) -> Tensor:
        """(B,) J + coherence * gap of B candidate joint chunks; the gap is to the rest of the previous plan,
        executed for (stamp - its stamp) / dt steps (none when that is not 0 < steps < H, e.g. after a pause)."""
        score = torch.nan_to_num(cost, nan=torch.inf)
        since = self._since_previous(stamp) if self.config.coherence > 0 else None
        if since is not None and since[0] > 0:
            offset, previous = since
            score = score + self.config.coherence * coherence_gap(
                self.base.normalize_actions, chunks, previous.to(chunks.dtype), offset)
        return score

    def arm_choices(self, stamp: float, chunks: Tensor) -> Tensor:
        """(N,) per arm, the candidate whose chunk best continues that arm's rest of the previous plan (candidate
        0 without one): the choice of ``method: decentralized``, made from each arm's own actions only."""
        since = self._since_previous(stamp)
        if since is None or since[0] <= 0:
            return torch.zeros(chunks.shape[1], dtype=torch.long)
        offset, previous = since
        return torch.stack([coherence_gap(self.base.normalize_actions, chunks[:, i], previous[i].to(chunks.dtype),
                                          offset).argmin() for i in range(chunks.shape[1])])

    def _since_previous(self, stamp: float) -> tuple[int, Tensor] | None:
        """(control steps executed from the previous plan's stamp to ``stamp``, that plan's joint chunk);
        None before a first plan or after :meth:`reset`."""
        if self._previous is None:
            return None
        prev_stamp, previous = self._previous
        return round((stamp - prev_stamp) / self.world.control.dt), previous

    def validate(self, state: WorldState) -> None:
        """Reject states the planner cannot serve: wrong arms, NaN/inf or misshapen fields, cube off the
        table, goal out of every arm's reach."""
        names = self.world.arm_names
        if set(state.arms) != set(names):
            raise PlanningError(f"state.arms: expected the configured arms {list(names)}, got {sorted(state.arms)}")
        arm_fields = (("ee_pos", (3,)), ("ee_rot", (3, 3)), ("ee_linvel", (3,)), ("ee_angvel", (3,)),
                      ("gripper_width", ()))
        fields = [(f"state.arms.{n}.{k}", getattr(state.arms[n], k), shape) for n in names for k, shape in arm_fields]
        fields += [("state.cube.pos", state.cube.pos, (3,)), ("state.cube.quat", state.cube.quat, (4,)),
                   ("state.goal", state.goal, (3,))]
        for name, value, shape in fields:
            v = np.asarray(value, dtype=float)
            if v.shape != shape:
                raise PlanningError(f"{name}: expected shape {shape}, got {v.shape}")
            if not np.all(np.isfinite(v)):
                raise PlanningError(f"{name}: not finite ({v.tolist()})")
        if not np.linalg.norm(state.cube.quat) > 0:
            raise PlanningError("state.cube.quat: zero quaternion")
        hx, hy = (0.5 * s for s in self.world.table.size)
        x, y, z = np.asarray(state.cube.pos, dtype=float)
        if abs(x) > hx or abs(y) > hy or z < 0:
            raise PlanningError(f"state.cube.pos: ({x:.3f}, {y:.3f}, {z:.3f}) is off the table "
                                f"(|x| <= {hx}, |y| <= {hy}, z >= 0)")
        goal_xy = tuple(float(g) for g in state.goal[:2])
        if not any(self.world.reachable(n, goal_xy) for n in names):
            raise PlanningError(f"state.goal: ({goal_xy[0]:.3f}, {goal_xy[1]:.3f}) is out of reach of every arm "
                                f"({self.world.reach.min_radius}-{self.world.reach.max_radius} m from a base)")
