"""The per-agent recurrent utility network, shared by all agents (parameter sharing)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from macpo.nn.fused_gru import FusedGRU


def agent_inputs(obs: torch.Tensor, last_actions: torch.Tensor, n_actions: int,
                 dtype: torch.dtype | None = None) -> torch.Tensor:  # fmt: skip
    """The agent network's input: obs ⊕ last action one-hot ⊕ agent id, for any rows of observations.

    obs [*, N, O] (any dtype that holds it exactly), last_actions [*, N] long (−1 where there is no
    last action: an episode's first step) → [*, N, O + A + N] in ``dtype`` (default obs's). The one
    builder: the learners call it on packed observation rows (``EpisodePacking.agent_inputs``), the
    acting policies on one step of a batch of envs. Written in place (a concatenation is a copy too).
    """
    *lead, n, o_dim = obs.shape
    dtype = dtype or obs.dtype
    out = torch.empty(*lead, n, o_dim + n_actions + n, dtype=dtype, device=obs.device)  # [*, N, O+A+N]
    out[..., :o_dim] = obs
    last = out[..., o_dim : o_dim + n_actions]  # [*, N, A] last action one-hot
    last.zero_()
    last.scatter_(-1, last_actions.clamp_min(0)[..., None], 1)
    last.masked_fill_(last_actions[..., None] < 0, 0)
    out[..., o_dim + n_actions :] = torch.eye(n, device=obs.device, dtype=dtype)  # agent ids
    return out


class RNNAgent(nn.Module):
    """fc → ReLU → GRU → fc: Q-values of one agent's actions from its observation history.

    Learner updates call ``forward_packed`` on a packed batch: the GRU kernel walks it with fc1 and
    fc2 fused in (``macpo.nn.kernels.gru``), which is what makes an update fast. Acting calls
    ``forward`` on one step of every env with a carried hidden state. The GRU is a ``FusedGRU``
    (``nn.GRU``'s parameters and ``state_dict``); with ``nn.kernels=torch`` both run ``nn.Linear``
    and ``nn.GRU`` layers.
    """

    def __init__(self, input_dim: int, n_actions: int, hidden_dim: int = 64, q_clamp: tuple | None = None):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.rnn = FusedGRU(hidden_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, n_actions)
        self.q_clamp = tuple(q_clamp) if q_clamp is not None else None

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs [B, T, N, I], hidden [1, B*N, H] or None → q [B, T, N, A], hidden [1, B*N, H]."""
        b, t, n, i = inputs.shape
        # ReLU in place on fc1's 2-D output (in place on a view would make autograd copy the whole tensor)
        x = F.relu(self.fc1(inputs.reshape(b * t * n, i)), inplace=True).view(b, t, n, -1)  # [B, T, N, H]
        h_seq, h_last = self.rnn(x.transpose(0, 1), hidden)  # [T, B, N, H] (a view of [B, T, N, H]), [1, B*N, H]
        q = self.fc2(h_seq.transpose(0, 1))  # [B, T, N, A]
        if self.q_clamp is not None:
            q = q.clamp(*self.q_clamp)
        return q, h_last

    def forward_packed(self, inputs: torch.Tensor, step_sizes: list[int]) -> torch.Tensor:
        """Q-values on a packed episode batch (``macpo.nn.packing``), from a zero hidden state.

        inputs [R, N, I] (observation rows, time-major, ``step_sizes[t]`` episodes at step t; any
        dtype that holds them exactly, e.g. uint8 storage, cast to the weights' dtype a chunk at a time)
        → q [R, N, A]; each of an episode's N agents is its own sequence of the GRU.
        """
        r, n, i = inputs.shape
        # fc1 → ReLU → GRU → fc2 in one chunked walk (``FusedGRU.packed`` with fc_in/fc_out)
        q = self.rnn.packed(
            inputs.reshape(r * n, i),
            [m * n for m in step_sizes],
            fc_in=(self.fc1.weight, self.fc1.bias),
            fc_out=(self.fc2.weight, self.fc2.bias),
        )
        q = q.view(r, n, -1)  # [R, N, A]
        if self.q_clamp is not None:
            q = q.clamp(*self.q_clamp)
        return q
