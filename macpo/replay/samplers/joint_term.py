"""The joint-action term of Theorem 1 and its three-level approximation (paper §4.3).

f = 1 + Σ_i Π_{j≠i} π_j − n Π_i π_i. Since Σ_i Π_{j≠i} π_j − n Π_i π_i = Σ_i (1 − π_i) Π_{j≠i} π_j,
f − 1 is the probability that exactly one agent deviates from its taken action when each
keeps it independently with probability π_i, so 1 ≤ f ≤ 2 (Theorem 2: f = 2 iff one π is 0 and
the rest are 1). We compute that probability directly in O(n), never dividing by π (the public
code divides, which fails when a probability underflows to 0) and without the cancellation of
Σ − nΠ near π = 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: The paper's α_l, α_m, α_h.
DEFAULT_LEVELS = (0.25, 0.5, 0.75)
#: Boundaries on q = f − 1 between the low/medium and medium/high levels.
DEFAULT_CUT_POINTS = (1.0 / 3.0, 2.0 / 3.0)


def joint_action_term(pi: torch.Tensor) -> torch.Tensor:
    """f [...] from the taken-action probabilities ``pi`` [..., N] (N ≥ 1).

    Two-state recurrence over the agents: a = P(all agents so far keep their action),
    b = P(exactly one of them deviates); adding agent i gives a ← a·π_i and
    b ← b·π_i + a·(1 − π_i) = a + π_i·(b − a), a convex combination, so b stays in [0, 1].
    One pass per agent over [...] — measured faster on CPU than cumulative products along N.
    """
    if pi.shape[-1] < 1:
        raise ValueError("joint_action_term needs at least one agent (pi[..., N] with N >= 1)")
    per_agent = pi.clamp(0.0, 1.0).movedim(-1, 0).contiguous()  # [N, ...]
    all_keep = torch.ones_like(per_agent[0])  # [...]
    one_deviates = torch.zeros_like(per_agent[0])  # [...]
    for pi_i in per_agent:
        one_deviates = torch.addcmul(all_keep, pi_i, one_deviates - all_keep)
        all_keep = all_keep * pi_i
    return 1.0 + one_deviates


def validate_levels(levels: Sequence[float], cut_points: Sequence[float]) -> None:
    """Raise ValueError unless 0 < α_l ≤ α_m ≤ α_h and 0 < c_lo < c_hi ≤ 1 (so the rule keeps f's order)."""
    levels, cut_points = list(levels), list(cut_points)
    if len(levels) != 3 or not (0 < levels[0] <= levels[1] <= levels[2]):
        raise ValueError(
            f"sampler.levels must be [low, medium, high] with 0 < low <= medium <= high, got {levels}"
        )
    if len(cut_points) != 2 or not (0 < cut_points[0] < cut_points[1] <= 1):
        raise ValueError(f"sampler.cut_points must be [lo, hi] with 0 < lo < hi <= 1, got {cut_points}")


def joint_action_level(
    f: torch.Tensor,
    levels: Sequence[float] = DEFAULT_LEVELS,
    cut_points: Sequence[float] = DEFAULT_CUT_POINTS,
) -> torch.Tensor:
    """α(f) [...]: with q = f − 1, q ≥ c_hi → α_h; c_lo ≤ q < c_hi → α_m; q < c_lo → α_l.

    α_h needs one agent's taken action to be unlikely while the others' are near certain
    (Theorem 2's maximiser); being a step function of f, the rule never reverses f's order.
    """
    validate_levels(levels, cut_points)
    q = f - 1.0
    bounds = torch.tensor(list(cut_points), dtype=q.dtype, device=q.device)  # [2]
    values = torch.tensor(list(levels), dtype=q.dtype, device=q.device)  # [3]
    return values[torch.bucketize(q, bounds, right=True)]
