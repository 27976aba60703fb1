"""MAC-PO (Theorem 1): |δ| · exp(−|Q_tot − Q*|) · f, f = 1 + Σ_i Π_{j≠i} π_j − n Π_i π_i.

The ablations of the paper's Fig. 4 drop one factor (replace it by 1) with ``use_bellman``,
``use_value`` or ``use_joint``; the sampler then needs fewer signals.
"""

from __future__ import annotations

import torch

from macpo.replay.samplers.base import Sampler
from macpo.replay.samplers.factors import log_bellman, log_value, require
from macpo.replay.samplers.joint_term import joint_action_term
from macpo.replay.signals import Signals


class MacpoSampler(Sampler):
    """Score = product of the enabled factors: bellman |δ|, value exp(−|Q_tot − Q*|), joint f."""

    #: with every factor on; an instance with a factor switched off needs less (read ``sampler.needs``)
    needs = frozenset({"td", "q_star", "pi"})

    def __init__(
        self,
        use_bellman: bool = True,
        use_value: bool = True,
        use_joint: bool = True,
        **kwargs,
    ) -> None:
        self.use_bellman = bool(use_bellman)
        self.use_value = bool(use_value)
        self.use_joint = bool(use_joint)
        needs = set()
        if self.use_bellman:
            needs.add("td")
        if self.use_value:
            needs.add("q_star")
        if self.use_joint:
            needs.add("pi")
        self.needs = frozenset(needs)
        super().__init__(**kwargs)

    def joint_factor(self, pi: torch.Tensor) -> torch.Tensor:
        """The joint-action factor [B, T] from π [B, T, N]: the exact f of Theorem 1."""
        return joint_action_term(pi)

    def log_factors(self, signals: Signals) -> dict[str, torch.Tensor]:
        factors: dict[str, torch.Tensor] = {}
        if self.use_bellman:
            (td,) = require(signals, self.name, "td")
            factors["bellman"] = log_bellman(td)
        if self.use_value:
            q_tot, q_star = require(signals, self.name, "q_tot", "q_star")
            factors["value"] = log_value(q_tot, q_star)
        if self.use_joint:
            (pi,) = require(signals, self.name, "pi")
            factors["joint"] = self.joint_factor(pi).log()
        return factors
