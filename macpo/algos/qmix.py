"""QMIX (Rashid et al. 2018): per-agent GRU utilities mixed monotonically into Q_tot.

Double-Q, TD(λ) targets from target networks, per-timestep loss weights from the sampler
(the loss template is ``macpo.algos.value_based``).
"""

from __future__ import annotations

import torch

from macpo.algos.base import LoopSettings, PackedBatch
from macpo.algos.value_based import ValueDecomposition, ValueForward
from macpo.config.schema import QmixConfig
from macpo.envs.base import BatchedEnv
from macpo.nn.qmix_mixer import QMixer
from macpo.replay.samplers.base import Sampler


class QMIX(ValueDecomposition):
    provides = frozenset({"td", "pi"})
    config_class = QmixConfig
    preset = "qmix"

    def __init__(self, train_env: BatchedEnv, sampler: Sampler, loop: LoopSettings,
                 cfg: QmixConfig | None = None, **overrides) -> None:  # fmt: skip
        super().__init__(train_env, sampler, loop, cfg, **overrides)
        self.mixer = QMixer(self.info.n_agents, self.info.state_shape, self.cfg.mixer_embed_dim, self.cfg.hypernet_dim)
        self.add_target("agent")
        self.add_target("mixer")

    def forward_values(self, ep: PackedBatch) -> ValueForward:
        q = self.agent.forward_packed(ep.inputs, ep.steps)  # [R_obs, N, A]
        chosen = q.gather(-1, ep.actions[..., None]).squeeze(-1)[ep.tr]  # [R, N]
        return ValueForward(agent_qs=q, q_tot=self.mixer(chosen, ep.state_tr))  # q_tot [R]

    def targets(self, ep: PackedBatch, fwd: ValueForward) -> torch.Tensor:
        target_q = self.target_agent.forward_packed(ep.inputs, ep.steps)  # [R_obs, N, A]
        nxt = ep.nxt  # only the next observations' values are read
        _, target_max = self.greedy_target_values(fwd.agent_qs[nxt], target_q[nxt], ep.avail[nxt])  # [R, N]
        return self.lambda_returns(ep, self.target_mixer(target_max, ep.state[nxt]))  # [R]
