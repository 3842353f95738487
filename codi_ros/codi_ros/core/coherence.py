"""Backward coherence between successive receding-horizon plans (bidirectional decoding, Liu et al. 2024).

Independent samples at every replan can switch between modes of the data (e.g. the two grasp yaws
90 degrees apart, or pick vs. yield) and finish neither. Sampling several candidate chunks and
preferring the one that continues the not yet executed rest of the previous chunk keeps the
executed behaviour in one mode while every chunk still comes from the (guided) policy.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor


def coherence_gap(normalize: Callable[[Tensor], Tensor], chunks: Tensor, previous: Tensor | None,
                  offset: int) -> Tensor:
    """Mean squared gap, in normalised action units, between each candidate's first actions and the rest
    ``previous[..., offset:, :]`` of the previous chunk.

    chunks (B, ..., H, A) raw actions; previous (..., H, A) raw actions, executed for ``offset`` steps
    since it was planned. Zeros (no preference) without a previous chunk or when nothing of it is left.
    """
    B, H = chunks.shape[0], chunks.shape[-2]
    if previous is None or not 0 <= offset < H:
        return chunks.new_zeros(B)
    rest = normalize(previous[..., offset:, :])
    gap = normalize(chunks[..., : H - offset, :]) - rest
    return gap.square().reshape(B, -1).mean(dim=1)
