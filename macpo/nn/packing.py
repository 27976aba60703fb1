"""Packed episode batches: a learner update pays only for real timesteps.

A replay batch is padded to its longest episode ([B, T+1, ...]); on SMAC most of it is padding
(MMM2: mean length ≈ 26 of up to 181). ``EpisodePacking`` orders the episodes longest first and
lays their timesteps out time-major with, at each step t, only the episodes still running — the
layout of PyTorch's ``PackedSequence``, so the GRU walks a shrinking batch — and every
per-timestep network (mixers, central Q*), the λ-returns and the loss then run on real rows only.

Two row sets, both packed time-major (step t's rows are a prefix of step t−1's episodes):

- *observation rows*: t = 0 .. L_b for an episode of L_b transitions (the final observation
  included; the target networks need its value), R_obs = Σ (L_b + 1) rows;
- *transition rows*: t = 0 .. L_b − 1 (the real transitions; losses and sampler signals),
  R = Σ L_b rows.

``pack`` gathers either row set from padded tensors (in their storage dtype: cast after packing,
so no full-batch float copy is made) and ``unpack`` scatters transition rows back to [B, T] for
the replay sampler's interface. Every learner reads its batch this way (``macpo.algos.base.
PackedBatch``); the λ-return recursion below is the suite's one TD(λ), and ``next_trans`` links a
transition row to the same episode's next one for the returns that look further ahead (DOP's tree
backup).
"""

from __future__ import annotations

import torch

from macpo.nn.agent import agent_inputs


class EpisodePacking:
    """Row indices of a batch's real timesteps, from its ``filled`` mask [B, T+1] (a prefix per episode).

    One host sync (the lengths), made once per update.
    """

    def __init__(self, filled: torch.Tensor) -> None:
        b, t1 = filled.shape
        dev = filled.device
        self.batch, self.t_pad = b, t1 - 1  # B episodes, T padded transitions
        lengths = filled.sum(1)  # [B] transitions per episode
        self.order = torch.sort(lengths, descending=True, stable=True).indices  # [B] longest first
        sorted_len = lengths[self.order]  # [B]
        lens = sorted_len.tolist()  # the one host sync
        n_obs_steps = (lens[0] + 1) if b else 0
        self.lengths = lengths
        # step sizes: episodes with an observation (transition) at step t
        self.obs_steps = [sum(1 for v in lens if v >= t) for t in range(n_obs_steps)]  # [T_obs]
        self.trans_steps = [m for m in self.obs_steps[1:]]  # #{L_b > t} = #{L_b ≥ t+1}, [T_obs − 1]
        time = torch.arange(n_obs_steps, device=dev)[:, None]  # [T_obs, 1]
        obs_valid = time <= sorted_len[None, :]  # [T_obs, B] time-major, sorted episodes
        trans_valid = time < sorted_len[None, :]  # [T_obs, B]
        flat = self.order[None, :] * t1 + time  # [T_obs, B] index into a padded [B·(T+1)] view
        self.obs_index = flat[obs_valid]  # [R_obs] padded flat index of each observation row
        self.trans_index = flat[trans_valid]  # [R] padded flat index of each transition row
        self.n_obs, self.n_trans = self.obs_index.numel(), self.trans_index.numel()
        # observation-row positions of each transition row (t) and of its next observation (t + 1)
        obs_row = torch.full((n_obs_steps, b), -1, dtype=torch.long, device=dev)  # [T_obs, B]
        obs_row[obs_valid] = torch.arange(self.n_obs, device=dev)
        self.trans_in_obs = obs_row[trans_valid]  # [R]
        self.next_in_obs = obs_row[1:][trans_valid[:-1]] if n_obs_steps > 1 else obs_row.new_empty(0)  # [R]
        # the same episode's transition row one step later, −1 after its last transition
        trans_row = torch.full((n_obs_steps + 1, b), -1, dtype=torch.long, device=dev)  # [T_obs + 1, B]
        trans_row[:-1][trans_valid] = torch.arange(self.n_trans, device=dev)
        self.next_trans = trans_row[1:][trans_valid]  # [R]
        self.first_obs = (time.expand(-1, b)[obs_valid] == 0)  # [R_obs] rows at t = 0
        # per-transition-row episode (in the batch's order) and padded [B, T] flat index
        episode = self.order[None, :].expand(n_obs_steps, b)  # [T_obs, B]
        self.trans_episode = episode[trans_valid]  # [R]
        self.trans_pad_index = (episode * self.t_pad + time)[trans_valid]  # [R] into [B·T]

    # ---- gathering ------------------------------------------------------------------------------
    def pack_obs(self, x: torch.Tensor) -> torch.Tensor:
        """Padded [B, T+1, ...] → observation rows [R_obs, ...] (same dtype)."""
        return x.flatten(0, 1)[self.obs_index]

    def pack_trans(self, x: torch.Tensor) -> torch.Tensor:
        """Padded [B, T+1, ...] → transition rows [R, ...] (same dtype)."""
        return x.flatten(0, 1)[self.trans_index]

    def unpack(self, rows: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """Transition rows [R, ...] → padded [B, T, ...] with ``fill`` where there is no transition."""
        out = rows.new_full((self.batch * self.t_pad, *rows.shape[1:]), fill)
        out[self.trans_pad_index] = rows
        return out.view(self.batch, self.t_pad, *rows.shape[1:])

    def pad_mask(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """[B, T] 1 where a transition is real."""
        return self.unpack(torch.ones(self.n_trans, dtype=dtype, device=self.obs_index.device))

    # ---- agent inputs ---------------------------------------------------------------------------
    def agent_inputs(self, obs: torch.Tensor, actions: torch.Tensor, n_actions: int,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:  # fmt: skip
        """Agent-network inputs on observation rows (``macpo.nn.agent.agent_inputs``): obs [B, T+1, N, O]
        (any storage dtype), actions [B, T+1, N] → [R_obs, N, O + A + N] in ``dtype``; the last
        action of a row is the episode's action one step earlier, none at t = 0."""
        last = actions.flatten(0, 1)[(self.obs_index - 1).clamp_min(0)].long()  # [R_obs, N]
        last[self.first_obs] = -1
        return agent_inputs(self.pack_obs(obs), last, n_actions, dtype)

    # ---- λ-returns ------------------------------------------------------------------------------
    def td_lambda_targets(self, reward: torch.Tensor, terminated: torch.Tensor, next_values: torch.Tensor,
                          gamma: float, td_lambda: float) -> torch.Tensor:  # fmt: skip
        """λ-returns G_t = r_t + γ(1 − term_t)[(1 − λ) V_{t+1} + λ G_{t+1}] on transition rows: reward,
        terminated and next_values (V of each row's next observation) [R] → [R], in float32 or wider.

        Step t's rows are the first ``trans_steps[t]`` episodes; those that go on to step t+1 are
        its first ``trans_steps[t+1]``: where an episode's next step is not a transition (its last
        one: the episode ended, or was truncated) G_{t+1} is replaced by V_{t+1}, so truncated
        episodes bootstrap. The backward loop over time runs on each step's rows at once (a closed
        form via cumulative products is not cheaper at these lengths and is harder to read).
        """
        dt = torch.promote_types(next_values.dtype, torch.float32)
        r, v = reward.to(dt), next_values.to(dt)
        not_term = 1.0 - terminated.to(dt)
        out = torch.empty_like(v)
        steps = self.trans_steps
        offsets = [0]
        for m in steps:
            offsets.append(offsets[-1] + m)
        g_after = None  # the λ-returns of step t+1 [m_{t+1}]
        for t in range(len(steps) - 1, -1, -1):
            lo, hi = offsets[t], offsets[t + 1]
            v_next = v[lo:hi]
            g_next = v_next if g_after is None else torch.cat([g_after, v_next[g_after.shape[0] :]])
            g = r[lo:hi] + gamma * not_term[lo:hi] * ((1 - td_lambda) * v_next + td_lambda * g_next)
            out[lo:hi] = g
            g_after = g
        return out

    def masked_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of per-transition values [R] (the padded loss's masked mean)."""
        return x.sum() / max(self.n_trans, 1)
