"""Prioritized sequence experience replay (Brittain et al. 2019): PER with priority propagated backwards.

The score of timestep t is max_{0≤k<W} ρ^k · |δ_{t+k}|: a large error also raises the few
timesteps that lead up to it (decay ρ, window W), within the same episode.
"""

from __future__ import annotations

import torch

from macpo.replay.samplers.base import Sampler
from macpo.replay.samplers.factors import require, windowed_bellman
from macpo.replay.signals import Signals


class PserSampler(Sampler):
    """PER's |δ|^α with |δ| replaced by its decayed maximum over the next ``window`` timesteps."""

    needs = frozenset({"td"})

    def __init__(self, alpha: float = 0.6, window: int = 5, decay: float = 0.4, **kwargs) -> None:
        if int(window) != window or window < 1:
            raise ValueError(f"sampler.window must be an integer >= 1, got {window!r}")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"sampler.decay must lie in [0, 1], got {decay!r}")
        super().__init__(alpha=alpha, **kwargs)
        self.window = int(window)
        self.decay = float(decay)

    def log_factors(self, signals: Signals) -> dict[str, torch.Tensor]:
        (td,) = require(signals, self.name, "td")
        return {"bellman": windowed_bellman(td, signals.mask, self.window, self.decay).log()}
