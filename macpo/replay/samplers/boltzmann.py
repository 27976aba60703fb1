"""Boltzmann probability of each agent's taken action, π_a (docs/design.md, "The samplers").

π_a = softmax(Q_a / τ) evaluated at the action agent a took, over the actions available to it
("available", the paper's Eq. 6 read with SMAC's action masks) or over all its actions ("all",
what the public reference code does). Computed as a log-softmax, so huge utilities or many
masked actions cannot produce NaN; a probability that underflows is exactly 0.
"""

from __future__ import annotations

import math

import torch

PI_OVER = ("available", "all")


def taken_action_probs(
    agent_qs: torch.Tensor,
    actions: torch.Tensor,
    avail: torch.Tensor | None = None,
    temperature: float = 1.0,
    over: str = "available",
) -> torch.Tensor:
    """π [B, T, N] from utilities ``agent_qs`` [B, T, N, A] and taken ``actions`` [B, T, N] (long).

    ``avail`` [B, T, N, A] (bool or 0/1) is required when ``over`` is "available". An agent
    with no available action at all (a padded timestep) is treated as if every action were
    available; a taken action that is unavailable gets probability 0.
    """
    if over not in PI_OVER:
        raise ValueError(f"sampler.pi_over must be one of {PI_OVER}, got {over!r}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"sampler.temperature must be > 0, got {temperature!r}")
    if actions.dim() == agent_qs.dim():  # accept pymarl's [B, T, N, 1]
        actions = actions.squeeze(-1)
    logits = agent_qs.detach().float() / temperature  # [B, T, N, A]
    if over == "available":
        if avail is None:
            raise ValueError("taken_action_probs needs `avail` when sampler.pi_over is 'available'")
        allowed = avail.bool()
        allowed = allowed | ~allowed.any(-1, keepdim=True)  # [B, T, N, A]
        logits = logits.masked_fill(~allowed, -math.inf)
    log_pi = torch.log_softmax(logits, dim=-1)  # [B, T, N, A]
    taken = log_pi.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)  # [B, T, N]
    return taken.exp()
