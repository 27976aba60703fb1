"""ReMERN (Liu et al. 2021) with all agents as one conceptual agent: |δ| · exp(−|Q_tot − Q*|) · (2 − Π_a π_a).

The single-agent optimal weight's policy term is 2 − π(u|s); treating the joint action as one
action gives 2 − Π_a π_a. For one agent it equals MAC-PO's f = 2 − π.
"""

from __future__ import annotations

import torch

from macpo.replay.samplers.base import Sampler
from macpo.replay.samplers.factors import log_bellman, log_value, require
from macpo.replay.signals import Signals


class RemernSampler(Sampler):
    """Score |δ| · exp(−|Q_tot − Q*|) · (2 − Π_a π_a)."""

    needs = frozenset({"td", "q_star", "pi"})

    def log_factors(self, signals: Signals) -> dict[str, torch.Tensor]:
        td, q_tot, q_star, pi = require(signals, self.name, "td", "q_tot", "q_star", "pi")
        joint = 2.0 - pi.clamp(0.0, 1.0).prod(-1)  # [B, T] in [1, 2]
        return {"bellman": log_bellman(td), "value": log_value(q_tot, q_star), "joint": joint.log()}
