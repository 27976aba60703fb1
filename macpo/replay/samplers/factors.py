"""The per-timestep factors of Theorem 1, in log form, shared by the samplers that use them.

bellman: |δ| (PER's and MAC-PO's Bellman-error term); value: exp(−|Q_tot − Q*|) (value
enhancement); the joint-action factors live in ``joint_term``. Each returns [B, T]; a zero
factor is −inf.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from macpo.replay.signals import Signals


def require(signals: Signals, sampler: str, *names: str) -> list[torch.Tensor]:
    """The named tensors of ``signals``, or a ValueError saying which one the learner did not fill."""
    missing = [n for n in names if getattr(signals, n) is None]
    if missing:
        raise ValueError(f"sampler {sampler!r} needs Signals.{', Signals.'.join(missing)}, which are None")
    return [getattr(signals, n).detach() for n in names]


def log_bellman(td: torch.Tensor) -> torch.Tensor:
    """log |δ| [B, T]."""
    return td.abs().log()


def log_value(q_tot: torch.Tensor, q_star: torch.Tensor) -> torch.Tensor:
    """log exp(−|Q_tot − Q*|) = −|Q_tot − Q*| [B, T] (never underflows)."""
    return -(q_tot - q_star).abs()


def windowed_bellman(td: torch.Tensor, mask: torch.Tensor, window: int, decay: float) -> torch.Tensor:
    """PSER's propagated priority p_t = max_{0≤k<W} ρ^k · |δ_{t+k}| within each episode [B, T].

    Padded timesteps (mask 0) contribute nothing, so priority never leaks across episodes.
    """
    err = td.abs() * (mask > 0)  # [B, T]
    padded = F.pad(err, (0, window - 1))  # [B, T + W - 1]
    ahead = padded.unfold(-1, window, 1)  # [B, T, W]: ahead[b, t, k] = |δ_{t+k}|
    decays = decay ** torch.arange(window, device=td.device, dtype=err.dtype)  # [W]
    return (ahead * decays).amax(-1)  # [B, T]
