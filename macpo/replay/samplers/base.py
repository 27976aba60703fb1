"""The replay-sampler interface: which episodes to train on, and how much each timestep counts.

A sampler turns per-timestep ``Signals`` into a non-negative *priority* (the "weight before
normalisation" of DESIGN.md). In ``mode: reweight`` (the paper's form) episodes are drawn
uniformly and the priorities become per-timestep loss weights. In ``mode: resample`` episodes
are drawn in proportion to stored priorities and the loss carries importance weights.
A new sampler subclasses ``Sampler``, sets ``needs`` and implements ``priority``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from macpo.replay.signals import SIGNAL_NAMES, Signals

MODES = ("reweight", "resample")


class Sampler(ABC):
    """Base class: storage of per-episode priorities plus the two sampling modes."""

    #: signals this sampler reads from ``Signals``; checked against the algorithm before training
    needs: frozenset[str] = frozenset()

    def __init__(
        self,
        mode: str = "reweight",
        normalize: bool = True,
        eps: float = 1e-6,
        name: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"sampler.mode must be one of {MODES}, got {mode!r}")
        unknown = set(self.needs) - set(SIGNAL_NAMES)
        if unknown:
            raise ValueError(f"{type(self).__name__}.needs has unknown signals {sorted(unknown)}")
        self.mode = mode
        self.normalize = normalize
        self.eps = eps
        self.name = name or type(self).__name__
        self.capacity = 0
        self.device = torch.device("cpu")
        self._diagnostics: dict[str, float] = {}

    # ---- lifecycle -------------------------------------------------------------------
    def attach(self, capacity: int, device: torch.device | str) -> None:
        """Preallocate per-episode storage for a buffer of ``capacity`` episodes."""
        self.capacity = int(capacity)
        self.device = torch.device(device)

    def on_insert(self, indices: torch.Tensor) -> None:
        """New episodes were written at buffer slots ``indices`` [K]."""

    # ---- sampling --------------------------------------------------------------------
    def sample(self, batch_size: int, n_stored: int, progress: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``batch_size`` slots among the first ``n_stored``.

        Returns indices [batch_size] (long) and importance weights [batch_size] (float).
        ``progress`` ∈ [0, 1] is the fraction of the training budget done (for annealing).
        """
        if n_stored < 1:
            raise RuntimeError("cannot sample from an empty replay buffer")
        idx = torch.randint(0, n_stored, (batch_size,), device=self.device)
        return idx, torch.ones(batch_size, device=self.device)

    # ---- weighting -------------------------------------------------------------------
    @abstractmethod
    def priority(self, signals: Signals) -> torch.Tensor:
        """Non-negative per-timestep priority [B, T] from the signals this sampler needs."""

    def loss_weights(self, signals: Signals, is_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Per-timestep loss weights [B, T], detached.

        reweight: priorities clamped ≥ eps and divided by their masked mean (E_μ[w] = 1), or raw
        when ``normalize`` is false. resample: the importance weights broadcast over time.
        """
        mask = signals.mask
        if self.mode == "resample":
            w = mask.new_ones(mask.shape) if is_weights is None else is_weights[:, None].expand_as(mask)
        else:
            w = self.priority(signals).detach().clamp_min(self.eps)
            if self.normalize:
                w = w / ((w * mask).sum() / mask.sum().clamp_min(1.0))
            if is_weights is not None:
                w = w * is_weights[:, None]
        self._record_weight_stats(w, mask)
        return w.detach()

    def update(self, indices: torch.Tensor, signals: Signals) -> None:
        """Refresh stored priorities of the sampled episodes (resample mode)."""

    # ---- diagnostics -----------------------------------------------------------------
    def _record_weight_stats(self, w: torch.Tensor, mask: torch.Tensor) -> None:
        m = mask.bool()
        vals = w[m]
        if vals.numel() == 0:
            return
        ess = vals.sum() ** 2 / (vals.pow(2).sum() * vals.numel()).clamp_min(1e-12)
        self._diagnostics.update(
            {"weights/max": vals.max().item(), "weights/mean": vals.mean().item(), "weights/ess_frac": ess.item()}
        )

    def diagnostics(self) -> dict[str, float]:
        """Latest weight statistics for logging (max, mean, effective sample size fraction, factors)."""
        return dict(self._diagnostics)
