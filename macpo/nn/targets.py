"""TD(λ) targets over whole episodes."""

from __future__ import annotations

import torch


def td_lambda_targets(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    mask: torch.Tensor,
    next_values: torch.Tensor,
    gamma: float,
    td_lambda: float,
) -> torch.Tensor:
    """λ-returns G_t = r_t + γ(1 − term_t)[(1 − λ) V_{t+1} + λ G_{t+1}].

    reward, terminated, mask [B, T]; next_values [B, T+1] (target-network values of every
    timestep). Where step t+1 is not a real transition (episode ended by truncation or padding),
    G_{t+1} is replaced by V_{t+1}, so truncated episodes bootstrap. Returns [B, T].
    The backward recursion is a short Python loop over time on [B] vectors: a closed form via
    cumulative products is not cheaper for T ≤ a few hundred and is harder to read.
    """
    b, t = reward.shape
    not_term = 1.0 - terminated.float()
    out = torch.empty_like(reward)
    g_next = next_values[:, t]  # [B]
    for i in range(t - 1, -1, -1):
        v_next = next_values[:, i + 1]
        valid_next = mask[:, i + 1] if i + 1 < t else torch.zeros_like(v_next)
        g_next = torch.where(valid_next > 0, g_next, v_next)
        g = reward[:, i] + gamma * not_term[:, i] * ((1 - td_lambda) * v_next + td_lambda * g_next)
        out[:, i] = g
        g_next = g
    return out
