"""Maximum-entropy targets for FOP (Zhang et al., ICML 2021).

FOP learns soft values: each agent's V_i = α log Σ_a exp(Q_i(τ, a)/α) and a joint critic
regressed onto the soft Bellman backup

    y_t = r_t + γ(1 − d_t) [Q̄_tot(s_{t+1}, a'_{t+1}) − α · mean_i log π_i(a'^i_{t+1} | τ^i_{t+1})],
    a'_{t+1} ∼ π (sampled from the current policy),

here generalised to TD(λ) by using the bracket as the next-state value of the λ-return (for
λ = 0 it is the one-step backup above). The log-probability is averaged over agents as in the
authors' public code, which keeps α's scale independent of the number of agents. The
temperature α decays linearly (the public code: α = max(0.05, 0.5 − t/200000), i.e. 0.5 → 0.05
over 90k env steps).
"""

from __future__ import annotations

import torch

from macpo.nn.packing import EpisodePacking


def linear_schedule(step: int, start: float, finish: float, anneal_time: int) -> float:
    """start → finish linearly over ``anneal_time`` steps, then constant."""
    frac = min(1.0, max(0, step) / max(1, anneal_time))
    return start + frac * (finish - start)


def soft_values(q: torch.Tensor, avail: torch.Tensor, alpha: float) -> torch.Tensor:
    """V = α log Σ_{a available} exp(Q(a)/α): q, avail [..., A] → [...].

    Rows with no available action (padding) get α log Σ_a exp(Q(a)/α) over all actions.
    """
    avail = avail | ~avail.any(-1, keepdim=True)
    return alpha * torch.logsumexp((q / alpha).masked_fill(~avail, float("-inf")), dim=-1)


def entropy_regularised_targets(
    packing: EpisodePacking,
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q_tot: torch.Tensor,
    next_log_pi: torch.Tensor,
    alpha: float,
    gamma: float,
    td_lambda: float,
) -> torch.Tensor:
    """FOP's critic targets on ``packing``'s transition rows [R].

    reward, terminated [R]; next_q_tot [R] = Q̄_tot(s_{t+1}, a'_{t+1}) at each transition's next
    observation, with actions a' sampled from the current policy; next_log_pi [R, N] = log π_i(a'^i_{t+1}).
    The soft value Q̄_tot − α·mean_i log π_i enters the λ-return as the bootstrap value.
    """
    soft_v = next_q_tot - alpha * next_log_pi.mean(-1)  # [R]
    return packing.td_lambda_targets(reward, terminated, soft_v, gamma, td_lambda)
