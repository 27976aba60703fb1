"""Padded [B, T] forms of the learners' row computations, for tests.

Every learner reads a packed batch (``macpo.nn.packing``): returns and network inputs are computed
on transition and observation rows. Many test cases read better as padded episodes [B, T] with a
mask, so:

- the adapters (``td_lambda_targets``, ``entropy_regularised_targets``, ``vdac_advantages``,
  ``expected_sarsa_errors``, ``tree_backup_targets``) pack such a case, call the library's row
  function and scatter the result back to [B, T] (0 at padding);
- ``reference_td_lambda_targets`` and ``reference_agent_inputs`` are those computations as they were
  written over the padded batch before every learner was packed: oracles, independent of the
  library's code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from macpo.nn import soft_targets, tree_backup, vdac
from macpo.nn.packing import EpisodePacking


# ---- oracles: the padded computations -----------------------------------------------------------
def reference_td_lambda_targets(reward, terminated, mask, next_values, gamma, td_lambda):
    """λ-returns G_t = r_t + γ(1 − term_t)[(1 − λ) V_{t+1} + λ G_{t+1}] over padded episodes.

    reward, terminated, mask [B, T]; next_values [B, T+1] (the value of every timestep). Where step
    t+1 is not a real transition, G_{t+1} is replaced by V_{t+1}. Returns [B, T].
    """
    b, t = reward.shape
    not_term = 1.0 - terminated.to(reward.dtype)
    out = torch.empty_like(reward)
    g_next = next_values[:, t]  # [B]
    for i in range(t - 1, -1, -1):
        v_next = next_values[:, i + 1]
        valid_next = mask[:, i + 1] if i + 1 < t else torch.zeros_like(v_next)
        g_next = torch.where(valid_next > 0, g_next, v_next)
        g = reward[:, i] + gamma * not_term[:, i] * ((1 - td_lambda) * v_next + td_lambda * g_next)
        out[:, i] = g
        g_next = g
    return out


def reference_agent_inputs(obs, actions, n_actions):
    """obs [B, T, N, O], actions [B, T, N] long (taken at each t) → obs ⊕ last action one-hot ⊕ agent id
    [B, T, N, O + A + N]; the last action at t = 0 is all zeros."""
    b, t, n, _ = obs.shape
    last = torch.zeros(b, t, n, n_actions, device=obs.device, dtype=obs.dtype)  # [B, T, N, A]
    last[:, 1:] = F.one_hot(actions[:, :-1].long(), n_actions).to(obs.dtype)
    ids = torch.eye(n, device=obs.device, dtype=obs.dtype).expand(b, t, n, n)  # [B, T, N, N]
    return torch.cat([obs, last, ids], dim=-1)


# ---- adapters: the library's row functions on padded cases -------------------------------------
def packing_of(mask: torch.Tensor) -> EpisodePacking:
    """The packing of padded episodes whose real transitions are ``mask`` [B, T] (a prefix per row)."""
    return EpisodePacking(torch.cat([mask.bool(), mask.new_zeros(mask.shape[0], 1).bool()], dim=1))


def rows(pk: EpisodePacking, x: torch.Tensor) -> torch.Tensor:
    """Padded transitions [B, T, ...] → transition rows [R, ...]."""
    return x.flatten(0, 1)[pk.trans_pad_index]


def next_rows(pk: EpisodePacking, x: torch.Tensor) -> torch.Tensor:
    """Values of every timestep [B, T+1, ...] → those of each transition's next timestep [R, ...]."""
    return rows(pk, x[:, 1:])


def td_lambda_targets(reward, terminated, mask, next_values, gamma, td_lambda):
    pk = packing_of(mask)
    got = pk.td_lambda_targets(rows(pk, reward), rows(pk, terminated), next_rows(pk, next_values), gamma, td_lambda)
    return pk.unpack(got)


def entropy_regularised_targets(reward, terminated, mask, next_q_tot, next_log_pi, alpha, gamma, td_lambda):
    pk = packing_of(mask)
    got = soft_targets.entropy_regularised_targets(pk, rows(pk, reward), rows(pk, terminated),
                                                   next_rows(pk, next_q_tot), next_rows(pk, next_log_pi),
                                                   alpha, gamma, td_lambda)  # fmt: skip
    return pk.unpack(got)


def vdac_advantages(reward, terminated, mask, v_tot, gamma, td_lambda):
    pk = packing_of(mask)
    targets, adv = vdac.vdac_advantages(pk, rows(pk, reward), rows(pk, terminated), rows(pk, v_tot[:, :-1]),
                                        next_rows(pk, v_tot), gamma, td_lambda)  # fmt: skip
    return pk.unpack(targets), pk.unpack(adv)


def expected_sarsa_errors(reward, terminated, mask, q_taken, q_expected, gamma):
    pk = packing_of(mask)
    got = tree_backup.expected_sarsa_errors(rows(pk, reward), rows(pk, terminated), rows(pk, q_taken),
                                            next_rows(pk, q_expected), gamma)  # fmt: skip
    return pk.unpack(got)


def tree_backup_targets(td, q_taken, trace, mask, gamma, tb_lambda, n_steps):
    pk = packing_of(mask)
    got = tree_backup.tree_backup_targets(pk, rows(pk, td), rows(pk, q_taken), rows(pk, trace), gamma, tb_lambda,
                                          n_steps)  # fmt: skip
    return pk.unpack(got)
