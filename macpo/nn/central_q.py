"""The unrestricted central estimate Q*(s, u) used by Weighted QMIX and MAC-PO.

A separate agent network gives per-agent utilities; a feed-forward mixer with no monotonicity
constraint maps them and the state to Q*, plus a state-value head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from macpo.nn import kernels
from macpo.nn.agent import RNNAgent
from macpo.nn.kernels.matmul import compute_dtype
from macpo.nn.kernels.mixers import _CentralMLP, central_rows


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
        """agent_qs [*, N], state [*, S] (float or a storage dtype) → Q* [*] (* = B, T or packed rows R).

        On the CPU the rows run through ``_CentralMLP`` a chunk at a time (with or without autograd;
        ``macpo.nn.kernels``), elsewhere and with ``nn.kernels=torch`` through ``_rows``; both read the
        state in one matmul for the first layers of both heads (``net``'s first layer split into its
        agent-utility and state columns, so [agent_qs ⊕ state] is never built).
        """
        lead, n = agent_qs.shape[:-1], agent_qs.shape[-1]
        qs, s = agent_qs.reshape(-1, n), state.reshape(-1, state.shape[-1])  # [BT, N], [BT, S]
        first, v_first = self.net[0], self.value[0]
        w_s = torch.cat([first.weight[:, n:], v_first.weight])  # [2E, S]
        b_s = torch.cat([first.bias, v_first.bias])  # [2E]
        if qs.device.type != "cpu" or not kernels.enabled():  # the layers as written (autograd)
            return self._rows(qs, s.to(w_s.dtype), w_s, b_s).view(lead)
        cd = compute_dtype(first.weight)
        layers = (self.net[2], self.net[4], self.net[6], self.value[2])
        weights = (w_s, b_s, first.weight[:, :n], *(p for layer in layers for p in (layer.weight, layer.bias)))
        with torch.autocast("cpu", enabled=False):
            if torch.is_grad_enabled() and (qs.requires_grad or any(w.requires_grad for w in weights)):
                q = _CentralMLP.apply(qs, s, *weights, cd)
            else:
                q = central_rows(qs, s, [w.to(cd).contiguous() for w in weights], cd)
        return q.view(lead)

    def _rows(self, qs: torch.Tensor, s: torch.Tensor, w_s: torch.Tensor, b_s: torch.Tensor) -> torch.Tensor:
        """qs [M, N], s [M, S] → Q* [M], written out (what ``_CentralMLP`` computes)."""
        n, first = qs.shape[-1], self.net[0]
        y_net, y_v = F.linear(s, w_s, b_s).split([first.out_features, self.value[0].out_features], dim=-1)
        x = F.relu(y_net + F.linear(qs, first.weight[:, :n]))  # [M, E]
        for layer in (self.net[2], self.net[4]):
            x = F.relu(layer(x))
        return (self.net[6](x) + self.value[2](F.relu(y_v))).squeeze(-1)


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
