"""The replay-sampler interface: which episodes to train on, and how much each timestep counts.

A sampler scores every timestep with a product of named non-negative *factors* (Bellman error,
value enhancement, joint-action term, ...), the "weight before normalisation" of docs/design.md.
Factors are returned in log form so that a product of tiny factors (exp(−|Q_tot − Q*|) with a
large gap) does not underflow to zero before normalisation cancels the common scale.

Two modes use the same score s_t (``alpha`` is the exponent on s in both):

- ``reweight`` (the paper's form): episodes are drawn uniformly; the loss weight of timestep t
  is s_t^α, divided by its masked mean over the batch (E_μ[w] = 1), or raw when
  ``normalize`` is false (the public reference code).
- ``resample`` (PER's form): each stored episode keeps a priority p_e, the masked mean (or max,
  ``episode_priority``) of s_t over its timesteps; episodes are drawn with P(e) ∝ p_e^α and the
  loss carries importance weights (N·P(e))^−β, divided by their largest possible value when
  ``normalize`` is true; β is annealed from ``beta`` to ``beta_end`` with training progress.

A new sampler subclasses ``Sampler``, sets ``needs`` and implements ``log_factors``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from macpo.replay.samplers.boltzmann import PI_OVER, taken_action_probs
from macpo.replay.signals import SIGNAL_NAMES, Signals

MODES = ("reweight", "resample")
EPISODE_PRIORITIES = ("mean", "max")


class Sampler(ABC):
    """Base class: per-timestep scores from log-factors, per-episode priorities, the two modes."""

    #: signals this sampler reads from ``Signals``; checked against the algorithm before training.
    #: Subclasses whose needs depend on options set ``self.needs`` before calling ``__init__``.
    needs: frozenset[str] = frozenset()

    def __init__(
        self,
        mode: str = "reweight",
        normalize: bool = True,
        alpha: float = 1.0,
        beta: float = 0.4,
        beta_end: float = 1.0,
        episode_priority: str = "mean",
        eps: float = 1e-6,
        temperature: float = 1.0,
        pi_over: str = "available",
        name: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"sampler.mode must be one of {MODES}, got {mode!r}")
        if not isinstance(normalize, bool):
            raise ValueError(f"sampler.normalize must be true or false, got {normalize!r}")
        if not (math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"sampler.alpha must be a finite number >= 0, got {alpha!r}")
        for key, value in (("beta", beta), ("beta_end", beta_end)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"sampler.{key} must lie in [0, 1], got {value!r}")
        if episode_priority not in EPISODE_PRIORITIES:
            raise ValueError(
                f"sampler.episode_priority must be one of {EPISODE_PRIORITIES}, got {episode_priority!r}"
            )
        if not (0.0 < eps < 1.0):
            raise ValueError(f"sampler.eps must lie in (0, 1), got {eps!r}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"sampler.temperature must be > 0, got {temperature!r}")
        if pi_over not in PI_OVER:
            raise ValueError(f"sampler.pi_over must be one of {PI_OVER}, got {pi_over!r}")
        unknown = set(self.needs) - set(SIGNAL_NAMES)
        if unknown:
            raise ValueError(f"{type(self).__name__}.needs has unknown signals {sorted(unknown)}")
        self.mode = mode
        self.normalize = normalize
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.beta_end = float(beta_end)
        self.episode_priority = episode_priority
        self.eps = float(eps)
        self.temperature = float(temperature)
        self.pi_over = pi_over
        self.name = name or type(self).__name__
        self.capacity = 0
        self.device = torch.device("cpu")
        self.priorities = torch.zeros(0)  # [capacity] stored episode priorities (resample mode)
        # Last batch, kept as detached tensors; statistics are computed only in diagnostics()
        # so that a training step never waits for the device.
        self._last_factors: dict[str, torch.Tensor] = {}
        self._last_factor_mask: torch.Tensor | None = None
        self._last_weights: torch.Tensor | None = None
        self._last_weight_mask: torch.Tensor | None = None
        self._last_beta: float | None = None
        self._n_stored = 0

    # ---- lifecycle -------------------------------------------------------------------
    def attach(self, capacity: int, device: torch.device | str) -> None:
        """Preallocate per-episode storage for a buffer of ``capacity`` episodes on ``device``."""
        if capacity < 1:
            raise ValueError(f"buffer capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self.priorities = torch.zeros(self.capacity, device=self.device)  # [capacity]

    def on_insert(self, indices: torch.Tensor) -> None:
        """New episodes were written at buffer slots ``indices`` [K]: give them the current max priority.

        The current max is taken over the stored priorities (1.0 while none is positive), so a
        new episode is drawn at least as often as any stored one until its first update.
        """
        if self.mode != "resample":
            return
        self._require_attached()
        top = self.priorities.max()
        new = torch.where(top > 0, top, torch.ones_like(top))
        self.priorities[torch.as_tensor(indices, device=self.device)] = new

    def state_dict(self) -> dict:
        """What a checkpoint must hold to resume sampling: the stored priorities (resample mode)."""
        return {"priorities": self.priorities, "n_stored": self._n_stored}

    def load_state_dict(self, state: dict) -> None:
        priorities = state["priorities"]
        if priorities.shape != self.priorities.shape:
            raise ValueError(
                f"{self.name}: checkpoint holds priorities for {priorities.shape[0]} episodes, "
                f"but buffer_size is {self.priorities.shape[0]}"
            )
        self.priorities.copy_(priorities)
        self._n_stored = int(state.get("n_stored", 0))

    def _require_attached(self) -> None:
        if self.capacity < 1:
            raise RuntimeError(f"{self.name}: call attach(capacity, device) before inserting or sampling")

    # ---- sampling --------------------------------------------------------------------
    def beta_at(self, progress: float) -> float:
        """IS exponent β annealed linearly from ``beta`` (progress 0) to ``beta_end`` (progress 1)."""
        frac = min(max(float(progress), 0.0), 1.0)
        return self.beta + (self.beta_end - self.beta) * frac

    def sample(
        self, batch_size: int, n_stored: int, progress: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``batch_size`` slots among the first ``n_stored``.

        Returns indices [batch_size] (long) and importance weights [batch_size] (float).
        ``progress`` ∈ [0, 1] is the fraction of the training budget done (for annealing β).
        """
        if n_stored < 1:
            raise RuntimeError("cannot sample from an empty replay buffer")
        if self.mode == "reweight":
            idx = torch.randint(0, n_stored, (batch_size,), device=self.device)  # [b]
            return idx, torch.ones(batch_size, device=self.device)
        self._require_attached()
        if n_stored > self.capacity:
            raise RuntimeError(f"n_stored={n_stored} exceeds the attached capacity {self.capacity}")
        self._n_stored = n_stored
        probs = self.sampling_probs(n_stored)  # [n_stored]
        idx = torch.multinomial(probs, batch_size, replacement=True)  # [b]
        beta = self.beta_at(progress)
        self._last_beta = beta
        if self.normalize:  # (N·P)^-β / max_e (N·P_e)^-β over the stored episodes
            is_weights = (probs.min() / probs[idx]) ** beta
        else:
            is_weights = (n_stored * probs[idx]) ** -beta
        return idx, is_weights  # [b], [b]

    def sampling_probs(self, n_stored: int) -> torch.Tensor:
        """P(e) ∝ max(p_e, eps)^α over the first ``n_stored`` stored episodes [n_stored]."""
        scaled = self.priorities[:n_stored].clamp_min(self.eps) ** self.alpha
        return scaled / scaled.sum()

    # ---- scoring ---------------------------------------------------------------------
    @abstractmethod
    def log_factors(self, signals: Signals) -> dict[str, torch.Tensor]:
        """Log of each named non-negative factor of the score, each [B, T] (−inf for a zero factor)."""

    def log_score(self, signals: Signals) -> torch.Tensor:
        """log s_t [B, T]: the sum of the log-factors (0 when the sampler has none)."""
        factors = {k: v.detach() for k, v in self.log_factors(signals).items()}
        self._last_factors = factors
        self._last_factor_mask = signals.mask.detach()
        if not factors:
            mask = signals.mask
            return torch.zeros(mask.shape, device=mask.device, dtype=_float_dtype(mask))
        return torch.stack(list(factors.values())).sum(0)  # [B, T]

    def priority(self, signals: Signals) -> torch.Tensor:
        """Non-negative per-timestep priority s_t^α [B, T] (the raw weight before normalisation)."""
        return torch.exp(self.alpha * self.log_score(signals))

    # ---- weighting -------------------------------------------------------------------
    def loss_weights(self, signals: Signals, is_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Per-timestep loss weights [B, T], detached, 0 at padded timesteps.

        reweight, normalize: s^α rescaled so that the largest is 1, clamped ≥ eps (relative to
        that largest weight), then divided by the masked mean so that the real timesteps
        average 1. reweight, raw: s^α as the reference code uses it. resample: the importance
        weights [B] broadcast over time. Importance weights given in reweight mode multiply in.
        """
        mask = signals.mask  # [B, T]
        valid = mask > 0
        if self.mode == "resample":
            ones = torch.ones(mask.shape, device=mask.device, dtype=_float_dtype(mask))
            w = ones if is_weights is None else is_weights[:, None].expand(mask.shape)
            w = torch.where(valid, w, torch.zeros_like(w))
        else:
            log_w = self.alpha * self.log_score(signals)  # [B, T]
            if self.normalize:
                top = log_w.masked_fill(~valid, -math.inf).amax()
                top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
                w = torch.exp(log_w - top).clamp_min(self.eps)
                w = torch.where(valid, w, torch.zeros_like(w))
                w = w / (w.sum() / valid.sum().clamp_min(1))
            else:
                w = torch.where(valid, torch.exp(log_w), torch.zeros_like(log_w))
            if is_weights is not None:
                w = w * is_weights[:, None]
        w = w.detach()
        self._last_weights, self._last_weight_mask = w, valid
        return w

    def update(self, indices: torch.Tensor, signals: Signals) -> None:
        """Refresh the stored priorities of the sampled episodes [b] (resample mode only).

        Episode priority = masked mean (``episode_priority: mean``) or max over its timesteps of
        the score s_t (without α; α applies when sampling).
        """
        if self.mode != "resample":
            return
        self._require_attached()
        mask = signals.mask  # [B, T]
        valid = mask > 0
        score = torch.exp(self.log_score(signals))  # [B, T]
        score = torch.where(valid, score, torch.zeros_like(score))
        if self.episode_priority == "mean":
            episode = score.sum(1) / valid.sum(1).clamp_min(1)  # [B]
        else:
            episode = score.amax(1)  # [B]
        self.priorities[torch.as_tensor(indices, device=self.device)] = episode.to(self.priorities.dtype)

    # ---- Boltzmann policy -------------------------------------------------------------
    def taken_action_probs(
        self, agent_qs: torch.Tensor, actions: torch.Tensor, avail: torch.Tensor | None = None
    ) -> torch.Tensor:
        """π_a [B, T, N]: Boltzmann probability of each agent's taken action (call when "pi" is needed).

        Softmax of ``agent_qs`` [B, T, N, A] / ``temperature`` over each agent's available actions
        (``avail`` [B, T, N, A] bool), or over all actions when ``pi_over`` is "all".
        """
        return taken_action_probs(agent_qs, actions, avail, temperature=self.temperature, over=self.pi_over)

    # ---- diagnostics -----------------------------------------------------------------
    def diagnostics(self) -> dict[str, float]:
        """Statistics of the last batch for logging.

        ``factor/<name>/{mean,std,max}`` of each factor over real timesteps; ``weights/{max,mean}``
        and ``weights/ess_frac`` (effective sample size (Σw)²/(n·Σw²)) of the final loss weights;
        in resample mode also ``sampler/beta`` and ``priority/{max,mean}`` over stored episodes.
        """
        out: dict[str, float] = {}
        if self._last_factors and self._last_factor_mask is not None:
            valid = self._last_factor_mask > 0
            if valid.any():
                for key, log_f in self._last_factors.items():
                    vals = torch.exp(log_f[valid].double())
                    out[f"factor/{key}/mean"] = vals.mean().item()
                    out[f"factor/{key}/std"] = vals.std(unbiased=False).item()
                    out[f"factor/{key}/max"] = vals.max().item()
        if self._last_weights is not None and self._last_weight_mask is not None:
            vals = self._last_weights[self._last_weight_mask].double()
            if vals.numel():
                ess = vals.sum() ** 2 / (vals.pow(2).sum() * vals.numel()).clamp_min(1e-300)
                out.update(
                    {
                        "weights/max": vals.max().item(),
                        "weights/mean": vals.mean().item(),
                        "weights/ess_frac": ess.item(),
                    }
                )
        if self.mode == "resample" and self._n_stored:
            stored = self.priorities[: self._n_stored].double()
            out["priority/max"] = stored.max().item()
            out["priority/mean"] = stored.mean().item()
        if self._last_beta is not None:
            out["sampler/beta"] = self._last_beta
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, mode={self.mode!r}, needs={sorted(self.needs)})"


def _float_dtype(mask: torch.Tensor) -> torch.dtype:
    """The mask's dtype if it is floating point (the learner's precision), else float32."""
    return mask.dtype if mask.is_floating_point() else torch.float32
