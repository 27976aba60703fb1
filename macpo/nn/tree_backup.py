"""DOP's off-policy critic target: n-step tree backup over a decomposed critic.

Wang et al. (ICLR 2021), "DOP: Off-policy multi-agent decomposed policy gradients", §4.1:
for replayed episodes collected by older policies, the critic regresses onto

    y_t = Q̄(s_t, a_t) + Σ_{k=0}^{n-1} (γλ)^k (Π_{l=1}^{k} c_{t+l}) δ_{t+k},
    δ_t = r_t + γ(1 − d_t) E_{a'∼π} Q̄(s_{t+1}, a') − Q̄(s_t, a_t),

with Q̄ the target critic, c_t = Π_i π_i(a_t^i | τ_t^i) the current joint policy's probability
of the replayed joint action (the tree-backup trace: no importance ratio, so no variance
blow-up) and λ the trace decay. Steps past the episode's last transition contribute nothing.
"""

from __future__ import annotations

import torch


def expected_sarsa_errors(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    mask: torch.Tensor,
    q_taken: torch.Tensor,
    q_expected: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """One-step expected-SARSA errors δ_t [B, T] (0 where ``mask`` is 0).

    reward, terminated, mask [B, T]; q_taken [B, T] = Q̄(s_t, a_t); q_expected [B, T+1] =
    E_π Q̄(s_t, ·) for every timestep (index T: the state after the last transition, so
    truncated episodes bootstrap).
    """
    not_term = 1.0 - terminated.float()
    return (reward + gamma * not_term * q_expected[:, 1:] - q_taken) * mask


def tree_backup_targets(
    td: torch.Tensor,
    q_taken: torch.Tensor,
    trace: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    tb_lambda: float,
    n_steps: int,
) -> torch.Tensor:
    """y_t = Q̄(s_t, a_t) + Σ_{k<n} (γλ)^k (Π_{l=1..k} c_{t+l}) δ_{t+k}  → [B, T].

    td [B, T] the errors δ (``expected_sarsa_errors``), q_taken [B, T] = Q̄(s_t, a_t),
    trace [B, T] = c_t the joint probability of the taken action under the current policy,
    mask [B, T] real transitions. A short loop over the n ≤ ~10 backup steps, each on whole
    [B, T] tensors.
    """
    if n_steps < 1:
        raise ValueError(f"tree backup needs n_steps >= 1, got {n_steps}")
    b, t = td.shape
    td = td * mask
    out = torch.zeros_like(td)
    term = td  # term_k[t] = (Π_{l=1..k} c_{t+l}) δ_{t+k}
    coef = 1.0
    pad = td.new_zeros(b, 1)
    for _ in range(n_steps):
        out = out + coef * term
        term = torch.cat([(term * trace)[:, 1:], pad], dim=1)  # shift one step: δ_{t+k+1}·c_{t+1}…
        coef *= gamma * tb_lambda
    return q_taken + out
