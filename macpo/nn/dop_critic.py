"""DOP's linearly decomposed critic: Q_tot(s, a) = Σ_i k_i(s) Q_i(s, a_i) + b(s), k_i ≥ 0.

Wang et al. (ICLR 2021), §3: a linear decomposition makes the decomposed policy gradient
Σ_i k_i(s) ∇ log π_i(a_i) [Q_i(s, a_i) − Σ_a π_i(a) Q_i(s, a)] unbiased and lets the critic
learn off-policy. Per-agent critics are feed-forward on the state, the agent's observation
and its id, with a dueling head (the authors' public code); the mixing weights k_i(s) come
from QMIX-style hypernetworks, made non-negative and normalised to sum to 1 over agents (as
in the public code), and b(s) is a state-value network (the paper's bias term).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def critic_inputs(state: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """state [*, S], obs [*, N, O] → per-agent critic inputs [*, N, S + O + N] (in obs's dtype)."""
    *lead, n, _ = obs.shape
    ids = torch.eye(n, device=obs.device, dtype=obs.dtype).expand(*lead, n, n)  # [*, N, N]
    return torch.cat([state[..., None, :].expand(*lead, n, state.shape[-1]).to(obs.dtype), obs, ids], dim=-1)


class AgentCritic(nn.Module):
    """fc → ReLU → fc → ReLU → V + A: Q_i(s, ·) of one agent's actions, shared by all agents."""

    def __init__(self, input_dim: int, n_actions: int, hidden_dim: int = 256):
        super().__init__()
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.value = nn.Linear(hidden_dim, 1)
        self.advantage = nn.Linear(hidden_dim, n_actions)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs [*, N, I] → Q_i [*, N, A]."""
        h = F.relu(self.fc2(F.relu(self.fc1(inputs))))
        return self.value(h) + self.advantage(h)


class LinearMixer(nn.Module):
    """Q_tot = Σ_i k_i(s) Q_i + b(s) with k(s) ≥ 0, Σ_i k_i(s) = 1."""

    def __init__(self, n_agents: int, state_dim: int, embed_dim: int = 32):
        super().__init__()
        self.n_agents, self.embed_dim = n_agents, embed_dim
        self.hyper_w1 = nn.Linear(state_dim, n_agents * embed_dim)
        self.hyper_w2 = nn.Linear(state_dim, embed_dim)
        self.bias = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))

    def k(self, state: torch.Tensor) -> torch.Tensor:
        """state [*, S] → the agents' non-negative credit weights k [*, N] (sum 1 over N)."""
        w1 = self.hyper_w1(state).abs().unflatten(-1, (self.n_agents, self.embed_dim))  # [*, N, E]
        w2 = self.hyper_w2(state).abs()  # [*, E]
        k = (w1 * w2[..., None, :]).sum(-1) + 1e-8  # [*, N]
        return k / k.sum(-1, keepdim=True)

    def forward(self, agent_qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """agent_qs [*, N], state [*, S] → Q_tot [*] (* = transition rows R, or B, T)."""
        return (self.k(state) * agent_qs).sum(-1) + self.bias(state).squeeze(-1)


def decomposed_advantages(q: torch.Tensor, probs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """DOP's per-agent advantage Q_i(s, a_i) − Σ_a π_i(a) Q_i(s, a).

    q [*, N, A] agent critics, probs [*, N, A] current policy, actions [*, N] → [*, N].
    """
    taken = q.gather(-1, actions[..., None]).squeeze(-1)  # [*, N]
    return taken - (probs * q).sum(-1)
