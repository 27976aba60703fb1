"""MAC-PO Approximation (paper §4.3): f replaced by three levels α_l ≤ α_m ≤ α_h.

With q = f − 1 (the probability that exactly one agent deviates): q ≥ c_hi → α_h,
c_lo ≤ q < c_hi → α_m, else α_l. This is our reading of §4.3 (Algorithm 2's body is missing
from the paper's text); see docs/design.md for why it was chosen over counting unlikely agents.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from macpo.replay.samplers.joint_term import (
    DEFAULT_CUT_POINTS,
    DEFAULT_LEVELS,
    joint_action_level,
    joint_action_term,
    validate_levels,
)
from macpo.replay.samplers.macpo import MacpoSampler


class MacpoApproxSampler(MacpoSampler):
    """MAC-PO with the joint factor quantised to ``levels`` = [α_l, α_m, α_h] at ``cut_points`` on f − 1."""

    def __init__(
        self,
        levels: Sequence[float] = DEFAULT_LEVELS,
        cut_points: Sequence[float] = DEFAULT_CUT_POINTS,
        **kwargs,
    ) -> None:
        levels = [float(x) for x in levels]
        cut_points = [float(x) for x in cut_points]
        validate_levels(levels, cut_points)
        super().__init__(**kwargs)
        self.levels = levels
        self.cut_points = cut_points

    def joint_factor(self, pi: torch.Tensor) -> torch.Tensor:
        return joint_action_level(joint_action_term(pi), self.levels, self.cut_points)
