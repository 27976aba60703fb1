"""QMIX (Rashid et al. 2018): per-agent GRU utilities mixed monotonically into Q_tot.

Double-Q, TD(λ) targets from target networks, per-timestep loss weights from the sampler
(the loss template is ``macpo.algos.value_based``).
"""

from __future__ import annotations

import torch

from macpo.algos.base import LoopSettings, PackedBatch
from macpo.algos.value_based import ValueDecomposition, ValueForward
from macpo.envs.base import BatchedEnv
from macpo.nn.qmix_mixer import QMixer
from macpo.replay.samplers.base import Sampler


class QMIX(ValueDecomposition):
    provides = frozenset({"td", "pi"})

    def __init__(
        self,
        train_env: BatchedEnv,
        sampler: Sampler,
        loop: LoopSettings,
        name: str = "qmix",
        lr: float = 1e-3,
        gamma: float = 0.99,
        td_lambda: float = 0.6,
        double_q: bool = True,
        agent_hidden_dim: int = 64,
        mixer_embed_dim: int = 32,
        hypernet_dim: int = 64,
        agent_q_clamp: list[float] | None = None,
        grad_clip: float = 10.0,
        epsilon_start: float = 1.0,
        epsilon_finish: float = 0.05,
        epsilon_anneal_time: int = 100_000,
    ) -> None:
        super().__init__(
            train_env, sampler, loop, name=name, lr=lr, gamma=gamma, td_lambda=td_lambda, double_q=double_q,
            agent_hidden_dim=agent_hidden_dim, agent_q_clamp=agent_q_clamp, grad_clip=grad_clip,
            epsilon_start=epsilon_start, epsilon_finish=epsilon_finish, epsilon_anneal_time=epsilon_anneal_time,
        )  # fmt: skip
        self.mixer = QMixer(self.info.n_agents, self.info.state_shape, mixer_embed_dim, hypernet_dim)
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
