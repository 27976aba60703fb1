"""FOP's mixing network (Zhang et al., ICML 2021, §4): IGO-consistent soft-value factorisation.

    Q_tot(s, a) = Σ_i [w_i(s) Q_i(τ, a_i) + V(s)/N] + Σ_i (λ_i(s, a) − 1) · sg[w_i(s)(Q_i − V_i)]

w_i(s) ≥ 0 are multi-head attention weights over agents (Qatten-style, heads summed),
λ_i(s, a) > 0 QPLEX-style joint-action weights, V_i = α log Σ exp(Q_i/α) the agents' soft
values and sg the stop-gradient of the public code. Attention keys: the public code reads each
agent's unit features out of the SMAC state; this suite's states are not always unit-structured
(predator-prey's is a grid), so each agent has a learned key per head instead. The squared
attention logits are returned as a regulariser (``attend_reg_coef`` in the public config),
averaged over the rows the mixer is given: the learner gives it real transitions only, where the
public code averages over its zero-padded batch, padding included.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class FOPMixer(nn.Module):
    def __init__(self, n_agents: int, n_actions: int, state_dim: int, embed_dim: int = 32,
                 hypernet_dim: int = 64, n_heads: int = 4, attend_reg_coef: float = 1e-3):  # fmt: skip
        super().__init__()
        self.n_agents, self.n_actions, self.embed_dim = n_agents, n_actions, embed_dim
        self.attend_reg_coef = attend_reg_coef
        self.selectors = nn.ModuleList(
            nn.Sequential(nn.Linear(state_dim, hypernet_dim), nn.ReLU(), nn.Linear(hypernet_dim, embed_dim, bias=False))
            for _ in range(n_heads)
        )
        self.agent_keys = nn.Parameter(torch.randn(n_heads, n_agents, embed_dim) / math.sqrt(embed_dim))
        self.lambda_scale = nn.ModuleList(nn.Linear(state_dim, 1) for _ in range(n_heads))
        self.lambda_agents = nn.ModuleList(nn.Linear(state_dim, n_agents) for _ in range(n_heads))
        self.lambda_actions = nn.ModuleList(
            nn.Linear(state_dim + n_agents * n_actions, n_agents) for _ in range(n_heads)
        )
        self.value = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))

    def attention(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """state [*, S] → weights w [*, N] (heads summed) and the logits' regulariser: Σ over heads of
        the squared logits' mean over every row in * and agent (a scalar)."""
        logits = torch.stack(
            [(sel(state)[..., None, :] * keys).sum(-1) for sel, keys in zip(self.selectors, self.agent_keys)], dim=-2
        ) / math.sqrt(self.embed_dim)  # [*, H, N]
        squared = logits.pow(2).reshape(-1, *logits.shape[-2:])  # [rows, H, N]
        reg = self.attend_reg_coef * squared.mean(dim=(0, 2)).sum()
        return torch.softmax(logits, dim=-1).sum(-2), reg

    def joint_action_weights(self, state: torch.Tensor, actions_onehot: torch.Tensor) -> torch.Tensor:
        """λ_i(s, a) > 0: state [*, S], actions_onehot [*, N, A] → [*, N]."""
        sa = torch.cat([state, actions_onehot.flatten(-2)], dim=-1)  # [*, S + N*A]
        lam = 0.0
        for scale, agents, acts in zip(self.lambda_scale, self.lambda_agents, self.lambda_actions):
            lam = lam + (scale(state).abs() + 1e-10) * torch.sigmoid(agents(state)) * torch.sigmoid(acts(sa))
        return lam

    def forward(self, agent_qs: torch.Tensor, agent_vs: torch.Tensor, state: torch.Tensor,
                actions_onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """agent_qs, agent_vs [*, N], state [*, S], actions_onehot [*, N, A] → Q_tot [*], reg (* = rows R, or B, T)."""
        w, reg = self.attention(state)
        w = w + 1e-10  # [*, N]
        v_tot = (w * agent_qs).sum(-1) + self.value(state).squeeze(-1)  # [*]
        adv = (w * (agent_qs - agent_vs)).detach()  # [*, N]
        lam = self.joint_action_weights(state, actions_onehot)  # [*, N]
        return v_tot + ((lam - 1.0) * adv).sum(-1), reg
