"""Prioritized experience replay (Schaul et al. 2016) on episodes: score |δ|, weight |δ|^α."""

from __future__ import annotations

import torch

from macpo.replay.samplers.base import Sampler
from macpo.replay.samplers.factors import log_bellman, require
from macpo.replay.signals import Signals


class PerSampler(Sampler):
    """reweight: per-timestep weight |δ|^α; resample: episodes ∝ stored priority^α with IS weights."""

    needs = frozenset({"td"})

    def __init__(self, alpha: float = 0.6, **kwargs) -> None:
        super().__init__(alpha=alpha, **kwargs)

    def log_factors(self, signals: Signals) -> dict[str, torch.Tensor]:
        (td,) = require(signals, self.name, "td")
        return {"bellman": log_bellman(td)}
