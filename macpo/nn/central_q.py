"""The unrestricted central estimate Q*(s, u) used by Weighted QMIX and MAC-PO.

A separate agent network gives per-agent utilities; a feed-forward mixer with no monotonicity
constraint maps them and the state to Q*, plus a state-value head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from macpo.nn.agent import RNNAgent
from macpo.nn.fast_linear import linear


class CentralMixer(nn.Module):
    """[agent utilities ⊕ state] → embed → embed → embed → 1, plus V(state): unconstrained."""

    def __init__(self, n_agents: int, state_dim: int, embed_dim: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_agents + state_dim, embed_dim), nn.ReLU(),
            nn.Linear(embed_dim, embed_dim), nn.ReLU(),
            nn.Linear(embed_dim, embed_dim), nn.ReLU(),
            nn.Linear(embed_dim, 1),
        )  # fmt: skip
        self.value = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))

    def forward(self, agent_qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """agent_qs [*, N], state [*, S] → Q* [*] (* = B, T or packed rows R).

        The first layers of both heads read the state: one matmul gives the state's part of both
        (``net``'s first layer is split into its agent-utility and state columns, so the
        [agent_qs ⊕ state] concatenation is never built). Without autograd the rows run in
        chunks, so the [rows, embed] activations stay in cache and are never all held at once.
        """
        lead, n = agent_qs.shape[:-1], agent_qs.shape[-1]
        qs, s = agent_qs.reshape(-1, n), state.reshape(-1, state.shape[-1])  # [BT, N], [BT, S]
        if torch.is_grad_enabled() or qs.shape[0] <= self.NO_GRAD_ROWS:
            return self._rows(qs, s).view(lead)
        out = torch.cat([self._rows(qs[i : i + self.NO_GRAD_ROWS], s[i : i + self.NO_GRAD_ROWS])
                         for i in range(0, qs.shape[0], self.NO_GRAD_ROWS)])  # fmt: skip
        return out.view(lead)

    NO_GRAD_ROWS = 2048  # rows per chunk without autograd (the target network)

    def _rows(self, qs: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """qs [M, N], s [M, S] → Q* [M]."""
        n, first, v_first = qs.shape[-1], self.net[0], self.value[0]
        w = torch.cat([first.weight[:, n:], v_first.weight])  # [2E, S]
        b = torch.cat([first.bias, v_first.bias])
        y = linear(s, w, b)  # [M, 2E]: net's first layer without the utilities, value's first layer
        y_net, y_v = y.split([first.out_features, v_first.out_features], dim=-1)
        x = F.relu(y_net + linear(qs, first.weight[:, :n]))  # [M, E]
        for layer in (self.net[2], self.net[4]):
            x = F.relu(linear(x, layer.weight, layer.bias))
        head = self.net[6]
        q = F.linear(x, head.weight, head.bias) + F.linear(F.relu(y_v), self.value[2].weight, self.value[2].bias)
        return q.squeeze(-1)


class CentralQ(nn.Module):
    """Q*(s, u) for any joint action u: central agent utilities gathered at u, then mixed."""

    def __init__(self, input_dim: int, n_agents: int, n_actions: int, state_dim: int,
                 agent_hidden_dim: int = 64, embed_dim: int = 256):  # fmt: skip
        super().__init__()
        self.agent = RNNAgent(input_dim, n_actions, agent_hidden_dim)
        self.mixer = CentralMixer(n_agents, state_dim, embed_dim)

    def utilities(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs [B, T, N, I] → per-agent, per-action utilities [B, T, N, A]."""
        return self.agent(inputs)[0]

    def utilities_packed(self, inputs: torch.Tensor, step_sizes: list[int]) -> torch.Tensor:
        """Packed observation rows [R, N, I] → utilities [R, N, A] (see ``RNNAgent.forward_packed``)."""
        return self.agent.forward_packed(inputs, step_sizes)

    def value(self, utilities: torch.Tensor, actions: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Q* at joint actions [*, N] given utilities [*, N, A] and state [*, S] → [*] (e.g. * = B, T or rows)."""
        chosen = utilities.gather(-1, actions[..., None]).squeeze(-1)  # [B, T, N]
        return self.mixer(chosen, state)
