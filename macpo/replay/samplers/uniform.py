"""Uniform replay: every stored episode and timestep counts the same (QMIX's default)."""

from __future__ import annotations

import torch

from macpo.replay.samplers.base import Sampler
from macpo.replay.signals import Signals


class UniformSampler(Sampler):
    """Score 1 everywhere (no factors)."""

    needs = frozenset()

    def log_factors(self, signals: Signals) -> dict[str, torch.Tensor]:
        return {}
