"""Log-probabilities and entropies of stochastic decentralised policies (DOP, FOP, VDAC).

The probabilities themselves come from ``macpo.algos.policy.available_softmax`` (the ε-floor
softmax over available actions the actors also sample from).
"""

from __future__ import annotations

import torch


def taken_log_probs(probs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """log π(a) of the taken actions: probs [..., A], actions [...] long → [...].

    Where ``mask`` (broadcastable to actions) is 0 the result is 0 (log 1), so padded steps
    contribute nothing and never produce −inf.
    """
    p = probs.gather(-1, actions[..., None]).squeeze(-1)
    if mask is not None:
        p = torch.where(mask.expand_as(p) > 0, p, torch.ones_like(p))
    return torch.log(p.clamp_min(1e-20))


def categorical_entropy(probs: torch.Tensor) -> torch.Tensor:
    """H(π) = −Σ_a π(a) log π(a) over the last axis (0 · log 0 taken as 0)."""
    return -(probs * torch.log(probs.clamp_min(1e-20))).sum(-1)
