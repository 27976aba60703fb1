"""Per-timestep quantities an algorithm hands to a replay sampler.

Samplers see tensors only, never networks (replay must not import nn/algos).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Names a sampler may list in ``needs``; an algorithm lists what it can give in ``provides``.
SIGNAL_NAMES = ("td", "q_star", "pi")


@dataclass
class Signals:
    """What the learner computed for a sampled batch of B episodes, T timesteps, N agents.

    All tensors are detached. ``td`` is δ = Q_tot − y; ``q_tot`` the mixed value of the taken
    joint action; ``q_star`` the central unrestricted estimate of it; ``pi`` the Boltzmann
    probability of each agent's taken action.
    """

    mask: torch.Tensor  # [B, T] 1.0 where the timestep is a real transition
    td: torch.Tensor | None = None  # [B, T]
    q_tot: torch.Tensor | None = None  # [B, T]
    q_star: torch.Tensor | None = None  # [B, T]
    pi: torch.Tensor | None = None  # [B, T, N]
