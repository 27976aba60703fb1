"""DOP's off-policy critic target: n-step tree backup over a decomposed critic.

Wang et al. (ICLR 2021), "DOP: Off-policy multi-agent decomposed policy gradients", §4.1:
for replayed episodes collected by older policies, the critic regresses onto

    y_t = Q̄(s_t, a_t) + Σ_{k=0}^{n-1} (γλ)^k (Π_{l=1}^{k} c_{t+l}) δ_{t+k},
    δ_t = r_t + γ(1 − d_t) E_{a'∼π} Q̄(s_{t+1}, a') − Q̄(s_t, a_t),

with Q̄ the target critic, c_t = Π_i π_i(a_t^i | τ_t^i) the current joint policy's probability
of the replayed joint action (the tree-backup trace: no importance ratio, so no variance
blow-up) and λ the trace decay. Steps past the episode's last transition contribute nothing.

Both functions read transition rows of a packed batch ([R], ``macpo.nn.packing``).
"""

from __future__ import annotations

import torch

from macpo.nn.packing import EpisodePacking


def expected_sarsa_errors(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    q_taken: torch.Tensor,
    q_next_expected: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """One-step expected-SARSA errors δ_t = r_t + γ(1 − d_t) E_π Q̄(s_{t+1}, ·) − Q̄(s_t, a_t) [R].

    reward, terminated, q_taken = Q̄(s_t, a_t) [R]; q_next_expected [R] = E_π Q̄ at each
    transition's next observation (the state after an episode's last transition too, so truncated
    episodes bootstrap).
    """
    not_term = 1.0 - terminated.to(q_next_expected.dtype)
    return reward + gamma * not_term * q_next_expected - q_taken


def tree_backup_targets(
    packing: EpisodePacking,
    td: torch.Tensor,
    q_taken: torch.Tensor,
    trace: torch.Tensor,
    gamma: float,
    tb_lambda: float,
    n_steps: int,
) -> torch.Tensor:
    """y_t = Q̄(s_t, a_t) + Σ_{k<n} (γλ)^k (Π_{l=1..k} c_{t+l}) δ_{t+k}  → [R].

    td [R] the errors δ (``expected_sarsa_errors``), q_taken [R] = Q̄(s_t, a_t), trace [R] = c_t the
    joint probability of the taken action under the current policy, all on ``packing``'s transition
    rows. A short loop over the n ≤ ~10 backup steps, each shifting every row to the same episode's
    next transition (``packing.next_trans``; nothing after an episode's last).
    """
    if n_steps < 1:
        raise ValueError(f"tree backup needs n_steps >= 1, got {n_steps}")
    has_next = packing.next_trans >= 0  # [R]
    nxt = packing.next_trans.clamp_min(0)  # [R]
    out = torch.zeros_like(td)
    term = td  # term_k[t] = (Π_{l=1..k} c_{t+l}) δ_{t+k}
    coef = 1.0
    for _ in range(n_steps):
        out = out + coef * term
        term = torch.where(has_next, (term * trace)[nxt], 0.0)  # shift one step: δ_{t+k+1}·c_{t+1}…
        coef *= gamma * tb_lambda
    return q_taken + out
