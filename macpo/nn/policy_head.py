"""Stochastic decentralised policies: action probabilities from an actor's logits.

Policy-gradient methods (DOP, FOP, VDAC) explore with the actor's own sampling. Their public
SMAC configs all use pymarl's "ε-floor" multinomial selector: during training each agent acts
from (1 − ε)·softmax(logits) + ε·uniform, ε annealed; at test time the greedy action.
"""

from __future__ import annotations

import torch


def policy_probs(logits: torch.Tensor, avail: torch.Tensor, epsilon: float = 0.0) -> torch.Tensor:
    """Per-agent action probabilities, zero on unavailable actions.

    logits [..., A], avail [..., A] bool → probs [..., A]: softmax over the available actions,
    mixed with the uniform distribution over them by ``epsilon`` (the exploration floor).
    A row with no available action (a padded timestep) gets the uniform distribution over all
    actions, so no NaN reaches a loss that masks it out.
    """
    any_avail = avail.any(-1, keepdim=True)
    avail = avail | ~any_avail  # padded rows: every action "available"
    probs = torch.softmax(logits.masked_fill(~avail, float("-inf")), dim=-1)  # [..., A]
    if epsilon > 0:
        uniform = avail.to(probs.dtype) / avail.sum(-1, keepdim=True).to(probs.dtype)
        probs = (1.0 - epsilon) * probs + epsilon * uniform
    return probs


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
