"""VDAC-mix's critic maths (Su et al., AAAI 2021, §4.2).

Each agent's network has a policy head and a local value head V_i(τ_i); QMIX's monotonic
mixer maps the V_i and the state to V_tot(s) (∂V_tot/∂V_i ≥ 0, so raising a local value never
lowers the joint one). The critic regresses V_tot onto λ-returns of the team reward, and every
agent's policy gradient uses the same joint advantage A_t = G^λ_t − V_tot(s_t).
"""

from __future__ import annotations

import torch
from torch import nn

from macpo.nn.agent import RNNAgent
from macpo.nn.packing import EpisodePacking


def split_actor_critic(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One network output [..., A + 1] → policy logits [..., A] and the local value V_i [...].

    (A linear layer with A + 1 units is the policy head and the value head side by side.)
    """
    return out[..., :-1], out[..., -1]


class ActorCriticAgent(nn.Module):
    """A shared recurrent agent with a policy head and a local value head (VDAC's agents).

    ``forward`` gives the policy logits only (what a Collector's policy samples from);
    ``heads`` gives logits and values for learning.
    """

    def __init__(self, input_dim: int, n_actions: int, hidden_dim: int = 64):
        super().__init__()
        self.body = RNNAgent(input_dim, n_actions + 1, hidden_dim)

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs [B, T, N, I] → logits [B, T, N, A], hidden [1, B*N, H]."""
        out, hidden = self.body(inputs, hidden)
        return split_actor_critic(out)[0], hidden

    def heads(self, inputs: torch.Tensor, step_sizes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Packed observation rows [R, N, I] (``RNNAgent.forward_packed``) → logits [R, N, A], values V_i [R, N]."""
        return split_actor_critic(self.body.forward_packed(inputs, step_sizes))


def vdac_advantages(
    packing: EpisodePacking,
    reward: torch.Tensor,
    terminated: torch.Tensor,
    v_tot: torch.Tensor,
    next_v_tot: torch.Tensor,
    gamma: float,
    td_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """λ-return targets G^λ [R] and advantages A = G^λ − V_tot [R] (both detached), on ``packing``'s
    transition rows.

    reward, terminated [R]; v_tot [R] the mixed value of each transition's state, next_v_tot [R]
    that of its next observation (the state after an episode's last transition too, so truncated
    episodes bootstrap from it).
    """
    targets = packing.td_lambda_targets(reward, terminated, next_v_tot.detach(), gamma, td_lambda)  # [R]
    return targets, targets - v_tot.detach()
