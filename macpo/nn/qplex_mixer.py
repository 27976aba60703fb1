"""QPLEX's duplex dueling mixer (Wang et al., ICLR 2021): Q_tot from per-agent utilities, IGM by construction.

Each agent's utility Q_i(τ_i, u_i) and its greedy value V_i = max_u Q_i are first transformed by
state-conditioned weights w_i(s) > 0 and biases b_i(s) (``weighted_head``):
Q_i' = w_i Q_i + b_i, V_i' = w_i V_i + b_i, so the advantage A_i' = Q_i' − V_i' = w_i (Q_i − V_i) ≤ 0,
zero exactly at the agent's greedy action. The joint value is

    Q_tot = Σ_i Q_i' + Σ_i (λ_i(s, u) − 1) · A_i'    ( = Σ_i V_i' + Σ_i λ_i A_i' )

with the attention weights λ_i(s, u) > 0 of ``AdvantageWeights``. Because every A_i' ≤ 0 and
λ_i > 0, the advantage sum is ≤ 0 and equals 0 when every agent plays its greedy action: the
greedy joint action maximises Q_tot (Individual-Global-Max). As in the public implementation, the
advantage inside the λ-term is taken without gradient (its ``is_stop_gradient``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _mlp(in_dim: int, out_dim: int, layers: int, embed: int) -> nn.Module:
    """``layers`` linear layers (1, 2 or 3) with ReLU between them and width ``embed``."""
    if layers not in (1, 2, 3):
        raise ValueError(f"adv_hypernet_layers must be 1, 2 or 3, got {layers}")
    dims = [in_dim] + [embed] * (layers - 1) + [out_dim]
    mods: list[nn.Module] = []
    for i in range(layers):
        mods.append(nn.Linear(dims[i], dims[i + 1]))
        if i < layers - 1:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


class AdvantageWeights(nn.Module):
    """λ_i(s, u) > 0 for each agent: a K-head attention over the state and the joint action,

    λ_i = Σ_k (|key_k(s)| + 1e-10) · σ(agents_k(s))_i · σ(action_k(s ⊕ onehot(u)))_i.
    """

    def __init__(self, n_agents: int, n_actions: int, state_dim: int, num_kernel: int = 4,
                 layers: int = 1, embed: int = 64):  # fmt: skip
        super().__init__()
        if num_kernel < 1:
            raise ValueError(f"num_kernel must be >= 1, got {num_kernel}")
        self.n_agents, self.n_actions = n_agents, n_actions
        self.keys = nn.ModuleList(_mlp(state_dim, 1, layers, embed) for _ in range(num_kernel))
        self.agents = nn.ModuleList(_mlp(state_dim, n_agents, layers, embed) for _ in range(num_kernel))
        sa_dim = state_dim + n_agents * n_actions
        self.actions = nn.ModuleList(_mlp(sa_dim, n_agents, layers, embed) for _ in range(num_kernel))

    def forward(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """state [M, S], actions [M, N] long → λ [M, N]."""
        onehot = F.one_hot(actions, self.n_actions).to(state.dtype).flatten(1)  # [M, N*A]
        state_action = torch.cat([state, onehot], dim=-1)  # [M, S + N*A]
        lam = 0.0
        for key, agents, action in zip(self.keys, self.agents, self.actions):
            lam = lam + (key(state).abs() + 1e-10) * torch.sigmoid(agents(state)) * torch.sigmoid(action(state_action))
        return lam  # [M, N]


class DuplexDuelingMixer(nn.Module):
    """Q_tot(s, u) from agent utilities Q_i, their greedy values V_i, the joint action u and the state."""

    def __init__(
        self,
        n_agents: int,
        n_actions: int,
        state_dim: int,
        hypernet_embed: int = 64,
        num_kernel: int = 4,
        adv_hypernet_layers: int = 1,
        adv_hypernet_embed: int = 64,
        weighted_head: bool = True,
    ):
        super().__init__()
        self.n_agents, self.weighted_head = n_agents, weighted_head
        self.hyper_w = _mlp(state_dim, n_agents, 2, hypernet_embed)  # w_i(s) (made positive in ``parts``)
        self.hyper_b = _mlp(state_dim, n_agents, 2, hypernet_embed)  # b_i(s)
        self.lambdas = AdvantageWeights(
            n_agents, n_actions, state_dim, num_kernel, adv_hypernet_layers, adv_hypernet_embed
        )

    def parts(
        self, agent_qs: torch.Tensor, max_qs: torch.Tensor, actions: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The pieces of Q_tot: (Σ_i Q_i' [B, T], A' [B, T, N], λ [B, T, N]).

        agent_qs, max_qs [B, T, N] (utility of the joint action's component and the agent's greedy
        value), actions [B, T, N] long, state [B, T, S].
        """
        b, t, n = agent_qs.shape
        s = state.reshape(b * t, -1)  # [BT, S]
        q, v = agent_qs.reshape(b * t, n), max_qs.reshape(b * t, n)  # [BT, N]
        if self.weighted_head:
            w = self.hyper_w(s).abs() + 1e-10  # [BT, N] > 0
            bias = self.hyper_b(s)  # [BT, N]
            q, v = w * q + bias, w * v + bias
        adv = (q - v).detach()  # [BT, N] ≤ 0, no gradient through the advantage
        lam = self.lambdas(s, actions.reshape(b * t, n))  # [BT, N] > 0
        return q.sum(-1).view(b, t), adv.view(b, t, n), lam.view(b, t, n)

    def forward(self, agent_qs: torch.Tensor, max_qs: torch.Tensor, actions: torch.Tensor,
                state: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """Q_tot [B, T] = Σ_i Q_i' + Σ_i (λ_i − 1) A_i' (shapes as in ``parts``)."""
        q_sum, adv, lam = self.parts(agent_qs, max_qs, actions, state)
        return q_sum + ((lam - 1.0) * adv).sum(-1)
