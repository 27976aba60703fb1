"""QPLEX (Wang et al., ICLR 2021): duplex dueling value decomposition on the replay path.

Per-agent GRU utilities are mixed by ``DuplexDuelingMixer`` (``macpo.nn.qplex_mixer``):
Q_tot = Σ_i Q_i' + Σ_i (λ_i(s, u) − 1) A_i', with state-dependent transforms and attention
weights λ > 0, so the agents' greedy actions are the greedy joint action (IGM) while Q_tot is not
restricted to monotonic mixtures. Targets: double-Q (the online agents pick the next greedy joint
action, the target agents and target mixer value it) with the ``td_lambda`` return (0: the
public code's one-step target). The sampler's weights apply through the shared loss template,
so every sampler needing only ``td`` / ``pi`` runs on it.
"""

from __future__ import annotations

import torch

from macpo.algos.base import LoopSettings, OptimiserSpec, PackedBatch
from macpo.algos.value_based import ValueDecomposition, ValueForward
from macpo.config.schema import QplexConfig
from macpo.envs.base import BatchedEnv
from macpo.nn.qplex_mixer import DuplexDuelingMixer
from macpo.replay.samplers.base import Sampler


class QPLEX(ValueDecomposition):
    provides = frozenset({"td", "pi"})
    config_class = QplexConfig
    preset = "qplex"

    def __init__(self, train_env: BatchedEnv, sampler: Sampler, loop: LoopSettings,
                 cfg: QplexConfig | None = None, **overrides) -> None:  # fmt: skip
        super().__init__(train_env, sampler, loop, cfg, **overrides)
        cfg, info = self.cfg, self.info
        self.optimiser_kind, self.optimiser_options = cfg.optimiser, dict(cfg.optimiser_options or {})
        self.mixer = DuplexDuelingMixer(
            info.n_agents, info.n_actions, info.state_shape, cfg.hypernet_embed, cfg.num_kernel,
            cfg.adv_hypernet_layers, cfg.adv_hypernet_embed, cfg.weighted_head,
        )  # fmt: skip
        self.add_target("agent")
        self.add_target("mixer")

    @classmethod
    def check_hparams(cls, cfg: QplexConfig) -> None:
        super().check_hparams(cfg)
        try:  # an optimiser torch does not have, or options it does not take, fail here
            OptimiserSpec([], cfg.lr, kind=cfg.optimiser, options=dict(cfg.optimiser_options or {}))
        except ValueError as error:
            raise ValueError(f"algo.optimiser: {error}") from None

    @staticmethod
    def greedy_values(q: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        """Each agent's best available utility V_i [.., N] from q [.., N, A] (detached).

        Gathered at the argmax so padded timesteps (no available action) stay finite.
        """
        best = ValueDecomposition.greedy_actions(q, avail)  # [.., N]
        return q.detach().gather(-1, best[..., None]).squeeze(-1)

    def forward_values(self, ep: PackedBatch) -> ValueForward:
        q = self.agent.forward_packed(ep.inputs, ep.steps)  # [R_obs, N, A]
        tr = ep.tr
        chosen = q.gather(-1, ep.actions[..., None]).squeeze(-1)[tr]  # [R, N]
        max_q = self.greedy_values(q[tr], ep.avail[tr])  # [R, N]
        q_tot = self.mixer(chosen[None], max_q[None], ep.taken[None], ep.state_tr.float()[None])[0]  # [R]
        return ValueForward(agent_qs=q, q_tot=q_tot)

    def targets(self, ep: PackedBatch, fwd: ValueForward) -> torch.Tensor:
        target_q = self.target_agent.forward_packed(ep.inputs, ep.steps)[ep.nxt]  # [R, N, A] next observations
        avail = ep.avail[ep.nxt]  # [R, N, A]
        greedy, target_chosen = self.greedy_target_values(fwd.agent_qs[ep.nxt], target_q, avail)  # [R, N] ×2
        target_max = self.greedy_values(target_q, avail)  # [R, N]
        state = ep.state[ep.nxt].float()  # [R, S]
        target_tot = self.target_mixer(target_chosen[None], target_max[None], greedy[None], state[None])[0]
        return self.lambda_returns(ep, target_tot)  # [R]
