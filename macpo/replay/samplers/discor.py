"""DisCor as adapted in the MAC-PO paper: Bellman error × value enhancement, |δ| · exp(−|Q_tot − Q*|)."""

from __future__ import annotations

import torch

from macpo.replay.samplers.base import Sampler
from macpo.replay.samplers.factors import log_bellman, log_value, require
from macpo.replay.signals import Signals


class DisCorSampler(Sampler):
    """Score |δ| · exp(−|Q_tot − Q*|); needs the central Q* (and Q_tot beside it)."""

    needs = frozenset({"td", "q_star"})

    def log_factors(self, signals: Signals) -> dict[str, torch.Tensor]:
        td, q_tot, q_star = require(signals, self.name, "td", "q_tot", "q_star")
        return {"bellman": log_bellman(td), "value": log_value(q_tot, q_star)}
