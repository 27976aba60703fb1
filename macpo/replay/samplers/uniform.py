"""Uniform replay: every stored episode and timestep counts the same (QMIX's default)."""

from __future__ import annotations

import torch

from macpo.replay.samplers.base import Sampler
from macpo.replay.signals import Signals


class UniformSampler(Sampler):
    needs = frozenset()

    def priority(self, signals: Signals) -> torch.Tensor:
        return torch.ones_like(signals.mask)  # [B, T]
