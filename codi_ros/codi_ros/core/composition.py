"""The joint base policy the CoDi sampler guides, as joint chunks a = (a^(1), ..., a^(N)) of shape (B, N, H, A).

:class:`ProductPolicy`: the product of N single-agent diffusion policies,
p^{1:N}(a | s) = prod_i p^(i)(a^(i) | f_single^(i)(s)) (eq. 6). Its score is the stack of the per-agent
scores (eq. 13). The agents are homogeneous, so one shared policy is evaluated in every arm's own
frame, in a single batched call (B*N rows). CoDi's base policy.

:class:`JointPolicy`: one policy trained on multi-arm demonstrations over all N arms at once (the
"macro-agent" of the joint-data baselines, Sec. VII-A: CoDi-Joint guides it). Same interface, so the
sampler and the planner do not know which one they guide.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor


def joint_layout(chunks: Tensor) -> Tensor:
    """(B, N, H, A) joint chunks -> (B, H, N*A), the arms' actions side by side per step (a joint policy's)."""
    return chunks.transpose(1, 2).flatten(2)


def agent_layout(x: Tensor, num_agents: int) -> Tensor:
    """The inverse of :func:`joint_layout`: (..., H, N*A) -> (..., N, H, A)."""
    return x.unflatten(-1, (num_agents, -1)).transpose(-3, -2)


class ScorePolicy(Protocol):
    """What composition needs from a single-agent diffusion policy (core/policy.py)."""

    config: Any  # exposes sigma_min, sigma_max (the EDM time grid)

    def score(self, a_t: Tensor, t: Tensor, obs: Tensor) -> Tensor:
        """a_t (B, H, A) normalised noisy chunk, t (B,), obs (B, OBS_DIM) raw -> score (B, H, A)."""
        ...

    def denoise(self, a_t: Tensor, t: Tensor, obs: Tensor) -> Tensor:
        """Tweedie mean a_t + t^2 score."""
        ...

    def normalize_actions(self, a: Tensor) -> Tensor: ...

    def unnormalize_actions(self, a: Tensor) -> Tensor: ...


class ProductPolicy:
    """N copies of one policy acting jointly: joint chunks a = (a^(1), ..., a^(N)) of shape (B, N, H, A)."""

    def __init__(self, policy: ScorePolicy, num_agents: int):
        if num_agents < 1:
            raise ValueError(f"num_agents must be >= 1, got {num_agents}")
        if getattr(policy.config, "agents", 1) != 1:
            raise ValueError(f"a product of single-agent policies needs agents 1, the policy has "
                             f"{policy.config.agents} (a joint policy: JointPolicy)")
        self.policy, self.num_agents = policy, num_agents

    @property
    def config(self) -> Any:
        return self.policy.config

    def _check(self, a_t: Tensor, obs: Tensor) -> None:
        if a_t.ndim < 3 or a_t.shape[1] != self.num_agents:
            raise ValueError(f"joint chunk must be (B, {self.num_agents}, ...), got {tuple(a_t.shape)}")
        if obs.shape[:2] != a_t.shape[:2]:
            raise ValueError(f"obs must be (B, {self.num_agents}, OBS_DIM) like the chunk, got {tuple(obs.shape)}")

    def score(self, a_t: Tensor, t: Tensor, obs: Tensor) -> Tensor:
        """Eq. 13: s^(1:N)(a; t, s) = [s^(i)(a^(i); t, f_single^(i)(s))]_i. a_t (B, N, ...), t (B,), obs (B, N, O)."""
        self._check(a_t, obs)
        N = a_t.shape[1]
        s = self.policy.score(a_t.flatten(0, 1), t.repeat_interleave(N), obs.flatten(0, 1))
        return s.reshape(a_t.shape)

    def denoise(self, a_t: Tensor, t: Tensor, obs: Tensor) -> Tensor:
        """Tweedie posterior mean mu = a(t) + t^2 s^(1:N)(a(t); t, s) (eq. 16)."""
        return a_t + t.reshape(-1, *([1] * (a_t.ndim - 1))) ** 2 * self.score(a_t, t, obs)

    def score_and_jacobian(self, a_t: Tensor, t: Tensor, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Score and its Jacobian w.r.t. a(t) by autodiff, for the t^4 covariance term of eq. 16.

        The product's Jacobian is block diagonal, so only the per-agent blocks (B, N, d, d) are
        returned (d = H*A). Rows of a batch must not interact inside the network (eval mode).
        """
        self._check(a_t, obs)
        B, N = a_t.shape[:2]
        x = a_t.detach().flatten(0, 1)
        t_rows, obs_rows = t.repeat_interleave(N), obs.flatten(0, 1)

        def rows_score_sum(z: Tensor) -> tuple[Tensor, Tensor]:  # d(sum_b s_b)/d z_b = d s_b / d z_b
            s = self.policy.score(z, t_rows, obs_rows)
            return s.sum(dim=0), s

        with torch.enable_grad():
            jac, score = torch.func.jacrev(rows_score_sum, has_aux=True)(x)               # (*ev, B*N, *ev)
        d = x[0].numel()
        blocks = jac.reshape(d, B * N, d).permute(1, 0, 2).reshape(B, N, d, d)
        return score.detach().reshape(a_t.shape), blocks.detach()

    def normalize_actions(self, a: Tensor) -> Tensor:
        return self.policy.normalize_actions(a)

    def unnormalize_actions(self, a: Tensor) -> Tensor:
        return self.policy.unnormalize_actions(a)


class JointPolicy:
    """One policy over all N agents (``config.agents == N``) behind ProductPolicy's interface: a joint chunk
    (B, N, H, A) is the policy's (B, H, N*A) chunk with the agents' actions side by side per step, the
    observations (B, N, O) its (B, N*O) concatenation (core/policy.py)."""

    def __init__(self, policy: ScorePolicy, num_agents: int):
        if policy.config.agents != num_agents:
            raise ValueError(f"the joint policy acts for {policy.config.agents} arms, the world has {num_agents}")
        self.policy, self.num_agents = policy, num_agents

    @property
    def config(self) -> Any:
        return self.policy.config

    def _to_policy(self, a: Tensor) -> Tensor:          # (B, N, H, A) -> (B, H, N*A)
        if a.ndim != 4 or a.shape[1] != self.num_agents:
            raise ValueError(f"joint chunk must be (B, {self.num_agents}, H, A), got {tuple(a.shape)}")
        return joint_layout(a)

    def _from_policy(self, x: Tensor) -> Tensor:        # (B, H, N*A) -> (B, N, H, A)
        return agent_layout(x, self.num_agents)

    def score(self, a_t: Tensor, t: Tensor, obs: Tensor) -> Tensor:
        """The joint score s(a; t, s) of the stacked chunk. a_t (B, N, H, A), t (B,), obs (B, N, O)."""
        return self._from_policy(self.policy.score(self._to_policy(a_t), t, obs.flatten(1)))

    def denoise(self, a_t: Tensor, t: Tensor, obs: Tensor) -> Tensor:
        return self._from_policy(self.policy.denoise(self._to_policy(a_t), t, obs.flatten(1)))

    def score_and_jacobian(self, a_t: Tensor, t: Tensor, obs: Tensor) -> tuple[Tensor, Tensor]:
        raise ValueError("guidance.covariance 'jacobian' uses the product's per-agent blocks (eq. 16); "
                         "a joint policy has none: use 'isotropic' or 'data_prior'")

    def _per_step(self, fn, a: Tensor) -> Tensor:       # fn on (..., K, N*A), for a chunk (..., N, K, A)
        return fn(a.transpose(-3, -2).flatten(-2)).unflatten(-1, (self.num_agents, -1)).transpose(-3, -2)

    def normalize_actions(self, a: Tensor) -> Tensor:
        """Raw (..., N, K, A) -> normalised, each agent by its own columns of the joint normaliser."""
        return self._per_step(self.policy.normalize_actions, a)

    def unnormalize_actions(self, a: Tensor) -> Tensor:
        return self._per_step(self.policy.unnormalize_actions, a)


def base_policy(policy: ScorePolicy, num_agents: int) -> ProductPolicy | JointPolicy:
    """What the sampler guides: the product of N copies of a single-agent ``policy`` (CoDi), or a joint
    policy over the N agents as it is (CoDi-Joint)."""
    if getattr(policy.config, "agents", 1) > 1:
        return JointPolicy(policy, num_agents)
    return ProductPolicy(policy, num_agents)
